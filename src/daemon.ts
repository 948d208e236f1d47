// The agent process as a whole: the tracer (on by default), the event store
// and the bus between them, and the data plane when provider NICs are
// configured. One status for all of it; one stop.
import { isIP } from 'node:net';
import { type AgentConfig, dataplaneEnabled } from './config.js';
import { Agent, type AgentStatus } from './agent.js';
import type { Logger } from './log.js';
import { Analytics } from './analytics/engine.js';
import { inspectRequest } from './analytics/sqli.js';
import { EventBus, type ConsumerStats } from './trace/bus.js';
import { type EventFilter, type TraceEvent, matches } from './trace/event.js';
import { EventStore, type QueryOptions, type StoreStats } from './store/store.js';
import { Tracer, type TracerStatus } from './trace/tracer.js';
import type { KernelRules } from './trace/enforcement.js';
import { kernelRules } from './analytics/profile.js';
import { probeFeatures } from './ebpf/index.js';

export interface DaemonStatus extends Partial<AgentStatus> {
  dataplane: 'on' | 'off';
  trace: TracerStatus | { state: 'off' | 'failed'; error?: string };
  storage: (StoreStats & { state: 'on' }) | { state: 'off' };
  analytics:
    | (ReturnType<Analytics['status']> & {
        state: 'on';
        enforcedInKernel: string[];
        enforcement: ReturnType<Tracer['enforcement']['summary']>;
        lsmDeny: { available: boolean; detail: string };
        enforcementErrors: string[];
      })
    | { state: 'off' };
  pipeline: { published: number; consumers: ConsumerStats[]; droppedByClosedStreams: number };
  startedAt: string;
}

export class Daemon {
  readonly bus = new EventBus();
  store: EventStore | undefined;
  tracer: Tracer | undefined;
  agent: Agent | undefined;
  analytics: Analytics | undefined;
  private traceError: string | undefined;
  private closedStreamDrops = 0;
  private readonly startedAt = new Date().toISOString();

  private constructor(
    private config: AgentConfig,
    private readonly log: Logger,
  ) {}

  static async start(config: AgentConfig, log: Logger): Promise<Daemon> {
    const d = new Daemon(config, log);
    try {
      if (config.storage.enabled) {
        const store = new EventStore({
          path: config.storage.path,
          maxAgeSeconds: config.storage.retentionDays * 86400,
          maxBytes: config.storage.maxSizeMb * 1024 * 1024,
        });
        d.store = store;
        store.applyRetention();
        store.startRetention(0.5, (err) => log.warn('retention failed', { error: (err as Error).message }));
        d.bus.subscribe({
          name: 'store',
          capacity: config.storage.queueEvents,
          policy: 'backpressure',
          batch: 5000,
          handle: (batch) => store.write(batch),
        });
        log.info('event store open', { path: config.storage.path, rows: store.stats().rows });
      }
      if (config.analytics.enabled) {
        d.analytics = new Analytics(d.bus, d.store, { bruteforce: config.analytics.bruteforce, profilesDir: config.analytics.profilesDir });
        const loaded = d.analytics.profiles.list();
        if (loaded.length || d.analytics.profiles.errors.length)
          log.info('profiles loaded', { profiles: loaded.map((p) => `${p.service} (${p.mode})`), errors: d.analytics.profiles.errors });
      }
      if (config.trace.enabled) {
        const t = config.trace;
        try {
          d.tracer = await Tracer.start({ ...t, ...(config.analytics.enabled ? { inspectRequest } : {}) }, d.bus, log);
        } catch (err) {
          // with a data plane to run, a tracer that cannot start must not take forwarding down with it
          if (!dataplaneEnabled(config)) throw err;
          d.traceError = (err as Error).message;
          log.error('tracing could not start; the data plane runs without it', { error: d.traceError });
        }
      }
      d.applyEnforcement();
      if (dataplaneEnabled(config)) d.agent = await Agent.start(config, log);
      else log.info('data plane off: no dataplane.provider_interfaces configured');
      d.wireResponses();
      return d;
    } catch (err) {
      await d.stop();
      throw err;
    }
  }

  reload(config: AgentConfig): void {
    this.agent?.reload(config);
    if (this.analytics) {
      const r = this.analytics.profiles.load();
      this.log.info('profiles reloaded', { loaded: r.loaded, errors: r.errors });
      this.applyEnforcement();
    }
    this.config = config;
  }

