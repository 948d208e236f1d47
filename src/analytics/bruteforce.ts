// Brute force against Keystone, from the tracer's http.request events:
// failed authentications (POST /v3/auth/tokens answered 401) counted in
// sliding windows per source address, per user name, and as password
// spraying (many distinct users from one source). An alert is raised on the
// event that crosses a threshold — no polling between the failure and the
// alert — and resolved once the source (or user) has been quiet for
// `recoverySeconds`.
import { FifoMap } from '../util/fifo-map.js';
import type { EventOf, TraceEvent } from '../trace/event.js';
import { type AlertManager, evidenceOf, type Evidence, hostOf } from './alerts.js';

export interface BruteForceOptions {
  windowSeconds: number;
  /** failures from one source within the window */
  perSource: number;
  /** failures for one user name within the window, whatever the source */
  perUser: number;
  /** distinct user names failing from one source within the window */
  sprayUsers: number;
  recoverySeconds: number;
  /** proxies whose X-Forwarded-For names the real client */
  trustedProxies: string[];
  /** opt-in response: drop the source at XDP for this long (0: alert only; needs the data plane) */
  blockSeconds?: number;
}

export const DEFAULT_BRUTEFORCE: BruteForceOptions = { windowSeconds: 60, perSource: 10, perUser: 8, sprayUsers: 5, recoverySeconds: 60, trustedProxies: [] };

interface Window {
  times: number[];
  evidence: Evidence[];
  users?: Map<string, number>;
  last: number;
}

export class BruteForceDetector {
  // bounded under a flood of distinct sources or users: the oldest go first
  private readonly bySource = new FifoMap<string, Window>(100_000);
  private readonly byUser = new FifoMap<string, Window>(100_000);
  /** failed authentications seen */
  failures = 0;

  constructor(
    private readonly alerts: AlertManager,
    private readonly opts: BruteForceOptions = DEFAULT_BRUTEFORCE,
  ) {}

  static isFailedAuth(ev: TraceEvent): ev is EventOf<'http.request'> {
    if (ev.type !== 'http.request') return false;
    const d = ev.data;
    return d.method === 'POST' && typeof d.path === 'string' && d.path.startsWith('/v3/auth/tokens') && d.status === 401 && d.role === 'server';
  }

  private source(ev: EventOf<'http.request'>): string {
    const remote = hostOf(String(ev.data.remote ?? ''));
    const xff = ev.data.forwarded_for;
    if (typeof xff === 'string' && this.opts.trustedProxies.includes(remote)) return xff.split(',').at(-1)?.trim() || remote;
    return remote || 'unknown';
  }

  private push(map: FifoMap<string, Window>, key: string, ev: TraceEvent, user?: string): Window {
    let w = map.get(key);
    if (!w) {
      w = { times: [], evidence: [], last: 0 };
      map.set(key, w);
    }
    const horizon = ev.ts - this.opts.windowSeconds * 1000;
    w.times.push(ev.ts);
    while ((w.times[0] as number) < horizon) w.times.shift();
    w.evidence.push(evidenceOf(ev));
    if (w.evidence.length > 20) w.evidence.shift();
    w.last = ev.ts;
    if (user !== undefined) {
      w.users ??= new Map();
      w.users.set(user, ev.ts);
      for (const [u, t] of w.users) if (t < horizon) w.users.delete(u);
    }
    return w;
  }

  onEvent(ev: TraceEvent): void {
    if (!BruteForceDetector.isFailedAuth(ev)) return;
    this.failures++;
    const src = this.source(ev);
    const user = `${String(ev.data.auth_user ?? ev.data.auth_user_id ?? '?')}${ev.data.auth_domain ? `@${ev.data.auth_domain}` : ''}`;
    const o = this.opts;
    const s = this.push(this.bySource, src, ev, user);
    const u = this.push(this.byUser, user, ev);
    if (s.times.length >= o.perSource) {
      this.alerts.raise({
        rule: 'keystone.bruteforce.source',
        service: ev.service,
        subject: src,
        summary: `${s.times.length} failed Keystone authentications from ${src} in ${o.windowSeconds} s`,
        evidence: s.evidence.slice(-10),
        details: {
          source: src,
          failures: s.times.length,
          window_seconds: o.windowSeconds,
          threshold: o.perSource,
          users: [...(s.users?.keys() ?? [])].slice(0, 20),
        },
        ts: ev.ts,
      });
    }
    if ((s.users?.size ?? 0) >= o.sprayUsers) {
      this.alerts.raise({
        rule: 'keystone.bruteforce.spray',
        service: ev.service,
        subject: src,
        summary: `password spraying: ${s.users?.size} user names failed from ${src} in ${o.windowSeconds} s`,
        evidence: s.evidence.slice(-10),
        details: { source: src, users: [...(s.users?.keys() ?? [])].slice(0, 50), window_seconds: o.windowSeconds, threshold: o.sprayUsers },
        ts: ev.ts,
      });
    }
    if (u.times.length >= o.perUser) {
      this.alerts.raise({
        rule: 'keystone.bruteforce.user',
        service: ev.service,
        subject: user,
        summary: `${u.times.length} failed Keystone authentications for ${user} in ${o.windowSeconds} s`,
        evidence: u.evidence.slice(-10),
        details: { user, failures: u.times.length, window_seconds: o.windowSeconds, threshold: o.perUser },
        ts: ev.ts,
      });
    }
  }

  /** Resolve alerts whose subject has been quiet for recoverySeconds; forget idle windows. */
  tick(now: number): void {
    const quiet = now - this.opts.recoverySeconds * 1000;
    for (const [src, w] of this.bySource) {
      if (w.last < quiet) {
        this.alerts.resolve('keystone.bruteforce.source', src, now);
        this.alerts.resolve('keystone.bruteforce.spray', src, now);
        this.bySource.delete(src);
      }
    }
    for (const [user, w] of this.byUser) {
      if (w.last < quiet) {
        this.alerts.resolve('keystone.bruteforce.user', user, now);
        this.byUser.delete(user);
      }
    }
  }
}
