// Unauthorized access, from the kernel's view of every traced service's API
// (not only Keystone's) and of the connections its processes make:
// - a token used from a source, or with a user agent, it was never seen with
//   (issued to one client, replayed by another), or used after Keystone
//   revoked it (DELETE /v3/auth/tokens) or refused it after it worked;
// - authorization probing: bursts of 403 across routes, by one identity or
//   one source;
// - enumeration: sweeps of 404 over ids, by one identity or one source;
// - slow, distributed credential guessing: one user name failing from many
//   sources, each below the per-source brute-force threshold;
// - a service's credentials (a user of the `service` project) used from a
//   source that service never used; the metadata service (169.254.169.254)
//   reached by a host process that is not a metadata proxy; a service's own
//   port reached from where instances live.
// Tokens are followed by reference (an HMAC the tracer keys in memory): the
// detector never sees a token.
import { BlockList } from 'node:net';
import { parsePrefix } from '../ebpf/codec.js';
import { FifoMap } from '../util/fifo-map.js';
import type { EventOf, TraceEvent } from '../trace/event.js';
import { type AlertManager, evidenceOf, type Evidence, hostOf } from './alerts.js';
import type { RuleId } from './rules.js';

export interface AccessOptions {
  windowSeconds: number;
  forbidden: { perIdentity: number; perSource: number; routes: number };
  notFound: { perIdentity: number; perSource: number; ids: number };
  /** distinct sources failing for one user name within guessingWindowSeconds */
  guessingSources: number;
  guessingWindowSeconds: number;
  /** addresses of service hosts and proxies: a token moving to or from them is not a replay */
  trustedSources: string[];
  /** X-Forwarded-For is believed from these (analytics.bruteforce.trusted_proxies) */
  trustedProxies: string[];
  /** services whose processes may reach the metadata service */
  metadataClients: string[];
  /** the project of the services' own users */
  serviceProject: string;
  /** where instances live (tenant and provider ranges): none of them has business with a service's own port */
  instanceNetworks: string[];
  /** quiet this long: the alert is resolved */
  recoverySeconds: number;
}

export const DEFAULT_ACCESS: AccessOptions = {
  windowSeconds: 60,
  forbidden: { perIdentity: 10, perSource: 20, routes: 3 },
  notFound: { perIdentity: 20, perSource: 40, ids: 15 },
  guessingSources: 5,
  guessingWindowSeconds: 1800,
  trustedSources: [],
  trustedProxies: [],
  metadataClients: ['neutron-ovn-metadata-agent', 'neutron-metadata-agent', 'nova-api-metadata', 'haproxy'],
  serviceProject: 'service',
  instanceNetworks: [],
  recoverySeconds: 300,
};

/** The rules whose subject is a source address (the response may block them). */
export const ACCESS_SOURCE_RULES = [
  'access.token.new_source',
  'access.token.revoked',
  'access.forbidden.source',
  'access.enumeration.source',
  'access.service_port',
] as const;

interface TokenSeen {
  user: string;
  sources: Set<string>;
  /** the User-Agents' families (agentFamily) */
  agents: Set<string>;
  /** answered below 400 at least once */
  accepted: boolean;
  revoked: boolean;
  /** first seen (issued or used), ms since the epoch */
  since: number;
}

// Keystone's tokens live an hour by default: a refusal near that age is the token's expiry
const EXPIRY_GRACE_MS = 50 * 60_000;

interface Burst {
  times: number[];
  keys: Map<string, number>;
  evidence: Evidence[];
  last: number;
}

const ID_SEGMENT = /^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+)$/i;
/** GET /v3/users/0f3e…/projects → GET /v3/users/{id}/projects */
export function routeOf(method: string, path: string): string {
  const p = path.split('?')[0] ?? '';
  return `${method} ${p
    .split('/')
    .map((s) => (ID_SEGMENT.test(s) ? '{id}' : s))
    .join('/')}`;
}
/** The id segments of a path, joined: what an enumeration sweeps over. */
function idsOf(path: string): string {
  return (path.split('?')[0] ?? '')
    .split('/')
    .filter((s) => ID_SEGMENT.test(s) || /^[\w.-]{1,64}$/.test(s))
    .slice(-1)
    .join('/');
}

