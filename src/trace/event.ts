// The events the tracer produces, after decoding, enrichment and redaction.
// This is what is queued, stored, streamed and printed; nothing secret may
// reach it (see ./redact.ts).

export const EVENT_TYPES = [
  'process.exec',
  'process.fork',
  'process.exit',
  'file.open',
  'file.write',
  'file.unlink',
  'file.rename',
  'net.connect',
  'net.accept',
  'net.close',
  'http.request',
  'sql.login',
  'sql.query',
  'rpc.call',
  'response.kill',
  'response.block',
  'api.change',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** Fields every event has. */
export interface EventBase {
  /** wall-clock time, ms since the epoch (µs precision) */
  ts: number;
  /** the process's service ('' when it is not a known one) */
  service: string;
  instance?: string;
  pid: number;
  tid: number;
  ppid: number;
  uid: number;
  comm: string;
  /** process-tree context: the parent as the tracer knows it */
  parent?: { pid: number; comm: string; service: string };
}

/** A syscall's result: the return value, and the errno's name when it failed. */
interface Result {
  result: number;
  error?: string;
}

export interface FileOpenData extends Result {
  path: string;
  flags: string;
  relative?: true;
  sensitive?: true;
  killed?: true;
}

export interface FileChangeData extends Result {
  path: string;
  new_path?: string;
  op: 'open_write' | 'unlink' | 'rename';
  sensitive?: true;
}

export interface ConnectData extends Result {
  fd: number;
  family: string;
  protocol?: string | number;
  local?: string;
  remote?: string;
  /** a unix socket's path */
  path?: string;
  killed?: true;
}

/** Who made a request, from the token → identity map (or Keystone's answer). */
export interface Identity {
  user?: string;
  user_id?: string;
  project?: string;
  project_id?: string;
}

export interface HttpRequestData extends Identity {
  role: 'server' | 'client';
  method: string;
  path: string;
  path_truncated?: true;
  status: number | null;
  latency_ms: number | null;
  request_bytes: number;
  response_bytes: number;
  response_bytes_partial?: true;
  answered?: false;
  /** a server's worker thread during the request: time on a CPU, and runnable but waiting for one (ms) */
  cpu_ms?: number;
  runq_ms?: number;
  /** the greenlet that read the request or wrote the call (an opaque id), where the process uses greenlet */
  greenlet?: number;
  remote?: string;
  local?: string;
  user_agent?: string;
  request_id?: string;
  forwarded_for?: string;
  /** SQL injection findings of the request's target and body */
  sqli?: unknown[];
  auth_user?: string;
  auth_user_id?: string;
  auth_domain?: string;
  auth_project?: string;
  subject_user?: string;
  subject_project?: string;
  /** the X-Auth-Token's reference (an HMAC under a key the agent keeps in memory only; never the token) */
  token_ref?: string;
  /** the X-Subject-Token's reference: the token a Keystone request issues, validates or revokes */
  subject_token_ref?: string;
  /** the request carried an X-Service-Token: a service acting for the user with its own token beside */
  service_token?: true;
}

export interface SqlData {
  latency_ms: number;
  request_bytes: number;
  response_bytes: number;
  server?: string;
  db_user?: string;
  database?: string;
  result?: string;
  affected_rows?: number;
  columns?: number;
  error_code?: number;
  sql_state?: string;
  error?: string;
}

export interface SqlQueryData extends SqlData {
  command: string;
  /** the greenlet that sent the statement (an opaque id), where the process uses greenlet */
  greenlet?: number;
  statement?: string;
  statement_truncated?: true;
}

/** A call over an RPC protocol the tracer decodes (OVSDB JSON-RPC): the client's request and the time to the server's answer. */
export interface RpcCallData {
  /** ovsdb: an OVSDB JSON-RPC transaction; amqp: an oslo.messaging RPC over RabbitMQ */
  protocol: 'ovsdb' | 'amqp';
  /** client: the caller's side (a cast is sent, not waited for); server: an RPC server's handling of a call or cast */
  role: 'client' | 'server';
  method: string;
  /** OVSDB: the database (OVN_Northbound, OVN_Southbound, Open_vSwitch); AMQP: the routing key (the topic, or topic.server) */
  target?: string;
  tables?: string[];
  ops?: string[];
  /** AMQP: a call (answered), a cast (one way) */
  kind?: 'call' | 'cast';
  exchange?: string;
  /** oslo.messaging's ids: a call's _msg_id (its reply carries it back), the message's _unique_id */
  msg_id?: string;
  unique_id?: string;
  /** the call was answered with a remote exception */
  failed?: true;
  /** a cast, or a call whose answer never came: 0 */
  latency_ms: number;
  request_bytes: number;
  response_bytes: number;
  remote?: string;
  local?: string;
  /** the greenlet that sent the call (client) or the answer (server) */
  greenlet?: number;
}

export interface CloseData {
  fd: number;
  role: 'server' | 'client';
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  /** what the session tracker knew of the connection */
  [session: string]: unknown;
}

export interface KillData {
  action: 'kill';
  signal: number;
  reason: string;
  enforced_service: string;
  filename?: string;
  path?: string;
  remote?: unknown;
}

export interface BlockData {
  action: 'block';
  prefix: string;
  seconds: number;
  rule_id: number;
  reason: string;
  alert_id: string;
}

/** A change made through the agent's API, with who made it. */
export interface ApiChangeData {
  method: string;
  path: string;
  query: string;
  status: number;
  caller: Record<string, unknown>;
}

/** The `data` of each event type. */
export interface EventData {
  'process.exec': { filename: string; argv: string[]; argv_truncated?: true; cgroup: string; killed?: true };
  'process.fork': { child: number };
  'process.exit': { exit_code: number; signal?: number };
  'file.open': FileOpenData;
  'file.write': FileOpenData;
  'file.unlink': FileChangeData;
  'file.rename': FileChangeData;
  'net.connect': ConnectData;
  'net.accept': ConnectData;
  'net.close': CloseData;
  'http.request': HttpRequestData;
  'sql.login': SqlData;
  'sql.query': SqlQueryData;
  'rpc.call': RpcCallData;
  'response.kill': KillData;
  'response.block': BlockData;
  'api.change': ApiChangeData;
}

/**
 * An event: a discriminated union by `type`, so reading a type's fields is
 * checked by the compiler. `data` is read-only: the tracer hands the same
 * object to every event of identical records (the store keeps it once per
 * chunk), so a consumer that changed it would change other events.
 */
export type TraceEvent = { [T in EventType]: EventBase & { type: T; data: Readonly<EventData[T]> } }[EventType];
/** The event of one type. */
export type EventOf<T extends EventType> = EventBase & { type: T; data: Readonly<EventData[T]> };

/** Filters shared by the live stream, the store query and the CLI. */
export interface EventFilter {
  service?: string;
  type?: string; // exact type, or a family prefix like "http" / "file."
  pid?: number;
  pathPrefix?: string;
}

export function eventPath(ev: TraceEvent): string | undefined {
  const d = ev.data as { path?: unknown; filename?: unknown };
  return typeof d.path === 'string' ? d.path : typeof d.filename === 'string' ? d.filename : undefined;
}

export function matches(ev: TraceEvent, f: EventFilter): boolean {
  if (f.service !== undefined && ev.service !== f.service) return false;
  if (f.pid !== undefined && ev.pid !== f.pid && ev.ppid !== f.pid) return false;
  if (f.type !== undefined && ev.type !== f.type && !ev.type.startsWith(f.type.endsWith('.') ? f.type : `${f.type}.`)) return false;
  if (f.pathPrefix !== undefined) {
    const p = eventPath(ev);
    if (p === undefined || !p.startsWith(f.pathPrefix)) return false;
  }
  return true;
}

/** Events the agent records of its own doing (its answers, changes made through its API), not of a traced process. */
export function isAgentEvent(ev: TraceEvent): boolean {
  return ev.type === 'api.change' || ev.type === 'response.block';
}

/** Did the kernel kill the process for what this event records (enforcement)? */
export function wasKilled(ev: TraceEvent): boolean {
  return (ev.data as { killed?: boolean }).killed === true;
}
