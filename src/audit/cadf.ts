// Traced events as DMTF CADF events, shaped as pycadf models them (and as
// Keystone's notifications and keystonemiddleware's audit filter write them,
// so the two can be compared field by field): typeURI, id, eventType,
// eventTime, action, outcome, reason, initiator, target, observer, and an
// attachment with the kernel's provenance of the process that acted.
import { createHash, randomUUID } from 'node:crypto';
import { fingerprint, tokenize } from '../analytics/sql.js';
import { looksLikeId, singular } from '../perf/routes.js';
import type { EventOf, TraceEvent } from '../trace/event.js';

export const CADF_EVENT = 'http://schemas.dmtf.org/cloud/audit/1.0/event';

export interface CadfResource {
  typeURI: string;
  id: string;
  name?: string;
  host?: { address?: string; agent?: string };
  [extra: string]: unknown;
}

export interface CadfEvent {
  typeURI: string;
  id: string;
  eventType: 'activity' | 'monitor' | 'control';
  eventTime: string;
  action: string;
  outcome: 'success' | 'failure' | 'unknown' | 'pending';
  reason?: { reasonType: string; reasonCode: string };
  initiator: CadfResource;
  target: CadfResource;
  observer: CadfResource;
  attachments?: { typeURI: string; name: string; content: unknown }[];
  requestPath?: string;
}

/** Where a record came from, as the kernel saw it: nothing a process can claim for itself. */
export interface Provenance {
  node: string;
  pid: number;
  uid: number;
  comm: string;
  service: string;
  exe?: string;
  exe_sha256?: string;
  cgroup?: string;
}

/** pycadf's time format: 2026-12-06T08:07:26.123197+0000 */
export function cadfTime(ms: number): string {
  const d = new Date(Math.floor(ms));
  const us = Math.floor((ms * 1000) % 1_000_000)
    .toString()
    .padStart(6, '0');
  return `${d.toISOString().slice(0, 19)}.${us}+0000`;
}

