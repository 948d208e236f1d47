// The analytics module: detectors (brute force, SQL injection, drift),
// service profiles and alerts. Consumes every event with back-pressure;
// offers `alerts` (to the response module) and `requestInspector` (to the
// tracer, which looks at request bodies before it drops them).
import { HttpError, numParam, type Query } from '../api/http.js';
import { counterFrom, gaugeFrom } from '../api/metrics.js';
import { defineModule } from '../module.js';
import { analyticsCommands } from './cli.js';
import { analyticsSection } from './config.js';
import { Analytics } from './engine.js';
import { diffProfile, PROFILE_KINDS, type ProfileMode, profileToYaml } from './profile.js';
import { inspectRequest } from './sqli.js';

const serviceParam = { type: 'object', properties: { service: { type: 'string', minLength: 1 } } } as const;
const timeRange = {
  type: 'object',
  properties: { since: { type: 'string', description: 'ms since the epoch' }, until: { type: 'string', description: 'ms since the epoch' } },
} as const;
const alertQuery = {
  type: 'object',
  properties: {
    active: { type: 'string', description: 'any value: only the alerts firing now' },
    since: { type: 'string', description: 'ms since the epoch' },
    rule: { type: 'string', description: 'a rule id or its prefix' },
    state: { enum: ['firing', 'resolved'] },
    limit: { type: 'string' },
  },
} as const;

