// The performance module: "why is this slow?" from the traced events, with no
// instrumentation in the services. Per-route, per-peer and per-fingerprint
// durations in OpenTelemetry's semantic conventions (/metrics, optionally
// OTLP); every API request explained (SQL, calls, CPU, run-queue wait,
// blocked) and stitched to the requests it caused; findings when a baseline
// moves (docs/performance.md).
import { hostname } from 'node:os';
import { HttpError, type Query, sinceParam } from '../api/http.js';
import { counterFrom, gaugeFrom, histogramFrom } from '../api/metrics.js';
import { defineModule } from '../module.js';
import { performanceCommands } from './cli.js';
import { performanceSection } from './config.js';
import { type PerfOptions, PerfEngine } from './engine.js';
import { ThreadSampler } from './hub.js';
import { OtlpExport } from './otlp.js';

const num = (q: Query, name: string, def: number, max = Number.MAX_SAFE_INTEGER): number => {
  const v = q[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > max) throw new HttpError(400, `${name}: expected a number 0..${max}, got "${v}"`);
  return n;
};

type Cfg = {
  performance: Omit<PerfOptions, 'baseline'> & {
    enabled: boolean;
    slowMs: number;
    baseline: PerfOptions['baseline'];
    otlp: { endpoint?: string; intervalSeconds: number };
  };
};

const options = (c: Cfg['performance']): PerfOptions => ({
  settleMs: c.settleMs,
  maxRequests: c.maxRequests,
  routeValues: c.routeValues,
  maxRoutes: c.maxRoutes,
  maxFingerprints: c.maxFingerprints,
  nPlusOne: c.nPlusOne,
  baseline: c.baseline,
});