/** A stable UUID from a name (for ids of things that have none: a process, a file, a database). */
export function nameUuid(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const serviceIds = new Map<string, string>();
const serviceUuid = (service: string): string => {
  let id = serviceIds.get(service);
  if (!id) {
    id = nameUuid(`service:${service}`);
    if (serviceIds.size < 1000) serviceIds.set(service, id);
  }
  return id;
};

/** The service type each API service is in the catalog as (CADF target `service/<type>`). */
const SERVICE_TYPE: Record<string, string> = {
  keystone: 'security',
  'neutron-server': 'network',
  'nova-api': 'compute',
  'nova-metadata': 'compute/metadata',
  placement: 'placement',
  glance: 'storage/image',
};

/** keystonemiddleware's audit maps name these item types differently from a plain singular. */
const ITEM_NAME: Record<string, string> = { floatingips: 'ip', 'security-group-rules': 'rule', 'metering-label-rules': 'rule', 'metering-labels': 'label' };

/**
 * Keystone's API as Keystone's own notifications type it (keystone/notifications.py's
 * CADF_TYPE_MAP): the collections it has a CADF type for; every other one it calls "unknown"
 * (credentials, limits, access rules, project tags, identity providers, ...).
 */
const KEYSTONE_DATA: Record<string, string> = {
  users: 'data/security/account/user',
  groups: 'data/security/group',
  projects: 'data/security/project',
  domains: 'data/security/domain',
  roles: 'data/security/role',
  regions: 'data/security/region',
  endpoints: 'data/security/endpoint',
  services: 'data/security/service',
  policies: 'data/security/policy',
  trusts: 'data/security/trust',
  consumers: 'data/security/account',
  request_token: 'data/security/credential',
  access_token: 'data/security/credential',
  access_tokens: 'data/security/credential',
  application_credentials: 'data/security/credential',
  role_assignments: 'service/security/account/user',
  // GET /v3/users/{id}/password is not a thing; POST changes the user's password
  password: 'data/security/account/user',
};

/** A Keystone path's CADF target type, and the action where Keystone's differs from the HTTP method's. */
function keystoneTarget(words: string[], method: string): { typeURI: string; action?: string } {
  const plain = words.some((w) => w.startsWith('OS-')) ? words.filter((w) => !/^OS-[A-Z0-9-]+$/.test(w)) : words;
  const at = (i: number) => plain[i] ?? '';
  const n = plain.length;
  // a role grant: PUT creates it, DELETE removes it (Keystone: created/deleted.role_assignment on the account)
  for (let i = 4; i < n; i++)
    if (plain[i] === 'roles' && (at(i - 4) === 'projects' || at(i - 4) === 'domains') && (at(i - 2) === 'users' || at(i - 2) === 'groups'))
      return { typeURI: 'service/security/account/user', ...(method === 'PUT' ? { action: 'create' } : {}) };
  // a user added to or removed from a group changes the group (Keystone: updated.group)
  if (n === 4 && at(0) === 'groups' && at(2) === 'users' && (method === 'PUT' || method === 'DELETE'))
    return { typeURI: 'data/security/group', action: 'update' };
  if (at(0) === 'users' && at(2) === 'password' && method === 'POST') return { typeURI: 'data/security/account/user', action: 'update' };
  // PUT with the id in the path creates: a region, a project's tag
  if (n === 2 && at(0) === 'regions' && method === 'PUT') return { typeURI: 'data/security/region', action: 'create' };
  if (n === 4 && at(2) === 'tags' && method === 'PUT') return { typeURI: 'unknown', action: 'create' };
  // the last collection named; a word after a known collection is its item's id, whatever it looks
  // like (regions are named by their operators: /v3/regions/RegionTwo)
  let coll: string | undefined;
  if (n >= 2 && KEYSTONE_DATA[at(n - 2)] && !KEYSTONE_DATA[at(n - 1)]) coll = at(n - 2);
  else
    for (let i = n - 1; i >= 0 && coll === undefined; i--) {
      const w = plain[i] as string;
      if (KEYSTONE_DATA[w] || !looksLikeId(w)) coll = w;
    }
  return { typeURI: (coll && KEYSTONE_DATA[coll]) || 'unknown' };
}

const strip = (seg: string): string => seg.replace(/\.(json|xml)$/, '');

interface ApiTarget {
  typeURI: string;
  /** where the service's own audit names the action otherwise than the HTTP method would */
  action?: string;
  /** the resource id named by the path, if any */
  resource?: string;
  collection: boolean;
}

/** The CADF target type of an API path: `service/network/networks/network` as keystonemiddleware builds it. */
export function apiTarget(service: string, method: string, path: string): ApiTarget {
  // this runs for every request: one pass, decoding only what is escaped
  const q = path.indexOf('?');
  const words: string[] = [];
  const ids: boolean[] = [];
  for (const raw of (q >= 0 ? path.slice(0, q) : path).split('/')) {
    if (raw === '') continue;
    let w = raw;
    if (w.includes('%')) {
      try {
        w = decodeURIComponent(w);
      } catch {
        // a malformed escape stays as it was sent
      }
    }
    if (w.includes('.')) {
      w = strip(w);
      if (VERSION.test(w)) continue;
    } else if (w.length <= 3 && VERSION.test(w)) continue;
    words.push(w);
    ids.push(looksLikeId(w));
  }
  const lastIsId = ids.length > 0 && ids[ids.length - 1] === true;
  const resource = lastIsId ? words[words.length - 1] : undefined;
  if (service === 'keystone') {
    if (words[0] === 'auth' && words[1] === 'tokens') return { typeURI: 'service/security/account/user', collection: false };
    const t: ApiTarget = { ...keystoneTarget(words, method), collection: !lastIsId };
    if (resource) t.resource = resource;
    return t;
  }
  let uri = `service/${SERVICE_TYPE[service] ?? service}`;
  let prev: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as string;
    if (ids[i]) {
      if (prev) uri += `/${ITEM_NAME[prev] ?? singular(prev).replace(/_/g, '-')}`;
      prev = undefined;
    } else {
      uri += `/${w}`;
      prev = w;
    }
  }
  const t: ApiTarget = { typeURI: uri, collection: !lastIsId };
  if (resource) t.resource = resource;
  return t;
}