  /**
   * Opt-in response to brute force: drop the source at XDP for
   * analytics.bruteforce.block_seconds. Never loopback, never a trusted
   * proxy (that would cut every client off). The response is recorded as an
   * event and on the alert.
   */
  private wireResponses(): void {
    const an = this.analytics;
    const seconds = this.config.analytics.bruteforce.blockSeconds;
    if (!an || seconds <= 0) return;
    if (!this.agent) {
      this.log.warn('analytics.bruteforce.block_seconds is set but the data plane is off: brute force is alert-only');
      return;
    }
    const trusted = new Set(this.config.analytics.bruteforce.trustedProxies);
    an.alerts.subscribe((alert, change) => {
      if (change !== 'raised' || (alert.rule !== 'keystone.bruteforce.source' && alert.rule !== 'keystone.bruteforce.spray')) return;
      const src = alert.subject;
      if (isIP(src) === 0 || /^127\.|^::1$|^::ffff:127\./.test(src) || trusted.has(src)) {
        alert.details.response = `not blocked: ${src} is loopback, a trusted proxy or not an address`;
        return;
      }
      try {
        const b = (this.agent as Agent).block(src, `${alert.rule}: ${alert.summary}`, seconds);
        alert.details.response = `blocked at XDP until ${b.expires ? new Date(b.expires).toISOString() : 'removed'}`;
        this.store?.saveAlert(alert);
        this.bus.publish({
          ts: Date.now(),
          type: 'response.block',
          service: alert.service,
          pid: 0,
          tid: 0,
          ppid: 0,
          uid: 0,
          comm: 'stackbpf',
          data: { action: 'block', prefix: b.prefix, seconds, rule_id: b.id, reason: alert.summary, alert_id: alert.id },
        });
      } catch (err) {
        alert.details.response = `block failed: ${(err as Error).message}`;
        this.log.error('cannot block the source at XDP', { source: src, error: (err as Error).message });
      }
    });
  }

  /** Put the enforce-mode profiles' kernel rules into the kernel, lift the others. */
  applyEnforcement(): void {
    const t = this.tracer;
    const an = this.analytics;
    if (!t || !an) return;
    const want = new Map<string, KernelRules>();
    for (const p of an.profiles.list()) {
      const r = kernelRules(p);
      if (r) want.set(p.service, r);
    }
    for (const s of t.enforcement.services()) if (!want.has(s)) t.enforcement.set(s, undefined);
    const failures: string[] = [];
    for (const [service, rules] of want) {
      try {
        t.enforcement.set(service, rules);
      } catch (err) {
        // checked before any map is touched: what was in force stays
        failures.push((err as Error).message);
        this.log.warn('kernel enforcement refused: the profile stays as it was in the kernel (alerts still raised)', {
          service,
          error: (err as Error).message,
        });
      }
    }
    this.enforcementErrors = failures;
    if (want.size) this.log.info('enforcement in the kernel', { services: t.enforcement.summary() });
  }

  enforcementErrors: string[] = [];

  /** Live events matching `filter`; a slow reader loses its oldest events (counted). */
  stream(filter: EventFilter, onBatch: (events: TraceEvent[]) => void, capacity = 10_000): { close(): void; stats(): ConsumerStats | undefined } {
    const name = `stream-${Math.random().toString(36).slice(2, 8)}`;
    const unsubscribe = this.bus.subscribe({
      name,
      capacity,
      policy: 'drop-oldest',
      batch: 500,
      handle: (batch) => {
        const mine = batch.filter((e) => matches(e, filter));
        if (mine.length) onBatch(mine);
      },
    });
    const stats = (): ConsumerStats | undefined => this.bus.stats().find((s) => s.name === name);
    return {
      close: () => {
        this.closedStreamDrops += stats()?.dropped ?? 0;
        unsubscribe();
      },
      stats,
    };
  }

  query(q: QueryOptions): TraceEvent[] {
    if (!this.store) throw new Error('event storage is off (storage.enabled: false)');
    return this.store.query(q);
  }

  status(): DaemonStatus {
    const st: DaemonStatus = {
      ...(this.agent ? this.agent.status() : {}),
      dataplane: this.agent ? 'on' : 'off',
      trace: this.tracer ? this.tracer.status() : this.traceError ? { state: 'failed', error: this.traceError } : { state: 'off' },
      storage: this.store ? { state: 'on', ...this.store.stats() } : { state: 'off' },
      analytics: this.analytics
        ? {
            state: 'on',
            ...this.analytics.status(),
            enforcedInKernel: this.tracer?.enforcement.services() ?? [],
            enforcement: this.tracer?.enforcement.summary() ?? {},
            lsmDeny: lsmDeny(),
            enforcementErrors: this.enforcementErrors,
          }
        : { state: 'off' },
      pipeline: { published: this.bus.published, consumers: this.bus.stats(), droppedByClosedStreams: this.closedStreamDrops },
      startedAt: this.startedAt,
    };
    return st;
  }

  async stop(): Promise<void> {
    if (this.tracer) {
      await this.tracer.stop();
      this.tracer = undefined;
    }
    await this.bus.drain(10_000);
    this.analytics?.stop();
    this.analytics = undefined;
    if (this.agent) {
      await this.agent.stop();
      this.agent = undefined;
    }
    if (this.store) {
      this.store.close();
      this.store = undefined;
    }
    this.log.debug('daemon stopped', { config: this.config.api.listen });
  }
}

/**
 * Whether this kernel could deny an operation through BPF LSM instead of
 * killing the process afterwards. The agent responds with bpf_send_signal
 * from the tracepoints either way; the probe is reported so an operator knows.
 */
function lsmDeny(): { available: boolean; detail: string } {
  const p = probeFeatures().hooks.lsm;
  return { available: p.supported, detail: p.detail };
}
