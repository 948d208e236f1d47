// The local HTTP API (loopback or a unix socket; it has no authentication),
// on fastify: the core routes here (status, metrics), every other route
// declared by the module that owns it (ModuleDefinition.routes). A module
// that is off answers its routes with 409 and the reason.
//   GET    /v1/status                  every module's state (src/status.ts)
//   GET    /metrics                    Prometheus text (prom-client; each module registers its own)
//   storage:   GET /v1/events
//   tracing:   GET /v1/events/stream
//   analytics: GET /v1/alerts, /v1/alerts/stream, /v1/profiles[/S[/diff]], POST /v1/profiles/learn|reload
//   exposure:  GET|POST|DELETE /v1/exposures
//   response:  GET|POST|DELETE /v1/blocks
// docs/configuration.md lists them with their parameters.
import { existsSync, rmSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Daemon } from '../daemon.js';
import { ExposureError } from '../dataplane/exposure.js';
import type { Logger } from '../log.js';
import { counterFrom, gaugeFrom } from './metrics.js';
import { HttpError } from './http.js';

export const MAX_BODY = 64 * 1024;

/** The API as a fastify instance, not listening (tests inject requests into it). */
export function buildApi(daemon: Daemon, log: Logger): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY,
    requestTimeout: 30_000,
    return503OnClosing: true,
    forceCloseConnections: true,
    // refuse what a schema does not declare instead of dropping it silently
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // `since: must be number` rather than `body/since must be number`
    schemaErrorFormatter: (errors, context) => new HttpError(400, schemaError(errors[0], context)),
  });
  // every body is JSON, whatever the client says its type is (curl -d sends a form type)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, body === '' ? null : JSON.parse(body as string));
    } catch (err) {
      done(new HttpError(400, `body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });
  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number; validation?: unknown; code?: string };
    let status = err instanceof HttpError ? err.status : err instanceof ExposureError ? 400 : (e.statusCode ?? 500);
    if (e.validation) status = 400;
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ error: `body larger than ${MAX_BODY} bytes` });
    if (status >= 500) log.error('api request failed', { method: req.method, url: req.url, error: String(err) });
    return reply.code(status).send({ error: e.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no such endpoint: ${req.url.split('?')[0]}` }));

  app.get('/v1/status', async () => daemon.status());

  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'stackbpf_process_' });
  const pipeline = () => daemon.status().pipeline;
  counterFrom(registry, 'stackbpf_pipeline_published_total', 'Events handed to the consumers.', () => pipeline().published);
  counterFrom(
    registry,
    'stackbpf_pipeline_delivered_total',
    'Events delivered, by consumer.',
    () => pipeline().consumers.map((c) => [{ consumer: c.name }, c.delivered]),
    ['consumer'],
  );
  counterFrom(
    registry,
    'stackbpf_pipeline_dropped_total',
    'Events a consumer queue dropped, by consumer.',
    () => {
      const p = pipeline();
      return [
        ...p.consumers.map((c): [Record<string, string>, number] => [{ consumer: c.name }, c.dropped]),
        [{ consumer: 'closed-streams' }, p.droppedByClosedStreams],
      ];
    },
    ['consumer'],
  );
  gaugeFrom(registry, 'stackbpf_pipeline_queued', 'Events waiting, by consumer.', () => pipeline().consumers.map((c) => [{ consumer: c.name }, c.queued]), [
    'consumer',
  ]);
  daemon.metrics(registry);
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  daemon.routes(app);
  return app;
}

export async function startApi(daemon: Daemon, listen: string, log: Logger): Promise<FastifyInstance> {
  const app = buildApi(daemon, log);
  if (listen.startsWith('unix:')) {
    const path = listen.slice(5);
    if (existsSync(path)) rmSync(path);
    await app.listen({ path });
  } else {
    const i = listen.lastIndexOf(':');
    await app.listen({ port: Number(listen.slice(i + 1)), host: listen.slice(0, i).replace(/^\[|\]$/g, '') });
  }
  app.server.maxConnections = 64;
  log.info('api listening', { listen });
  return app;
}

/** One schema violation in the operator's words: the field first, then what is allowed. */
function schemaError(e: { instancePath: string; keyword: string; params: Record<string, unknown>; message?: string } | undefined, context: string): string {
  if (!e) return `invalid ${context}`;
  const at = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const p = e.params;
  switch (e.keyword) {
    case 'required':
      return `${[at, p.missingProperty].filter(Boolean).join('.')}: required`;
    case 'additionalProperties':
      return `${[at, p.additionalProperty].filter(Boolean).join('.')}: unknown field`;
    case 'enum':
      return `${at || context}: expected one of ${(p.allowedValues as unknown[]).join(', ')}`;
    case 'type':
      return `${at || context}: expected ${String(p.type).replace(',', ' or ')}`;
    default:
      return `${at || context}: ${e.message ?? 'invalid'}`;
  }
}
