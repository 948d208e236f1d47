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
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import sjson from 'secure-json-parse';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Daemon } from '../daemon.js';
import { ExposureError } from '../dataplane/exposure.js';
import type { Logger } from '../log.js';
import { counterFrom, gaugeFrom } from './metrics.js';
import { AccessControl, type Caller, describeCaller, loadTokens, type Scope } from './access.js';
import { HttpError } from './http.js';

/** gid of a group in /etc/group, or undefined when there is none */
function groupId(name: string): number | undefined {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
    }
  } catch {
    /* no /etc/group: root only */
  }
  return undefined;
}

export const MAX_BODY = 64 * 1024;

/** The API as a fastify instance, not listening (tests inject requests into it). */
export function buildApi(daemon: Daemon, log: Logger, access: AccessControl): FastifyInstance {
  const app = Fastify({
    logger: false,
    // a client must send its headers within 5 s, checked every second: slow connections that
    // trickle headers cannot hold the API's connection slots for long
    serverFactory: (handler) =>
      createServer({ connectionsCheckingInterval: 1_000, headersTimeout: 5_000, keepAliveTimeout: 5_000, requestTimeout: 30_000 }, handler),
    bodyLimit: MAX_BODY,
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
      // __proto__ and constructor.prototype keys are refused, not merged into anything later (fastify's own parser does the same)
      done(null, body === '' ? null : sjson.parse(body as string, { protoAction: 'error', constructorAction: 'error' }));
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
  access.install(app);
  // every change made through the API is recorded with who made it (an event, stored and streamed)
  let changes = 0;
  app.addHook('onResponse', async (req, reply) => {
    if (req.method === 'GET' || req.method === 'HEAD') return;
    const caller = (req as typeof req & { caller?: Caller }).caller;
    if (!caller) return;
    changes++;
    const peer = caller.kind === 'unix' ? caller : undefined;
    daemon.bus.publish({
      ts: Date.now(),
      type: 'api.change',
      service: 'stackbpf',
      pid: peer?.pid ?? 0,
      tid: peer?.pid ?? 0,
      ppid: 0,
      uid: peer?.uid ?? 0,
      comm: 'stackbpf',
      data: {
        method: req.method,
        path: req.url.split('?')[0] ?? '',
        query: req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
        status: reply.statusCode,
        caller: describeCaller(caller),
      },
    });
  });

  app.get('/v1/status', async () => ({ ...daemon.status(), api: { listen: access.listen, refused: { ...access.refused }, changes } }));

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
  counterFrom(
    registry,
    'stackbpf_api_refused_total',
    'API requests refused, by reason (unauthenticated, scope, host, origin, content_type).',
    () => Object.entries(access.refused).map(([reason, n]) => [{ reason }, n]),
    ['reason'],
  );
  counterFrom(registry, 'stackbpf_api_changes_total', 'Changes made through the API (each recorded as an api.change event with its caller).', () => changes);
  daemon.metrics(registry);
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  daemon.routes(app);
  return app;
}

export interface ApiOptions {
  listen: string;
  group: string;
  groupScopes: readonly Scope[];
  tokensFile?: string | undefined;
}

export async function startApi(daemon: Daemon, opts: ApiOptions, log: Logger): Promise<FastifyInstance> {
  const listen = opts.listen;
  const access = new AccessControl({ listen, groupScopes: opts.groupScopes, tokens: opts.tokensFile ? loadTokens(opts.tokensFile) : [] });
  const app = buildApi(daemon, log, access);
  if (listen.startsWith('unix:')) {
    const path = listen.slice(5);
    const gid = groupId(opts.group);
    // the directory: root's, searchable by the group only (a socket's own mode is not checked everywhere)
    const dir = dirname(path);
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o750 });
      chownSync(dir, 0, gid ?? 0);
    }
    // a directory another user may write to would let them put their own socket in our place
    const d = statSync(dir);
    if (d.uid !== 0 || (d.mode & 0o022) !== 0)
      throw new Error(
        `${dir}: the API socket's directory must be owned by root and writable by root alone (owner uid ${d.uid}, mode ${(d.mode & 0o7777).toString(8)})`,
      );
    if (existsSync(path)) rmSync(path);
    // created 0600 (umask), opened to the group once its owner is set: never a moment open to all
    const old = process.umask(0o177);
    try {
      await app.listen({ path });
    } finally {
      process.umask(old);
    }
    if (gid !== undefined) {
      chownSync(path, 0, gid);
      chmodSync(path, 0o660);
    } else
      log.info('api: no group to grant access to; the socket is root only', {
        group: opts.group,
        hint: `groupadd --system ${opts.group} and restart to grant it`,
      });
  } else {
    const i = listen.lastIndexOf(':');
    await app.listen({ port: Number(listen.slice(i + 1)), host: listen.slice(0, i).replace(/^\[|\]$/g, '') });
  }
  // bounded: connections beyond this are closed at once
  app.server.maxConnections = 256;
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