export const performanceModule = defineModule({
  name: 'performance',
  summary: 'per-route latency, per-request breakdown, cross-service request trees and findings from the traced events',
  sections: { performance: performanceSection },
  kernelObjects: [],
  subscribes: ['http.request', 'sql.query (drop-oldest: a request it misses is not explained, counted)'],
  degradable: true,
  cli: performanceCommands,
  enabled: (c) => c.performance.enabled,
  offReason: 'the performance module is off (performance.enabled: false)',
  offStatus: () => ({ performance: { state: 'off' as const } }),
  async start(ctx) {
    const c = ctx.config.performance;
    const engine = new PerfEngine(options(c));
    const otlp = c.otlp.endpoint ? new OtlpExport(c.otlp.endpoint, c.otlp.intervalSeconds, hostname()) : undefined;
    if (otlp) engine.sink = otlp;
    const unsubscribe = ctx.bus.subscribe({
      name: 'performance',
      capacity: 100_000,
      policy: 'drop-oldest',
      batch: 5000,
      handle: (b) => engine.onEvents(b),
    });
    const stopFindings = engine.onFinding((f) => ctx.log.warn('performance finding', { kind: f.kind, service: f.service, detail: f.detail }));
    let slowMs = c.slowMs;
    const sampler = new ThreadSampler();
    const timer = setInterval(() => {
      try {
        engine.tick();
        // the threads that answered requests in the last minute: what each is doing now
        const now = Date.now();
        for (const s of sampler.sample(engine.workers(now - 60_000), now)) engine.onThreadSample(s);
      } catch (err) {
        ctx.log.warn('performance: explaining requests failed', { error: (err as Error).message });
      }
    }, engine.sampleMs);
    timer.unref();
    ctx.log.info('performance', { settle_ms: c.settleMs, otlp: otlp?.status().endpoint ?? 'off' });
    return {
      engine,
      get slowMs() {
        return slowMs;
      },
      status: () => ({ performance: { state: 'on' as const, ...engine.stats(), ...(otlp ? { otlp: otlp.status() } : {}) } }),
      reload(cfg) {
        engine.reconfigure(options(cfg.performance));
        slowMs = cfg.performance.slowMs;
      },
      async stop() {
        clearInterval(timer);
        unsubscribe();
        stopFindings();
        await otlp?.stop();
      },
    };
  },
  routes(app, m) {
    app.get<{ Querystring: Query }>(
      '/v1/requests',
      {
        schema: {
          querystring: {
            type: 'object',
            properties: {
              service: { type: 'string' },
              since: { type: 'string', description: '90s / 10m / 2h / 1d, a date, or ms since the epoch (default 10m)' },
              min_ms: { type: 'string', description: 'at least this long (default performance.slow_ms)' },
              limit: { type: 'string', description: 'most requests answered, slowest first (default 50)' },
            },
          },
        },
      },
      async (req) => {
        const q = req.query;
        const run = m.get();
        return run.engine.slow({
          ...(q.service ? { service: q.service } : {}),
          since: sinceParam(q.since, Date.now() - 600_000),
          minMs: num(q, 'min_ms', run.slowMs),
          limit: num(q, 'limit', 50, 10_000),
        });
      },
    );
    app.get<{ Querystring: Query }>(
      '/v1/requests/top',
      { schema: { querystring: { type: 'object', properties: { window: { type: 'string', description: 'seconds (default 60)' } } } } },
      async (req) => m.get().engine.top(num(req.query, 'window', 60, 86_400) * 1000),
    );
    app.get<{ Querystring: Query }>(
      '/v1/requests/findings',
      { schema: { querystring: { type: 'object', properties: { open: { type: 'string', enum: ['true', 'false'] }, service: { type: 'string' } } } } },
      async (req) => {
        const out = [];
        for (const f of m.get().engine.findings.values()) {
          if (req.query.open === 'true' && !f.open) continue;
          if (req.query.service && f.service !== req.query.service) continue;
          out.push(f);
        }
        return out.sort((a, b) => b.last_seen - a.last_seen);
      },
    );
    app.get<{ Querystring: Query }>(
      '/v1/requests/sql',
      { schema: { querystring: { type: 'object', properties: { service: { type: 'string' }, limit: { type: 'string' } } } } },
      async (req) => m.get().engine.fingerprints(req.query.service, num(req.query, 'limit', 50, 10_000)),
    );
    app.get<{ Params: { id: string } }>('/v1/requests/:id', async (req) => {
      const t = m.get().engine.tree(req.params.id);
      if (!t)
        throw new HttpError(
          404,
          `no explained request "${req.params.id}" (kept: the last performance.max_requests; a request is explained performance.settle_ms after it ends)`,
        );
      return t;
    });
  },
  metrics(registry, m) {
    const eng = () => m.running()?.engine;
    histogramFrom(registry, 'http_server_request_duration_seconds', 'Duration of HTTP server requests (OpenTelemetry http.server.request.duration).', () =>
      eng()?.serverMetrics.values(),
    );
    histogramFrom(registry, 'http_client_request_duration_seconds', 'Duration of HTTP client requests (OpenTelemetry http.client.request.duration).', () =>
      eng()?.clientMetrics.values(),
    );
    histogramFrom(
      registry,
      'db_client_operation_duration_seconds',
      'Duration of database client operations (OpenTelemetry db.client.operation.duration).',
      () => eng()?.dbMetrics.values(),
    );
    histogramFrom(
      registry,
      'rpc_client_duration_seconds',
      'Duration of RPC calls a service makes: OVSDB transactions and monitor requests, oslo.messaging calls over RabbitMQ (OpenTelemetry rpc.client.duration).',
      () => eng()?.rpcMetrics.values(),
    );
    histogramFrom(
      registry,
      'rpc_server_duration_seconds',
      'Duration of the oslo.messaging calls and casts a service handled (OpenTelemetry rpc.server.duration; a cast: its greenthread, to its last statement or call).',
      () => eng()?.rpcServerMetrics.values(),
    );
    counterFrom(registry, 'stackbpf_performance_requests_explained_total', 'API requests explained (breakdown, cause)', () => eng()?.stats().explained);
    counterFrom(registry, 'stackbpf_performance_calls_stitched_total', 'outbound calls stitched to the request they caused', () => eng()?.stats().stitched);
    counterFrom(
      registry,
      'stackbpf_performance_dropped_total',
      'requests, statements and calls lost for room',
      () => {
        const s = eng()?.stats();
        return s
          ? [
              [{ what: 'pending' }, s.pending_dropped],
              [{ what: 'children' }, s.children_dropped],
              [{ what: 'explained_evicted' }, s.evicted],
            ]
          : undefined;
      },
      ['what'],
    );
    gaugeFrom(
      registry,
      'stackbpf_performance_findings_open',
      'open findings by kind',
      () => {
        const e = eng();
        if (!e) return undefined;
        const by = new Map<string, number>();
        for (const f of e.findings.values()) if (f.open) by.set(f.kind, (by.get(f.kind) ?? 0) + 1);
        return [...by].map(([kind, n]) => [{ kind }, n] as [Record<string, string>, number]);
      },
      ['kind'],
    );
  },
});