// OpenStack's own client libraries: one client process sends several of these for one token
// (the `openstack` command: openstacksdk for the network, python-keystoneclient for identity)
const OPENSTACK_CLIENTS =
  /^(keystoneauth1|openstacksdk|python-\w+client|osc-lib|openstackclient|keystonemiddleware|horizon|tempest(-lib)?|os-client-config|shade)$/i;

/** What kind of software a User-Agent names: its first product, with OpenStack's client libraries as one kind. */
export function agentFamily(ua: string): string {
  const products = ua.match(/[A-Za-z][\w.-]*(?=\/|\s|$)/g) ?? [];
  if (products.some((p) => OPENSTACK_CLIENTS.test(p))) return 'openstack';
  const first = (products[0] ?? ua).toLowerCase();
  return first === 'mozilla' ? 'browser' : first;
}

export class AccessDetector {
  private readonly tokens = new FifoMap<string, TokenSeen>(100_000);
  private readonly forbiddenBy = new FifoMap<string, Burst>(100_000);
  private readonly notFoundBy = new FifoMap<string, Burst>(100_000);
  private readonly guessing = new FifoMap<string, Burst>(100_000);
  private readonly serviceSources = new FifoMap<string, Set<string>>(10_000);
  /** paths a client deleted, and when: its GETs of them answered 404 confirm the delete, they sweep nothing */
  private readonly deleted = new FifoMap<string, number>(100_000);
  private readonly instances = new BlockList();
  counters = { tokens: 0, forbidden: 0, notFound: 0, failedAuth: 0 };

