// The local HTTP API (loopback or a unix socket; it has no authentication).
//   GET    /v1/status                     counters, attachments, last reconcile, BGP
//   GET    /v1/exposures                  the desired exposures, their source, and their counters
//   POST   /v1/exposures                  add one (JSON body: an Exposure); 201 once applied
//   DELETE /v1/exposures?prefix=P         remove one added through the API; 204
//   GET    /v1/events?service=&type=&pid=&path=&since=&until=&limit=
//                                         stored events, newest first (since/until: ms since the epoch)
//   GET    /v1/events/stream?service=&type=&pid=&path=
//                                         live events as JSON lines (a slow reader loses its oldest, counted)
//   GET    /v1/alerts?since=&rule=&state=&limit=   stored alerts, newest first (or ?active=1: those firing now)
//   GET    /v1/alerts/stream              alert changes as JSON lines ({change, alert})
//   GET    /v1/profiles                   the service profiles in force (and files that were refused)
//   GET    /v1/profiles/SERVICE[?format=yaml]   one profile
//   GET    /v1/profiles/SERVICE/diff?since=&until=   stored events the profile does not allow, counted
//   POST   /v1/profiles/learn             {since?, until?, services?, mode?}: learn from stored events, write the files
//   POST   /v1/profiles/reload            re-read the profile files
//   GET    /v1/blocks                     sources dropped at XDP, their reason, expiry and counters
//   POST   /v1/blocks                     {prefix, reason, seconds?}: block a source (operator)
//   DELETE /v1/blocks?prefix=P            lift a block
//   GET    /metrics                       Prometheus text: event rates, drops at every stage, storage
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, rmSync } from 'node:fs';
import type { Daemon } from '../daemon.js';
import type { EventFilter } from '../trace/event.js';
import { metricsText } from './metrics.js';
import { diffProfile, PROFILE_KINDS, profileToYaml } from '../analytics/profile.js';
import { ExposureError, type Exposure } from '../dataplane/exposure.js';
import type { Logger } from '../log.js';

