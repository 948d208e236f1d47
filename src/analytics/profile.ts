// Service profiles: what a service normally does, learned from its traced
// events and kept as a YAML file an operator can read, edit and version.
// Values are generalised so a profile describes behaviour, not instances:
// ids in paths and API routes become placeholders, SQL becomes its shape.
import { parse as parseYaml, stringify } from 'yaml';
import { isAgentEvent, type TraceEvent, wasKilled } from '../trace/event.js';
import { fingerprint } from './sql.js';

export type ProfileMode = 'learn' | 'monitor' | 'enforce';
export const PROFILE_KINDS = ['exec', 'files_read', 'files_write', 'peers', 'api', 'sql'] as const;
export type ProfileKind = (typeof PROFILE_KINDS)[number];

/**
 * What the kernel enforces when the profile's mode is enforce, rule by rule
 * (opt-in): `exec` kills an executable not in the exec list (on unless
 * said otherwise), `peers` kills a connect to an IP peer outside the peers
 * list, `files_deny` kills an open of a path under one of its prefixes.
 */
export interface EnforceRules {
  exec?: boolean;
  peers?: boolean;
  files_deny?: string[];
}

export interface ServiceProfile {
  service: string;
  mode: ProfileMode;
  enforce?: EnforceRules;
  learned?: { from: string; to: string; events: number };
  exec: string[];
  files_read: string[];
  files_write: string[];
  peers: string[];
  api: string[];
  sql: string[];
}