const VERSION = /^v\d+(\.\d+)?$/;

/** CADF's action for an API request. */
export function apiAction(service: string, method: string, path: string, collection: boolean): string {
  const p = path.split('?')[0] ?? '';
  if (service === 'keystone' && /\/auth\/tokens\/?$/.test(p)) {
    if (method === 'POST') return 'authenticate';
    if (method === 'DELETE') return 'revoke';
    return 'read';
  }
  switch (method) {
    case 'POST':
      return /\/action$/.test(p) ? 'update' : 'create';
    case 'GET':
    case 'HEAD':
      return collection ? 'read/list' : 'read';
    case 'PUT':
    case 'PATCH':
      return 'update';
    case 'DELETE':
      return 'delete';
    default:
      return 'unknown';
  }
}

export interface Observer {
  node: string;
  id: string;
}

const observerOf = (o: Observer): CadfResource => ({ typeURI: 'service/security/audit', id: o.id, name: 'stackbpf', host: { address: o.node } });

function provenanceAttachment(p: Provenance): { typeURI: string; name: string; content: Provenance } {
  return { typeURI: 'stackbpf/provenance', name: 'provenance', content: p };
}

function base(
  o: Observer,
  ts: number,
  rest: Omit<CadfEvent, 'typeURI' | 'id' | 'eventTime' | 'observer'>,
  p: Provenance | undefined,
  extra?: { typeURI: string; name: string; content: unknown },
): CadfEvent {
  const attachments = [...(p ? [provenanceAttachment(p)] : []), ...(extra ? [extra] : [])];
  return {
    typeURI: CADF_EVENT,
    id: randomUUID(),
    eventTime: cadfTime(ts),
    observer: observerOf(o),
    ...rest,
    ...(attachments.length ? { attachments } : {}),
  };
}

/** An API request a traced service answered, or did not. (Built field by field: this runs for every request.) */
export function apiEvent(ev: EventOf<'http.request'>, o: Observer, p: Provenance, knownUserId?: string): CadfEvent {
  const d = ev.data;
  const t = apiTarget(ev.service, d.method, d.path);
  // a PUT answered 201 Created made the resource (Keystone's regions, identity providers, tags)
  const action = t.action ?? (d.method === 'PUT' && d.status === 201 ? 'create' : apiAction(ev.service, d.method, d.path, t.collection));
  const auth = action === 'authenticate';
  const userId = auth ? (d.auth_user_id ?? d.user_id ?? knownUserId) : d.user_id;
  const userName = auth ? (d.auth_user ?? d.user) : d.user;
  const initiator: CadfResource = { typeURI: 'service/security/account/user', id: userId ?? (userName ? nameUuid(`user:${userName}`) : 'unknown') };
  if (userName) initiator.name = userName;
  if (userId) initiator.user_id = userId;
  if (d.project_id) initiator.project_id = d.project_id;
  else if (auth && d.auth_project) initiator.project = d.auth_project;
  if (d.project) initiator.project_name = d.project;
  if (auth && d.auth_domain) initiator.domain = d.auth_domain;
  const host: { address?: string; agent?: string } = {};
  if (d.remote) host.address = hostOf(d.remote);
  if (d.user_agent) host.agent = d.user_agent;
  initiator.host = host;
  if (d.forwarded_for) initiator.forwarded_for = d.forwarded_for;
  if (d.request_id) initiator.request_id = d.request_id;
  const answered = d.status !== null && d.answered !== false;
  const e: CadfEvent = {
    typeURI: CADF_EVENT,
    id: randomUUID(),
    eventTime: cadfTime(ev.ts),
    observer: observerOf(o),
    eventType: 'activity',
    action,
    outcome: !answered ? 'unknown' : (d.status as number) < 400 ? 'success' : 'failure',
    reason: answered ? { reasonType: 'HTTP', reasonCode: String(d.status) } : { reasonType: 'stackbpf', reasonCode: 'not answered' },
    initiator,
    target: { typeURI: t.typeURI, id: t.resource ?? serviceUuid(ev.service), name: ev.service },
    requestPath: d.path,
    attachments: [provenanceAttachment(p)],
  };
  return e;
}