const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, `body larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'));
      } catch (err) {
        reject(new HttpError(400, `body is not valid JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  const text = body === undefined ? '' : `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function startApi(daemon: Daemon, listen: string, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    void handle(daemon, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : err instanceof ExposureError ? 400 : 500;
      if (status === 500) log.error('api request failed', { method: req.method, url: req.url, error: String(err) });
      send(res, status, { error: err instanceof Error ? err.message : String(err) });
    });
  });
  server.requestTimeout = 30_000;
  server.maxConnections = 64;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      log.info('api listening', { listen });
      resolve(server);
    };
    if (listen.startsWith('unix:')) {
      const path = listen.slice(5);
      if (existsSync(path)) rmSync(path);
      server.listen(path, done);
    } else {
      const i = listen.lastIndexOf(':');
      server.listen(Number(listen.slice(i + 1)), listen.slice(0, i).replace(/^\[|\]$/g, ''), done);
    }
  });
}

function filterOf(url: URL): EventFilter {
  const f: EventFilter = {};
  const q = url.searchParams;
  if (q.get('service')) f.service = q.get('service') as string;
  if (q.get('type')) f.type = q.get('type') as string;
  if (q.get('path')) f.pathPrefix = q.get('path') as string;
  if (q.get('pid')) {
    const pid = Number(q.get('pid'));
    if (!Number.isInteger(pid) || pid <= 0) throw new HttpError(400, `pid: expected a process id, got "${q.get('pid')}"`);
    f.pid = pid;
  }
  return f;
}

function numParam(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new HttpError(400, `${name}: expected a non-negative number, got "${v}"`);
  return n;
}

async function profiles(daemon: Daemon, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const an = daemon.analytics;
  if (!an) throw new HttpError(409, 'analytics are off (analytics.enabled: false)');
  const rest = url.pathname.slice('/v1/profiles'.length).split('/').filter(Boolean).map(decodeURIComponent);
  if (rest.length === 0 && req.method === 'GET') return send(res, 200, { profiles: an.profiles.list(), errors: an.profiles.errors, dir: an.profiles.dir });
  if (rest[0] === 'reload' && rest.length === 1 && req.method === 'POST') {
    const r = an.profiles.load();
    daemon.applyEnforcement();
    return send(res, 200, { ...r, enforcementErrors: daemon.enforcementErrors });
  }
  if (rest[0] === 'learn' && rest.length === 1 && req.method === 'POST') {
    if (!daemon.store) throw new HttpError(409, 'learning reads stored events: storage is off');
    const body = (await readBody(req)) ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'expected {since?, until?, services?, mode?}');
    const b = body as Record<string, unknown>;
    for (const k of Object.keys(b))
      if (!['since', 'until', 'services', 'mode'].includes(k)) throw new HttpError(400, `${k}: unknown field (known: since, until, services, mode)`);
    for (const k of ['since', 'until'] as const)
      if (b[k] !== undefined && (typeof b[k] !== 'number' || !Number.isFinite(b[k]))) throw new HttpError(400, `${k}: expected ms since the epoch`);
    if (b.services !== undefined && (!Array.isArray(b.services) || !b.services.every((x) => typeof x === 'string')))
      throw new HttpError(400, 'services: expected a list of service names');
    if (b.mode !== undefined && !['learn', 'monitor', 'enforce'].includes(b.mode as string))
      throw new HttpError(400, 'mode: expected learn, monitor or enforce');
    const r = an.learn(daemon.store, b as { since?: number; until?: number; services?: string[]; mode?: 'learn' | 'monitor' | 'enforce' });
    daemon.applyEnforcement();
    if (r.profiles.length === 0) throw new HttpError(404, 'no events of any service in that window: nothing to learn from');
    return send(res, 200, {
      learned: r.profiles.map((p) => ({
        service: p.service,
        mode: p.mode,
        events: p.learned?.events,
        counts: Object.fromEntries(PROFILE_KINDS.map((k) => [k, p[k].length])),
      })),
      files: r.files,
      errors: r.errors,
    });
  }
  const service = rest[0] as string;
  const c = an.profiles.get(service);
  if (!c)
    throw new HttpError(
      404,
      `no profile for ${service} (profiles: ${
        an.profiles
          .list()
          .map((p) => p.service)
          .join(', ') || 'none'
      })`,
    );
  if (rest.length === 1 && req.method === 'GET') {
    if (url.searchParams.get('format') === 'yaml') {
      const text = profileToYaml(c.profile);
      res.writeHead(200, { 'content-type': 'application/yaml', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    return send(res, 200, c.profile);
  }
  if (rest[1] === 'diff' && rest.length === 2 && req.method === 'GET') {
    if (!daemon.store) throw new HttpError(409, 'diff reads stored events: storage is off');
    const since = numParam(url, 'since');
    const until = numParam(url, 'until');
    return send(
      res,
      200,
      diffProfile(c.profile, daemon.store.each({ service, ...(since !== undefined ? { since } : {}), ...(until !== undefined ? { until } : {}) })),
    );
  }
  throw new HttpError(404, `no such endpoint: ${url.pathname}`);
}

async function handle(daemon: Daemon, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://local');
  if (url.pathname === '/v1/status' && req.method === 'GET') return send(res, 200, daemon.status());
  if (url.pathname === '/metrics' && req.method === 'GET') {
    const text = metricsText(daemon.status());
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  if (url.pathname === '/v1/events' && req.method === 'GET') {
    if (!daemon.store) throw new HttpError(409, 'event storage is off (storage.enabled: false)');
    const since = numParam(url, 'since');
    const until = numParam(url, 'until');
    const limit = numParam(url, 'limit');
    return send(
      res,
      200,
      daemon.query({
        ...filterOf(url),
        ...(since !== undefined ? { since } : {}),
        ...(until !== undefined ? { until } : {}),
        ...(limit !== undefined ? { limit } : {}),
      }),
    );
  }
  if (url.pathname === '/v1/events/stream' && req.method === 'GET') {
    if (!daemon.tracer) throw new HttpError(409, 'tracing is off (trace.enabled: false)');
    const filter = filterOf(url);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const stream = daemon.stream(filter, (events) => {
      res.write(`${events.map((e) => JSON.stringify(e)).join('\n')}\n`);
    });
    const beat = setInterval(() => res.write('\n'), 15_000);
    beat.unref();
    req.on('close', () => {
      clearInterval(beat);
      stream.close();
    });
    return;
  }
  if (url.pathname === '/v1/alerts' && req.method === 'GET') {
    const an = daemon.analytics;
    if (!an) throw new HttpError(409, 'analytics are off (analytics.enabled: false)');
    if (url.searchParams.get('active')) return send(res, 200, an.alerts.active());
    if (!daemon.store) throw new HttpError(409, 'event storage is off: only ?active=1 is available');
    const since = numParam(url, 'since');
    const limit = numParam(url, 'limit');
    const q: { since?: number; rule?: string; state?: string; limit?: number } = {};
    if (since !== undefined) q.since = since;
    if (limit !== undefined) q.limit = limit;
    if (url.searchParams.get('rule')) q.rule = url.searchParams.get('rule') as string;
    const state = url.searchParams.get('state');
    if (state) {
      if (state !== 'firing' && state !== 'resolved') throw new HttpError(400, `state: expected firing or resolved, got "${state}"`);
      q.state = state;
    }
    return send(res, 200, daemon.store.alerts(q));
  }
  if (url.pathname === '/v1/profiles' || url.pathname.startsWith('/v1/profiles/')) return profiles(daemon, url, req, res);
  if (url.pathname === '/v1/alerts/stream' && req.method === 'GET') {
    const an = daemon.analytics;
    if (!an) throw new HttpError(409, 'analytics are off (analytics.enabled: false)');
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const stop = an.stream((alert, change) => res.write(`${JSON.stringify({ change, alert })}\n`));
    const beat = setInterval(() => res.write('\n'), 15_000);
    beat.unref();
    req.on('close', () => {
      clearInterval(beat);
      stop();
    });
    return;
  }
  if (url.pathname === '/v1/blocks') {
    const agent = daemon.agent;
    if (!agent) throw new HttpError(409, 'the data plane is off (no dataplane.provider_interfaces): nothing can be blocked at XDP');
    if (req.method === 'GET') return send(res, 200, agent.blocks());
    if (req.method === 'POST') {
      const b = (await readBody(req)) as Record<string, unknown> | null;
      if (!b || typeof b.prefix !== 'string') throw new HttpError(400, 'prefix: required (an address or prefix)');
      if (b.seconds !== undefined && (typeof b.seconds !== 'number' || b.seconds < 0))
        throw new HttpError(400, 'seconds: expected a non-negative number (0: until removed)');
      return send(res, 201, agent.block(b.prefix, typeof b.reason === 'string' ? b.reason : 'operator', (b.seconds as number | undefined) ?? 0));
    }
    if (req.method === 'DELETE') {
      const prefix = url.searchParams.get('prefix');
      if (!prefix) throw new HttpError(400, 'give ?prefix=ADDR[/LEN]');
      if (!agent.unblock(prefix)) throw new HttpError(404, `${prefix} is not blocked`);
      res.writeHead(204).end();
      return;
    }
    throw new HttpError(405, `${req.method} not allowed on /v1/blocks`);
  }
  if (url.pathname === '/v1/exposures') {
    const agent = daemon.agent;
    if (!agent) throw new HttpError(409, 'the data plane is off (no dataplane.provider_interfaces in the configuration)');
    if (req.method === 'GET') return send(res, 200, agent.exposureReport());
    if (req.method === 'POST') {
      const body = await readBody(req);
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'expected one exposure object');
      const result = await agent.apiPut(body as Exposure);
      return send(res, 201, { applied: result });
    }
    if (req.method === 'DELETE') {
      const prefix = url.searchParams.get('prefix');
      if (!prefix) throw new HttpError(400, 'give ?prefix=ADDR[/LEN]');
      if (!(await agent.apiDelete(prefix))) throw new HttpError(404, `${prefix} was not added through the API`);
      res.writeHead(204).end();
      return;
    }
    throw new HttpError(405, `${req.method} not allowed on /v1/exposures`);
  }
  throw new HttpError(404, `no such endpoint: ${url.pathname}`);
}