export class ProfileError extends Error {
  override name = 'ProfileError';
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const HEXID = /^[0-9a-f]{16,}$/i;

/** A path with its instance-specific parts replaced: /proc/123/stat → /proc/* /stat, ids → *. */
export function generalizePath(p: string): string {
  const segs = p.split('/').map((s) => (/^\d+$/.test(s) || UUID.test(s) || HEXID.test(s) ? '*' : s.replace(/\d{3,}/g, '*')));
  let out = segs.join('/');
  // temporary files: any name
  out = out.replace(/^(\/tmp|\/var\/tmp|\/dev\/shm)\/[^/]+/, '$1/*');
  return out;
}

/**
 * "GET /v3/users/{id}" from a request: ids become {id}; in object names past
 * /vN/collection/, runs of 4+ digits become `*` (generated names such as
 * tempest-tag-789129952 or p-20261127 are instances, not routes).
 */
export function generalizeApi(method: string, target: string): string {
  const path = target.split('?')[0] ?? '';
  const segs = path.split('/').map((s, i) => (s && (UUID.test(s) || HEXID.test(s) || /^\d+$/.test(s)) ? '{id}' : i >= 3 ? s.replace(/\d{4,}/g, '*') : s));
  return `${method} ${segs.join('/')}`;
}

/** host:port of a peer (unix sockets by path) */
export function generalizePeer(ev: TraceEvent): string | undefined {
  const d = ev.data as { remote?: unknown; path?: unknown };
  if (typeof d.remote === 'string') return d.remote;
  if (typeof d.path === 'string') return `unix:${d.path}`;
  return undefined;
}

/** What an event says about a profile: the kind and the generalised value, if it is profiled at all. */
export function observation(ev: TraceEvent): [ProfileKind, string] | undefined {
  const { type, data: d } = ev;
  switch (type) {
    case 'process.exec':
      return typeof d.filename === 'string' ? ['exec', d.filename] : undefined;
    case 'file.open':
    case 'file.write': {
      // a failed open is no behaviour to learn, unless the kernel killed the process for trying
      if (typeof d.path !== 'string' || (typeof d.result === 'number' && d.result < 0 && !d.killed) || d.relative) return undefined;
      const write = /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC/.test(String(d.flags ?? ''));
      return [write ? 'files_write' : 'files_read', generalizePath(d.path)];
    }
    case 'file.unlink':
    case 'file.rename':
      return typeof d.path === 'string' ? ['files_write', generalizePath(d.path)] : undefined;
    case 'net.connect': {
      const p = generalizePeer(ev);
      return p && (d.result === 0 || d.result === -115 || d.killed === true) ? ['peers', p] : undefined;
    }
    case 'http.request':
      return d.role === 'server' && typeof d.method === 'string' && typeof d.path === 'string' ? ['api', generalizeApi(d.method, d.path)] : undefined;
    case 'sql.query':
      return typeof d.statement === 'string' && !d.statement_truncated ? ['sql', fingerprint(d.statement)] : undefined;
  }
  return undefined;
}

/** Glob match: `*` is any run of characters within one path segment, `**` across segments. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(
    `^${pattern
      .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*/g, '\u0000')
      .replace(/\*/g, '[^/]*')
      .replace(/\u0000/g, '.*')}$`,
  );
  return re.test(value);
}

/** Accumulates observations per service. */
export class ProfileBuilder {
  private readonly seen = new Map<string, { kinds: Record<ProfileKind, Set<string>>; events: number; from: number; to: number }>();

  add(ev: TraceEvent): void {
    // what the agent records of its own doing is no behaviour of a service
    if (!ev.service || isAgentEvent(ev)) return;
    const o = observation(ev);
    let s = this.seen.get(ev.service);
    if (!s) {
      s = {
        kinds: Object.fromEntries(PROFILE_KINDS.map((k) => [k, new Set<string>()])) as Record<ProfileKind, Set<string>>,
        events: 0,
        from: ev.ts,
        to: ev.ts,
      };
      this.seen.set(ev.service, s);
    }
    s.events++;
    s.from = Math.min(s.from, ev.ts);
    s.to = Math.max(s.to, ev.ts);
    // what the kernel killed a process for trying is never learned as normal
    if (o && !wasKilled(ev)) s.kinds[o[0]].add(o[1]);
  }

  services(): string[] {
    return [...this.seen.keys()].sort();
  }

  build(service: string, mode: ProfileMode = 'monitor'): ServiceProfile {
    const s = this.seen.get(service);
    if (!s) throw new ProfileError(`no events of ${service} to learn from`);
    const p: ServiceProfile = {
      service,
      mode,
      learned: { from: new Date(s.from).toISOString(), to: new Date(s.to).toISOString(), events: s.events },
      exec: [],
      files_read: [],
      files_write: [],
      peers: [],
      api: [],
      sql: [],
    };
    for (const k of PROFILE_KINDS) p[k] = [...s.kinds[k]].sort();
    p.api = collapseRoutes(p.api);
    return p;
  }
}

/**
 * Routes that differ in one path segment only, with at least two values
 * seen there, become one pattern with `*` in that segment: objects looked up
 * by name (GET /v3/projects/p-1, /v3/projects/p-2) as well as by id.
 */
export function collapseRoutes(routes: string[]): string[] {
  const out = new Set(routes);
  const groups = new Map<string, Set<string>>();
  for (const r of routes) {
    const [method, path] = r.split(' ', 2) as [string, string];
    const segs = path.split('/');
    for (let i = 1; i < segs.length; i++) {
      if (segs[i] === '{id}' || segs[i] === '' || /^v\d/.test(segs[i] as string)) continue;
      const key = `${method} ${segs.map((x, j) => (j === i ? '\u0000' : x)).join('/')}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = new Set()));
      g.add(segs[i] as string);
    }
  }
  for (const [key, values] of groups) {
    // collections (/v3/projects, /v3/users) are plain words: only object names, past /vN/collection/, collapse
    if (values.size < 2 || key.split('/').indexOf('\u0000') < 3 || [...values].every((v) => /^[a-z_]+$/.test(v))) continue;
    const pattern = key.replace('\u0000', '*');
    for (const v of values) out.delete(key.replace('\u0000', v));
    out.add(pattern);
  }
  return [...out].sort();
}

export function profileToYaml(p: ServiceProfile): string {
  return `# stackbpf profile of ${p.service}: what it normally does. Edit freely; then \`stackbpf profile apply\`.\n# mode: learn (inactive) | monitor (alert on deviations) | enforce (alert and respond)\n${stringify(p, { lineWidth: 0 })}`;
}