export const analyticsModule = defineModule({
  name: 'analytics',
  summary: 'detectors (brute force, SQL injection, unauthorized access, drift), service profiles and alerts',
  sections: { analytics: analyticsSection },
  kernelObjects: [],
  subscribes: ['every event (back-pressure: a detector must not miss events)'],
  enabled: (c) => c.analytics.enabled,
  offReason: 'analytics are off (analytics.enabled: false)',
  offStatus: () => ({ analytics: { state: 'off' } }),
  cli: analyticsCommands,
  async start(ctx) {
    const c = ctx.config.analytics;
    const events = ctx.need('events');
    const a = c.access;
    const analytics = new Analytics(ctx.bus, events, {
      bruteforce: c.bruteforce,
      access: {
        windowSeconds: a.windowSeconds,
        forbidden: { perIdentity: a.forbiddenPerIdentity, perSource: a.forbiddenPerSource, routes: a.forbiddenRoutes },
        notFound: { perIdentity: a.notFoundPerIdentity, perSource: a.notFoundPerSource, ids: a.notFoundIds },
        guessingSources: a.guessingSources,
        guessingWindowSeconds: a.guessingWindowSeconds,
        trustedSources: a.trustedSources,
        trustedProxies: c.bruteforce.trustedProxies,
        metadataClients: a.metadataClients,
        serviceProject: a.serviceProject,
        instanceNetworks: a.instanceNetworks,
        recoverySeconds: 300,
      },
      profilesDir: c.profilesDir ?? `${ctx.core.stateDir}/profiles`,
    });
    const loaded = analytics.profiles.list();
    if (loaded.length || analytics.profiles.errors.length)
      ctx.log.info('profiles loaded', { profiles: loaded.map((p) => `${p.service} (${p.mode})`), errors: analytics.profiles.errors });
    const loadedHooks: (() => string[])[] = [];
    /** re-read the profile files and let the response module re-apply them; errors of both */
    const reload = () => {
      const r = analytics.profiles.load();
      const enforcementErrors = loadedHooks.flatMap((h) => h());
      return { ...r, enforcementErrors };
    };
    ctx.provide('alerts', {
      subscribe: (sink) => analytics.alerts.subscribe(sink),
      save: (a) => events?.saveAlert(a),
      profiles: () => analytics.profiles.list(),
      onProfilesLoaded: (cb) => loadedHooks.push(cb),
      bruteforceResponse: () => ({ blockSeconds: c.bruteforce.blockSeconds, trustedProxies: c.bruteforce.trustedProxies }),
      accessResponse: () => ({ blockSeconds: a.blockSeconds, trustedProxies: [...c.bruteforce.trustedProxies, ...a.trustedSources] }),
    });
    ctx.provide('requestInspector', inspectRequest);
    return {
      analytics,
      events,
      /** SIGHUP too: the profile files are re-read (and re-applied in the kernel) */
      reload,
      status: () => ({ analytics: { state: 'on' as const, ...analytics.status() } }),
      async stop() {
        analytics.stop();
      },
    };
  },
  routes(app, m) {
    app.get<{ Querystring: Query }>('/v1/alerts', { schema: { querystring: alertQuery } }, async (req) => {
      const { analytics, events } = m.get();
      const q = req.query;
      if (q.active) return analytics.alerts.active();
      if (!events) throw new HttpError(409, 'event storage is off: only ?active=1 is available');
      const since = numParam(q, 'since');
      const limit = numParam(q, 'limit');
      const out: { since?: number; rule?: string; state?: string; limit?: number } = {};
      if (since !== undefined) out.since = since;
      if (limit !== undefined) out.limit = limit;
      if (q.rule) out.rule = q.rule;
      if (q.state) {
        if (q.state !== 'firing' && q.state !== 'resolved') throw new HttpError(400, `state: expected firing or resolved, got "${q.state}"`);
        out.state = q.state;
      }
      return events.alerts(out);
    });
    app.get('/v1/alerts/stream', (req, reply) => {
      const { analytics } = m.get();
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      const stop = analytics.alerts.subscribe((alert, change) => reply.raw.write(`${JSON.stringify({ change, alert })}\n`));
      const beat = setInterval(() => reply.raw.write('\n'), 15_000);
      beat.unref();
      req.raw.on('close', () => {
        clearInterval(beat);
        stop();
      });
    });
    app.get('/v1/profiles', async () => {
      const { analytics } = m.get();
      return { profiles: analytics.profiles.list(), errors: analytics.profiles.errors, dir: analytics.profiles.dir };
    });
    app.post('/v1/profiles/reload', async () => m.get().reload());
    app.post<{ Body: { since?: number; until?: number; services?: string[]; mode?: ProfileMode } | null }>(
      '/v1/profiles/learn',
      {
        schema: {
          body: {
            type: ['object', 'null'],
            additionalProperties: false,
            properties: {
              since: { type: 'number', description: 'ms since the epoch' },
              until: { type: 'number', description: 'ms since the epoch' },
              services: { type: 'array', items: { type: 'string' } },
              mode: { enum: ['learn', 'monitor', 'enforce'] },
            },
          },
        },
      },
      async (req) => {
        const { analytics, events, reload } = m.get();
        if (!events) throw new HttpError(409, 'learning reads stored events: storage is off');
        const r = analytics.learn(events, req.body ?? {});
        reload();
        if (r.profiles.length === 0) throw new HttpError(404, 'no events of any service in that window: nothing to learn from');
        return {
          learned: r.profiles.map((p) => ({
            service: p.service,
            mode: p.mode,
            events: p.learned?.events,
            counts: Object.fromEntries(PROFILE_KINDS.map((k) => [k, p[k].length])),
          })),
          files: r.files,
          errors: r.errors,
        };
      },
    );
    const profileOf = (service: string) => {
      const { analytics } = m.get();
      const c = analytics.profiles.get(service);
      if (!c)
        throw new HttpError(
          404,
          `no profile for ${service} (profiles: ${
            analytics.profiles
              .list()
              .map((p) => p.service)
              .join(', ') || 'none'
          })`,
        );
      return c.profile;
    };
    app.get<{ Params: { service: string }; Querystring: Query }>(
      '/v1/profiles/:service',
      { schema: { params: serviceParam, querystring: { type: 'object', properties: { format: { enum: ['json', 'yaml'] } } } } },
      async (req, reply) => {
        const p = profileOf(req.params.service);
        if (req.query.format === 'yaml') return reply.type('application/yaml').send(profileToYaml(p));
        return p;
      },
    );
    app.get<{ Params: { service: string }; Querystring: Query }>(
      '/v1/profiles/:service/diff',
      { schema: { params: serviceParam, querystring: timeRange } },
      async (req) => {
        const p = profileOf(req.params.service);
        const { events } = m.get();
        if (!events) throw new HttpError(409, 'diff reads stored events: storage is off');
        const since = numParam(req.query, 'since');
        const until = numParam(req.query, 'until');
        return diffProfile(
          p,
          events.each({ service: req.params.service, ...(since !== undefined ? { since } : {}), ...(until !== undefined ? { until } : {}) }),
        );
      },
    );
  },
  metrics(registry, m) {
    const st = () => m.running()?.analytics.status();
    gaugeFrom(registry, 'stackbpf_alerts_active', 'Alerts firing now.', () => st()?.active);
    counterFrom(
      registry,
      'stackbpf_alerts_total',
      'Alert changes, by kind (suppressed: over the per-rule rate limit).',
      () => {
        const s = st();
        return (
          s && [
            [{ change: 'raised' }, s.raised],
            [{ change: 'updated' }, s.updated],
            [{ change: 'resolved' }, s.resolved],
            [{ change: 'suppressed' }, s.suppressed],
          ]
        );
      },
      ['change'],
    );
    counterFrom(registry, 'stackbpf_keystone_failed_authentications_total', 'Failed Keystone authentications seen.', () => st()?.failedAuthentications);
  },
});