  constructor(
    private readonly alerts: AlertManager,
    private readonly o: AccessOptions = DEFAULT_ACCESS,
  ) {
    for (const n of o.instanceNetworks) {
      const p = parsePrefix(n);
      this.instances.addSubnet(p.addr, p.prefixlen, p.family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  private source(ev: EventOf<'http.request'>): string {
    const remote = hostOf(String(ev.data.remote ?? ''));
    const xff = ev.data.forwarded_for;
    if (typeof xff === 'string' && this.o.trustedProxies.includes(remote)) return xff.split(',').at(-1)?.trim() || remote;
    return remote || 'unknown';
  }

  private raise(rule: RuleId, ev: TraceEvent, subject: string, summary: string, details: Record<string, unknown>, evidence?: Evidence[]): void {
    this.alerts.raise({ rule, service: ev.service, subject, summary, evidence: evidence ?? [evidenceOf(ev)], details, ts: ev.ts });
  }

  private burst(map: FifoMap<string, Burst>, key: string, ev: TraceEvent, item: string, windowSeconds: number): Burst {
    let b = map.get(key);
    if (!b) {
      b = { times: [], keys: new Map(), evidence: [], last: 0 };
      map.set(key, b);
    }
    const horizon = ev.ts - windowSeconds * 1000;
    b.times.push(ev.ts);
    while ((b.times[0] as number) < horizon) b.times.shift();
    b.keys.set(item, ev.ts);
    for (const [k, t] of b.keys) if (t < horizon) b.keys.delete(k);
    b.evidence.push(evidenceOf(ev));
    if (b.evidence.length > 20) b.evidence.shift();
    b.last = ev.ts;
    return b;
  }

  onEvent(ev: TraceEvent): void {
    if (ev.type === 'net.connect') {
      this.onConnect(ev);
      return;
    }
    if (ev.type === 'net.accept') {
      this.onAccept(ev);
      return;
    }
    if (ev.type !== 'http.request' || ev.data.role !== 'server') return;
    const d = ev.data;
    const src = this.source(ev);
    const status = d.status ?? 0;
    const who = d.user_id ?? d.user ?? (d.token_ref ? `token:${d.token_ref}` : undefined);
    const isAuth = typeof d.path === 'string' && d.path.startsWith('/v3/auth/tokens');
    // a token issued, revoked, or used
    if (isAuth && d.method === 'POST' && status === 201 && d.subject_token_ref) {
      this.tokens.set(d.subject_token_ref, {
        user: d.user ?? d.auth_user ?? '?',
        sources: new Set([src]),
        agents: new Set(d.user_agent ? [agentFamily(d.user_agent)] : []),
        accepted: true,
        revoked: false,
        since: ev.ts,
      });
    }
    if (isAuth && d.method === 'POST' && status === 201) this.serviceCredentials(ev, src);
    if (isAuth && d.method === 'DELETE' && status < 300 && d.subject_token_ref) {
      const t = this.tokens.get(d.subject_token_ref);
      if (t) t.revoked = true;
    }
    if (d.token_ref) this.tokenUse(ev, src, d.token_ref, status);
    // authorization probing and enumeration
    if (status === 403) {
      this.counters.forbidden++;
      const route = routeOf(d.method, d.path);
      const f = this.o.forbidden;
      if (who) this.check(this.forbiddenBy, `id\0${who}`, ev, route, f.perIdentity, f.routes, 'access.forbidden.identity', who, 'routes');
      if (!this.o.trustedSources.includes(src))
        this.check(this.forbiddenBy, `src\0${src}`, ev, route, f.perSource, f.routes, 'access.forbidden.source', src, 'routes');
    }
    const path = (d.path ?? '').split('?')[0] ?? '';
    if (d.method === 'DELETE' && status < 300) this.deleted.set(path, ev.ts);
    const confirmsDelete = ev.ts - (this.deleted.get(path) ?? 0) < 600_000;
    if (status === 404 && d.method === 'GET' && !isAuth && !confirmsDelete) {
      this.counters.notFound++;
      const id = `${routeOf(d.method, d.path)} ${idsOf(d.path)}`;
      const n = this.o.notFound;
      if (who) this.check(this.notFoundBy, `id\0${who}`, ev, id, n.perIdentity, n.ids, 'access.enumeration.identity', who, 'targets');
      if (!this.o.trustedSources.includes(src))
        this.check(this.notFoundBy, `src\0${src}`, ev, id, n.perSource, n.ids, 'access.enumeration.source', src, 'targets');
    }
    // distributed guessing: one user name failing from many sources
    if (isAuth && d.method === 'POST' && status === 401) {
      this.counters.failedAuth++;
      const user = `${String(d.auth_user ?? d.auth_user_id ?? '?')}${d.auth_domain ? `@${d.auth_domain}` : ''}`;
      const b = this.burst(this.guessing, user, ev, src, this.o.guessingWindowSeconds);
      if (b.keys.size >= this.o.guessingSources)
        this.raise(
          'access.guessing.distributed',
          ev,
          user,
          `failed logins for ${user} from ${b.keys.size} sources in ${Math.round(this.o.guessingWindowSeconds / 60)} min`,
          {
            user,
            sources: [...b.keys.keys()].slice(0, 50),
            failures: b.times.length,
            threshold: this.o.guessingSources,
            window_seconds: this.o.guessingWindowSeconds,
          },
          b.evidence.slice(-10),
        );
    }
  }

  private check(
    map: FifoMap<string, Burst>,
    key: string,
    ev: TraceEvent,
    item: string,
    count: number,
    distinct: number,
    rule: RuleId,
    subject: string,
    what: string,
  ): void {
    const b = this.burst(map, key, ev, item, this.o.windowSeconds);
    if (b.times.length >= count && b.keys.size >= distinct) {
      const d = (ev as EventOf<'http.request'>).data;
      this.raise(
        rule,
        ev,
        subject,
        `${b.times.length} answers ${d.status} to ${subject} over ${b.keys.size} ${what} in ${this.o.windowSeconds} s`,
        { subject, status: d.status, count: b.times.length, [what]: [...b.keys.keys()].slice(0, 30), threshold: count, window_seconds: this.o.windowSeconds },
        b.evidence.slice(-10),
      );
    }
  }

  private tokenUse(ev: EventOf<'http.request'>, src: string, ref: string, status: number): void {
    this.counters.tokens++;
    const d = ev.data;
    const t = this.tokens.get(ref);
    if (!t) {
      // first seen in use (issued before the agent watched): that is its baseline
      this.tokens.set(ref, {
        user: d.user ?? '?',
        sources: new Set([src]),
        agents: new Set(d.user_agent ? [agentFamily(d.user_agent)] : []),
        accepted: status > 0 && status < 400,
        revoked: false,
        since: ev.ts,
      });
      return;
    }
    const user = d.user ?? t.user;
    if (t.revoked || (status === 401 && t.accepted && ev.ts - t.since < EXPIRY_GRACE_MS)) {
      this.raise(
        'access.token.revoked',
        ev,
        src,
        `${t.revoked ? 'a revoked' : 'a refused'} token of ${user} used from ${src}: ${d.method} ${d.path} answered ${status}`,
        { source: src, user, token_ref: ref, revoked: t.revoked, status, method: d.method, path: d.path },
      );
      return;
    }
    // a service acting for the user carries its own token beside it: not a replay
    const trusted = d.service_token === true || this.o.trustedSources.includes(src);
    if (!t.sources.has(src)) {
      if (!trusted)
        this.raise(
          'access.token.new_source',
          ev,
          src,
          `a token of ${user} used from ${src}, a source it was never used from (${[...t.sources].join(', ')}): ${d.method} ${d.path} ${status}`,
          { source: src, user, token_ref: ref, known_sources: [...t.sources], user_agent: d.user_agent, method: d.method, path: d.path, status },
        );
      t.sources.add(src);
    } else if (d.user_agent && !t.agents.has(agentFamily(d.user_agent)) && t.agents.size > 0 && !trusted) {
      this.raise('access.token.new_agent', ev, `${user}@${src}`, `a token of ${user} used with a user agent it was never used with: ${d.user_agent}`, {
        source: src,
        user,
        token_ref: ref,
        user_agent: d.user_agent,
        known_agents: [...t.agents],
        method: d.method,
        path: d.path,
      });
    }
    if (d.user_agent) t.agents.add(agentFamily(d.user_agent));
    if (status > 0 && status < 400) t.accepted = true;
  }

  /** A service's own user (project `service`) authenticating from a source that service never used. */
  private serviceCredentials(ev: EventOf<'http.request'>, src: string): void {
    const d = ev.data;
    if (d.project !== this.o.serviceProject && d.auth_project !== this.o.serviceProject) return;
    const user = d.user ?? d.auth_user ?? '?';
    const seen = this.serviceSources.get(user);
    if (!seen) {
      this.serviceSources.set(user, new Set([src]));
      return;
    }
    if (seen.has(src)) return;
    if (!this.o.trustedSources.includes(src))
      this.raise(
        'access.service_credentials',
        ev,
        `${user}@${src}`,
        `the service user ${user} authenticated from ${src}, where that service never authenticated from (${[...seen].join(', ')})`,
        { user, source: src, known_sources: [...seen] },
      );
    seen.add(src);
  }

  private onConnect(ev: EventOf<'net.connect'>): void {
    const remote = ev.data.remote ?? '';
    if (!remote.startsWith('169.254.169.254:')) return;
    if (this.o.metadataClients.includes(ev.service) || this.o.metadataClients.includes(ev.comm)) return;
    this.raise(
      'access.metadata',
      ev,
      `${ev.service || ev.comm}:${ev.pid}`,
      `${ev.service || 'a process'} (${ev.comm}, pid ${ev.pid}) connected to the metadata service ${remote}`,
      { remote, comm: ev.comm, pid: ev.pid, service: ev.service },
    );
  }

  /** A service's own port reached from where instances live: an instance has no business there. */
  private onAccept(ev: EventOf<'net.accept'>): void {
    if (!this.o.instanceNetworks.length || !ev.data.remote) return;
    const host = hostOf(ev.data.remote);
    const family = host.includes(':') ? 'ipv6' : 'ipv4';
    if (!this.instances.check(host, family)) return;
    this.raise('access.service_port', ev, host, `${host}, an instance address, reached ${ev.service || ev.comm}'s port ${ev.data.local ?? '?'}`, {
      source: host,
      remote: ev.data.remote,
      local: ev.data.local,
      service: ev.service,
      comm: ev.comm,
    });
  }

  /** Forget idle windows. (The alerts resolve after a quiet period: the rule registry says how long.) */
  tick(now: number): void {
    const horizon = now - Math.max(this.o.windowSeconds, this.o.recoverySeconds) * 1000;
    for (const map of [this.forbiddenBy, this.notFoundBy]) for (const [k, b] of map) if (b.last < horizon) map.delete(k);
    const gh = now - this.o.guessingWindowSeconds * 1000;
    for (const [k, b] of this.guessing) if (b.last < gh) this.guessing.delete(k);
  }
}