/** Parse and validate a profile file; errors name the field. */
export function profileFromYaml(text: string, file = 'profile'): ServiceProfile {
  let raw: unknown;
  try {
    raw = parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw new ProfileError(`${file}: invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ProfileError(`${file}: expected a mapping`);
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!['service', 'mode', 'learned', 'enforce', ...PROFILE_KINDS].includes(k))
      throw new ProfileError(`${file}: ${k}: unknown setting (known: service, mode, learned, enforce, ${PROFILE_KINDS.join(', ')})`);
  if (typeof o.service !== 'string' || !o.service) throw new ProfileError(`${file}: service: required`);
  const mode = o.mode ?? 'monitor';
  if (mode !== 'learn' && mode !== 'monitor' && mode !== 'enforce') throw new ProfileError(`${file}: mode: expected learn, monitor or enforce`);
  const p: ServiceProfile = { service: o.service, mode, exec: [], files_read: [], files_write: [], peers: [], api: [], sql: [] };
  if (o.learned && typeof o.learned === 'object') p.learned = o.learned as ServiceProfile['learned'] & object;
  if (o.enforce !== undefined && o.enforce !== null) p.enforce = enforceFromYaml(o.enforce, file);
  for (const k of PROFILE_KINDS) {
    const v = o[k] ?? [];
    if (!Array.isArray(v)) throw new ProfileError(`${file}: ${k}: expected a list`);
    v.forEach((x, i) => {
      if (typeof x !== 'string' || x === '') throw new ProfileError(`${file}: ${k}[${i}]: expected a non-empty string`);
    });
    p[k] = v as string[];
  }
  return p;
}

function enforceFromYaml(v: unknown, file: string): EnforceRules {
  if (typeof v !== 'object' || Array.isArray(v)) throw new ProfileError(`${file}: enforce: expected a mapping (exec, peers, files_deny)`);
  const o = v as Record<string, unknown>;
  const out: EnforceRules = {};
  for (const [k, x] of Object.entries(o)) {
    if (k === 'exec' || k === 'peers') {
      if (typeof x !== 'boolean') throw new ProfileError(`${file}: enforce.${k}: expected true or false`);
      out[k] = x;
    } else if (k === 'files_deny') {
      if (!Array.isArray(x)) throw new ProfileError(`${file}: enforce.files_deny: expected a list of absolute path prefixes`);
      x.forEach((f, i) => {
        if (typeof f !== 'string' || !f.startsWith('/')) throw new ProfileError(`${file}: enforce.files_deny[${i}]: expected an absolute path prefix`);
        if (f.includes('*')) throw new ProfileError(`${file}: enforce.files_deny[${i}]: "${f}": prefixes only, no patterns (the kernel matches path prefixes)`);
        if (Buffer.byteLength(f) > 127) throw new ProfileError(`${file}: enforce.files_deny[${i}]: longer than 127 bytes`);
      });
      out.files_deny = x as string[];
    } else throw new ProfileError(`${file}: enforce.${k}: unknown rule (known: exec, peers, files_deny)`);
  }
  return out;
}

/** The kernel rules a profile asks for: none unless its mode is enforce; exec on by default then. */
export function kernelRules(p: ServiceProfile): { exec?: string[]; peers?: string[]; filesDeny?: string[] } | undefined {
  if (p.mode !== 'enforce') return undefined;
  const e = p.enforce ?? {};
  const out: { exec?: string[]; peers?: string[]; filesDeny?: string[] } = {};
  if (e.exec !== false) out.exec = p.exec;
  if (e.peers) out.peers = p.peers;
  if (e.files_deny?.length) out.filesDeny = e.files_deny;
  return out;
}

/** A profile compiled for lookups: exact values in sets, globs in a list. */
export class CompiledProfile {
  private readonly exact = new Map<ProfileKind, Set<string>>();
  private readonly globs = new Map<ProfileKind, string[]>();

  constructor(readonly profile: ServiceProfile) {
    for (const k of PROFILE_KINDS) {
      // SQL shapes contain '*' (SELECT count(*)); they are never globs
      const list = profile[k];
      this.exact.set(k, new Set(list));
      this.globs.set(k, k === 'sql' ? [] : list.filter((x) => x.includes('*')));
    }
  }

  /** Does the profile allow this observation? */
  allows(kind: ProfileKind, value: string): boolean {
    if (this.exact.get(kind)?.has(value)) return true;
    if (kind === 'files_read' && this.allows('files_write', value)) return true; // may write ⇒ may read
    return (this.globs.get(kind) ?? []).some((g) => globMatch(g, value));
  }
}

/** Observations in `events` the profile does not allow, counted. */
export function diffProfile(profile: ServiceProfile, events: Iterable<TraceEvent>): { kind: ProfileKind; value: string; count: number; first: number }[] {
  const c = new CompiledProfile(profile);
  const out = new Map<string, { kind: ProfileKind; value: string; count: number; first: number }>();
  for (const ev of events) {
    if (ev.service !== profile.service) continue;
    const o = observation(ev);
    if (!o || c.allows(o[0], o[1])) continue;
    const key = `${o[0]}\0${o[1]}`;
    const e = out.get(key);
    if (e) e.count++;
    else out.set(key, { kind: o[0], value: o[1], count: 1, first: ev.ts });
  }
  return [...out.values()].sort((a, b) => a.first - b.first);
}
