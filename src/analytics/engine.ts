// The analytics consumer on the event bus: runs the detectors on every
// event, keeps the alerts, stores them and streams their changes. It asks
// the bus for back-pressure (a detector must not miss events): if it falls
// behind, the tracer leaves records in the kernel's ring buffer.
import type { EventBus } from '../trace/bus.js';
import type { EventStoreAccess } from '../capabilities.js';
import { type Alert, AlertManager } from './alerts.js';
import { type AccessOptions, AccessDetector, DEFAULT_ACCESS } from './access.js';
import { type BruteForceOptions, BruteForceDetector } from './bruteforce.js';
import { SqliDetector } from './sqli-detector.js';
import { DriftDetector, ProfileSet } from './drift.js';
import { quietRules } from './rules.js';
import { ProfileBuilder, type ProfileMode, type ServiceProfile } from './profile.js';

export interface AnalyticsOptions {
  bruteforce: BruteForceOptions;
  access?: AccessOptions;
  /** where service profiles live (YAML, one file per service) */
  profilesDir: string;
}

export class Analytics {
  readonly alerts = new AlertManager();
  readonly bruteforce: BruteForceDetector;
  readonly sqli: SqliDetector;
  readonly access: AccessDetector;
  readonly drift: DriftDetector;
  readonly profiles: ProfileSet;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private storeErrors = 0;
  private readonly quiet = quietRules();

  constructor(bus: EventBus, store: Pick<EventStoreAccess, 'saveAlert'> | undefined, opts: AnalyticsOptions) {
    this.bruteforce = new BruteForceDetector(this.alerts, opts.bruteforce);
    this.sqli = new SqliDetector(this.alerts);
    this.access = new AccessDetector(this.alerts, opts.access ?? { ...DEFAULT_ACCESS, trustedProxies: opts.bruteforce.trustedProxies });
    this.profiles = new ProfileSet(opts.profilesDir);
    this.profiles.load();
    this.drift = new DriftDetector(this.alerts, this.profiles);
    if (store) {
      this.alerts.subscribe((a) => {
        try {
          store.saveAlert(a);
        } catch {
          this.storeErrors++;
        }
      });
    }
    this.unsubscribe = bus.subscribe({
      name: 'analytics',
      capacity: 100_000,
      policy: 'backpressure',
      batch: 2000,
      handle: (batch) => {
        for (const ev of batch) {
          this.bruteforce.onEvent(ev);
          this.sqli.onEvent(ev);
          this.access.onEvent(ev);
          this.drift.onEvent(ev);
        }
      },
    });
    this.timer = setInterval(() => {
      const now = Date.now();
      this.bruteforce.tick(now);
      this.access.tick(now);
      // injection and drift alerts stand until their subject has been quiet (the registry says how long)
      for (const [quietMs, rules] of this.quiet) this.alerts.expire(rules, quietMs, now);
    }, 1000);
    this.timer.unref();
  }

  /** Learn profiles from stored events and write them; returns what was written. */
  learn(
    store: Pick<EventStoreAccess, 'each'>,
    q: { since?: number; until?: number; services?: string[]; mode?: ProfileMode },
  ): { profiles: ServiceProfile[]; files: string[]; errors: string[] } {
    const b = new ProfileBuilder();
    for (const ev of store.each({ ...(q.since !== undefined ? { since: q.since } : {}), ...(q.until !== undefined ? { until: q.until } : {}) })) {
      if (!q.services || q.services.includes(ev.service)) b.add(ev);
    }
    const profiles = b.services().map((s) => b.build(s, q.mode ?? 'monitor'));
    const files = profiles.map((p) => this.profiles.save(p));
    const { errors } = this.profiles.load();
    return { profiles, files, errors };
  }

  /** Alert changes as they happen. */
  stream(onChange: (a: Alert, change: 'raised' | 'updated' | 'resolved') => void): () => void {
    return this.alerts.subscribe(onChange);
  }

  status(): {
    active: number;
    raised: number;
    updated: number;
    resolved: number;
    suppressed: number;
    failedAuthentications: number;
    sqliRequests: number;
    sqliStatements: number;
    driftDeviations: number;
    access: AccessDetector['counters'];
    profiles: { service: string; mode: string }[];
    profileErrors: string[];
    storeErrors: number;
  } {
    return {
      active: this.alerts.active().length,
      ...this.alerts.counters,
      failedAuthentications: this.bruteforce.failures,
      sqliRequests: this.sqli.requests,
      sqliStatements: this.sqli.statements,
      driftDeviations: this.drift.deviations,
      access: { ...this.access.counters },
      profiles: this.profiles.list().map((p) => ({ service: p.service, mode: p.mode })),
      profileErrors: this.profiles.errors,
      storeErrors: this.storeErrors,
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.unsubscribe();
  }
}
