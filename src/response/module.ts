// The response module: answers in the kernel. XDP blocks with expiry (an
// operator's, or a brute-force source when analytics.bruteforce.block_seconds
// is set) and kills by the tracer's kernel maps for enforce-mode profiles.
// It holds the policy (./policy.ts); the mechanisms are other modules'
// (`blocker`: the exposure module's XDP maps; `enforcer`: the tracer's).
import { HttpError, prefixQuery, type Query } from '../api/http.js';
import { gaugeFrom } from '../api/metrics.js';
import { probeFeatures } from '../ebpf/index.js';
import { defineModule } from '../module.js';
import type { EnforcementStatus } from '../status.js';
import { ExpiringBlocks } from './blocks.js';
import { BLOCKABLE_RULES, blocksOn, mustNotBlock, wantedEnforcement } from './policy.js';
import { ACCESS_SOURCE_RULES } from '../analytics/access.js';
import type { RuleId } from '../analytics/rules.js';

const blockBody = {
  type: 'object',
  additionalProperties: false,
  required: ['prefix'],
  properties: {
    prefix: { type: 'string', description: 'an address or prefix' },
    reason: { type: 'string' },
    seconds: { type: 'number', minimum: 0, description: '0: until removed' },
  },
} as const;

export const responseModule = defineModule({
  name: 'response',
  summary: 'answers in the kernel: sources dropped at XDP with expiry, processes killed for enforce-mode profiles',
  sections: {},
  kernelObjects: [],
  subscribes: [],
  enabled: () => true,
  offReason: 'the response module is off',
  offStatus: () => ({}),
  async start(ctx) {
    const blocker = ctx.need('blocker');
    const enforcer = ctx.need('enforcer');
    const alerts = ctx.need('alerts');
    const blocks = blocker ? new ExpiringBlocks(blocker, ctx.core.stateDir, ctx.log) : undefined;
    let enforcementErrors: string[] = [];

    /** Put the enforce-mode profiles' kernel rules into the kernel, lift the others; returns what was refused. */
    const applyEnforcement = (): string[] => {
      if (!enforcer || !alerts) return [];
      const want = wantedEnforcement(alerts.profiles());
      for (const s of enforcer.services()) if (!want.has(s)) enforcer.set(s, undefined);
      const failures: string[] = [];
      for (const [service, rules] of want) {
        try {
          enforcer.set(service, rules);
        } catch (err) {
          // checked before any map is touched: what was in force stays
          failures.push((err as Error).message);
          ctx.log.warn('kernel enforcement refused: the profile stays as it was in the kernel (alerts still raised)', {
            service,
            error: (err as Error).message,
          });
        }
      }
      enforcementErrors = failures;
      if (want.size) ctx.log.info('enforcement in the kernel', { services: enforcer.summary() });
      return failures;
    };
    applyEnforcement();
    alerts?.onProfilesLoaded(applyEnforcement);

    // brute force and unauthorized access: each its own opt-in block time, the same mechanism
    const policies = alerts
      ? [
          { what: 'analytics.bruteforce.block_seconds', rules: BLOCKABLE_RULES, ...alerts.bruteforceResponse() },
          { what: 'analytics.access.block_seconds', rules: ACCESS_SOURCE_RULES as readonly RuleId[], ...alerts.accessResponse() },
        ].filter((p) => p.blockSeconds > 0)
      : [];
    let unsubscribe = (): void => undefined;
    if (alerts && policies.length) {
      if (!blocks) ctx.log.warn(`${policies.map((p) => p.what).join(' and ')} set but the data plane is off: alert only`);
      else {
        unsubscribe = alerts.subscribe((alert, change) => {
          const policy = policies.find((p) => blocksOn(alert, change, p.rules));
          if (!policy) return;
          const src = alert.subject;
          const why = mustNotBlock(src, policy.trustedProxies);
          if (why) {
            alert.details.response = `not blocked: ${why}`;
            return;
          }
          try {
            const b = blocks.block(src, `${alert.rule}: ${alert.summary}`, policy.blockSeconds);
            alert.details.response = `blocked at XDP until ${b.expires ? new Date(b.expires).toISOString() : 'removed'}`;
            alerts.save(alert);
            ctx.bus.publish({
              ts: Date.now(),
              type: 'response.block',
              service: alert.service,
              pid: 0,
              tid: 0,
              ppid: 0,
              uid: 0,
              comm: 'stackbpf',
              data: { action: 'block', prefix: b.prefix, seconds: policy.blockSeconds, rule_id: b.id, reason: alert.summary, alert_id: alert.id },
            });
          } catch (err) {
            alert.details.response = `block failed: ${(err as Error).message}`;
            ctx.log.error('cannot block the source at XDP', { source: src, error: (err as Error).message });
          }
        });
      }
    }
    const enforcementStatus = (): EnforcementStatus => ({
      enforcedInKernel: enforcer?.services() ?? [],
      enforcement: enforcer?.summary() ?? {},
      lsmDeny: lsmDeny(),
      enforcementErrors,
    });
    return {
      blocks,
      status: () => ({
        ...(blocks ? { blocks: blocks.list() } : {}),
        // shown with the analytics (the profiles' rules), as before
        ...(alerts ? { analytics: enforcementStatus() as never } : {}),
      }),
      async stop() {
        unsubscribe();
        blocks?.stop();
      },
    };
  },
  routes(app, m) {
    const blocks = () => {
      const b = m.get().blocks;
      if (!b) throw new HttpError(409, 'the data plane is off (no dataplane.provider_interfaces): nothing can be blocked at XDP');
      return b;
    };
    app.get('/v1/blocks', async () => blocks().list());
    app.post<{ Body: { prefix?: unknown; reason?: unknown; seconds?: unknown } | null }>('/v1/blocks', { schema: { body: blockBody } }, async (req, reply) => {
      const b = blocks();
      const body = req.body;
      if (!body || typeof body.prefix !== 'string') throw new HttpError(400, 'prefix: required (an address or prefix)');
      if (body.seconds !== undefined && (typeof body.seconds !== 'number' || body.seconds < 0))
        throw new HttpError(400, 'seconds: expected a non-negative number (0: until removed)');
      return reply.code(201).send(b.block(body.prefix, typeof body.reason === 'string' ? body.reason : 'operator', (body.seconds as number | undefined) ?? 0));
    });
    app.delete<{ Querystring: Query }>('/v1/blocks', { schema: { querystring: prefixQuery } }, async (req, reply) => {
      const b = blocks();
      const prefix = req.query.prefix;
      if (!prefix) throw new HttpError(400, 'give ?prefix=ADDR[/LEN]');
      if (!b.unblock(prefix)) throw new HttpError(404, `${prefix} is not blocked`);
      return reply.code(204).send();
    });
  },
  metrics(registry, m) {
    gaugeFrom(registry, 'stackbpf_blocked_sources', 'Source prefixes dropped at XDP.', () => m.running()?.blocks?.list().length);
  },
});

/**
 * Whether this kernel could deny an operation through BPF LSM instead of
 * killing the process afterwards. The agent responds with bpf_send_signal
 * from the tracepoints either way; the probe is reported so an operator knows.
 */
function lsmDeny(): { available: boolean; detail: string } {
  const p = probeFeatures().hooks.lsm;
  return { available: p.supported, detail: p.detail };
}