/** 192.0.2.1:5000 → 192.0.2.1, [2001:db8::1]:5000 → 2001:db8::1 */
function hostOf(remote: string): string {
  const colon = remote.lastIndexOf(':');
  const h = colon > 0 && remote.indexOf(':') === colon ? remote.slice(0, colon) : remote.startsWith('[') ? remote.slice(1, remote.indexOf(']')) : remote;
  return h;
}

const WRITE_ACTION: Record<string, string> = {
  INSERT: 'create',
  REPLACE: 'create',
  CREATE: 'create',
  UPDATE: 'update',
  ALTER: 'update',
  RENAME: 'update',
  DELETE: 'delete',
  DROP: 'delete',
  TRUNCATE: 'delete',
  GRANT: 'configure',
  REVOKE: 'configure',
  LOAD: 'create',
};

/** The first keyword of a statement if it writes (INSERT, UPDATE, ...), else undefined. */
export function writeVerb(statement: string): string | undefined {
  const m = /^\s*(?:\/\*.*?\*\/\s*)*([A-Za-z]+)/s.exec(statement);
  const verb = m?.[1]?.toUpperCase();
  return verb && WRITE_ACTION[verb] ? verb : undefined;
}

/** Tables a statement names after FROM / INTO / UPDATE / JOIN / TABLE, with their database if qualified. */
export function tablesOf(statement: string): { db?: string; table: string }[] {
  const out: { db?: string; table: string }[] = [];
  const toks = tokenize(statement, 2000).filter((t) => t.kind !== 'comment');
  for (let i = 0; i < toks.length - 1; i++) {
    const k = toks[i]?.text.toUpperCase();
    if (k !== 'FROM' && k !== 'INTO' && k !== 'UPDATE' && k !== 'JOIN' && k !== 'TABLE') continue;
    let j = i + 1;
    if (toks[j]?.text.toUpperCase() === 'IF') j += toks[j + 1]?.text.toUpperCase() === 'NOT' ? 3 : 2;
    const name = toks[j];
    if (!name || (name.kind !== 'ident' && name.kind !== 'keyword')) continue;
    const unq = (s: string) => s.replace(/^[`"[]|[`"\]]$/g, '');
    if (toks[j + 1]?.text === '.' && toks[j + 2]) out.push({ db: unq(name.text), table: unq((toks[j + 2] as { text: string }).text) });
    else out.push({ table: unq(name.text) });
  }
  const seen = new Set<string>();
  return out.filter((t) => {
    const k = `${t.db ?? ''}.${t.table}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const processInitiator = (p: Provenance): CadfResource => ({
  typeURI: 'service/security/account/user',
  id: nameUuid(`uid:${p.node}:${p.uid}`),
  name: `uid ${p.uid}`,
  uid: p.uid,
  host: { address: p.node, agent: p.exe ?? p.comm },
});

/** A write to a service's database by a process that is not that service. */
export function databaseEvent(ev: EventOf<'sql.query'>, database: string, tables: string[], o: Observer, p: Provenance): CadfEvent {
  const d = ev.data;
  const verb = writeVerb(d.statement ?? d.command) ?? d.command.toUpperCase();
  const failed = d.result === 'error' || d.error_code !== undefined;
  return base(
    o,
    ev.ts,
    {
      eventType: 'activity',
      action: WRITE_ACTION[verb] ?? 'update',
      outcome: failed ? 'failure' : 'success',
      reason: failed
        ? { reasonType: 'SQL', reasonCode: String(d.error_code ?? d.sql_state ?? 'error') }
        : { reasonType: 'SQL', reasonCode: `${d.affected_rows ?? 0} rows` },
      initiator: processInitiator(p),
      target: {
        typeURI: 'data/database',
        id: nameUuid(`db:${p.node}:${d.server ?? ''}:${database}`),
        name: database,
        tables,
        ...(d.server ? { server: d.server } : {}),
      },
    },
    p,
    {
      typeURI: 'stackbpf/sql',
      name: 'statement',
      content: {
        fingerprint: fingerprint(d.statement ?? ''),
        verb,
        ...(d.db_user ? { db_user: d.db_user } : {}),
        ...(d.affected_rows !== undefined ? { affected_rows: d.affected_rows } : {}),
      },
    },
  );
}

/** A service's configuration or policy file written, renamed over or removed. */
export function fileEvent(ev: EventOf<'file.write'> | EventOf<'file.rename'> | EventOf<'file.unlink'>, o: Observer, p: Provenance): CadfEvent {
  const d = ev.data as { path: string; new_path?: string; result: number; error?: string; op?: string };
  const path = d.new_path ?? d.path;
  const policy = /(^|\/)policy\.(ya?ml|json)$/.test(path) || /\/policy\.d\//.test(path);
  const action = ev.type === 'file.unlink' ? 'delete' : 'update';
  return base(
    o,
    ev.ts,
    {
      eventType: 'activity',
      action,
      outcome: d.result < 0 ? 'failure' : 'success',
      ...(d.result < 0 ? { reason: { reasonType: 'errno', reasonCode: d.error ?? String(d.result) } } : {}),
      initiator: processInitiator(p),
      target: {
        typeURI: policy ? 'data/security/policy' : 'data/config',
        id: nameUuid(`file:${p.node}:${path}`),
        name: path,
        ...(d.new_path ? { renamed_from: d.path } : {}),
        operation: ev.type === 'file.write' ? 'open for writing' : ev.type === 'file.rename' ? 'rename' : 'unlink',
      },
    },
    p,
  );
}

/** A management tool run on the node. */
export function execEvent(ev: EventOf<'process.exec'>, o: Observer, p: Provenance): CadfEvent {
  const d = ev.data;
  return base(
    o,
    ev.ts,
    {
      eventType: 'activity',
      action: 'start',
      outcome: d.killed ? 'failure' : 'success',
      ...(d.killed ? { reason: { reasonType: 'stackbpf', reasonCode: 'killed by enforcement' } } : {}),
      initiator: processInitiator(p),
      target: {
        typeURI: 'compute/process',
        id: nameUuid(`proc:${p.node}:${ev.pid}:${ev.ts}`),
        name: d.filename,
        argv: d.argv,
        ...(d.argv_truncated ? { argv_truncated: true } : {}),
        ...(ev.parent ? { parent: { pid: ev.parent.pid, comm: ev.parent.comm } } : {}),
      },
    },
    p,
  );
}

/** The agent's own doing: start, stop, configuration change. */
export function agentEvent(
  action: 'start' | 'stop' | 'configure',
  ts: number,
  o: Observer,
  p: Provenance,
  content: Record<string, unknown>,
  outcome: CadfEvent['outcome'] = 'success',
): CadfEvent {
  const self: CadfResource = { typeURI: 'service/security/audit', id: o.id, name: 'stackbpf' };
  return base(o, ts, { eventType: 'control', action, outcome, initiator: processInitiator(p), target: self }, p, {
    typeURI: 'stackbpf/agent',
    name: 'agent',
    content,
  });
}

/** A period the trail may be missing records from: the agent not running, or events lost. */
export function gapEvent(ts: number, o: Observer, p: Provenance, gap: { from: number; to: number; cause: string; lost?: Record<string, number> }): CadfEvent {
  const self: CadfResource = { typeURI: 'service/security/audit', id: o.id, name: 'stackbpf' };
  return base(
    o,
    ts,
    { eventType: 'monitor', action: 'monitor', outcome: 'failure', reason: { reasonType: 'stackbpf', reasonCode: 'gap' }, initiator: self, target: self },
    p,
    {
      typeURI: 'stackbpf/gap',
      name: 'gap',
      content: { from: cadfTime(gap.from), to: cadfTime(gap.to), cause: gap.cause, ...(gap.lost ? { lost: gap.lost } : {}) },
    },
  );
}

export type { TraceEvent };
