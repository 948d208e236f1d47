// Connections of monitored processes, rebuilt from the kernel's records:
// connect/accept open one, data chunks carry the first bytes of each message
// (a message is a run of bytes in one direction), close ends it. Completed
// request/response pairs become http.request events; MySQL exchanges become
// sql.login / sql.query events. A message is complete when the next one
// starts, when the connection closes, or when it has been idle for
// `idleMs` (pooled database connections stay open between queries).
import type { EventData, HttpRequestData, RpcCallData, SqlData, SqlQueryData } from './event.js';
import { TRACE_ROLE } from './abi.generated.js';
import { createHmac, randomBytes } from 'node:crypto';
import { FifoMap } from '../util/fifo-map.js';
import { type AmqpContent, ContentAssembler, FRAME_METHOD, FrameStream, parseOslo } from './amqp.js';
import type { KernelRecord } from './records.js';
import {
  type HttpHead,
  keystoneAuthSubject,
  keystoneTokenIdentity,
  looksLikeHttp,
  looksLikeJsonRpc,
  parseHttpHead,
  parseJsonRpcHead,
  parseMysqlCommand,
  parseMysqlGreeting,
  parseMysqlLogin,
  parseMysqlResult,
} from './protocols.js';

type DataRecord = Extract<KernelRecord, { kind: 9 }>;
type ConnRecord = Extract<KernelRecord, { kind: 6 | 7 }>;
type CloseRecord = Extract<KernelRecord, { kind: 8 }>;

type SessionEventType = 'http.request' | 'sql.login' | 'sql.query' | 'rpc.call';

export type SessionOutput = {
  [T in SessionEventType]: {
    type: T;
    /** the process the event belongs to */
    tgid: number;
    tid: number;
    /** kernel ns of the event (the request's start) */
    ts: number;
    data: EventData[T];
  };
}[SessionEventType];

interface Message {
  seq: number;
  dir: number; // 1 in, 2 out
  start: number;
  lastTs: number;
  chunks: Buffer[];
  captured: number;
  /** bytes captured further on, after a gap (a framed connection's message ids) */
  windows?: { offset: number; data: Buffer }[];
  seen: number; // bytes known so far (offset + len of the last chunk)
  tid: number;
  /** the thread's scheduler sums at the message's first chunk (ns) */
  cpu?: number;
  runq?: number;
  /** the greenlet the thread ran at the message's first chunk (0: none seen) */
  greenlet?: number;
}

interface Session {
  key: string;
  connId: number;
  tgid: number;
  role: number; // 1 server (accepted), 2 client (connected)
  local?: string;
  remote?: string;
  proto: 'unknown' | 'http' | 'mysql' | 'jsonrpc' | 'amqp' | 'other';
  cur?: Message;
  /** the previous complete message (a request waiting for its response) */
  pending?: { msg: Message; bytes: number };
  mysql?: { user?: string; database?: string; stage: 'login' | 'ready' };
  amqp?: { in: FrameStream; out: FrameStream; inC: ContentAssembler; outC: ContentAssembler };
  /** opened before tracing began: the protocol is recognised mid-stream */
  adopted?: boolean;
  lastActivity: number;
  undecided: number;
}

/** One whole command packet: its 3-byte length matches the message, its command byte is known. */
function isMysqlCommand(b: Buffer, size: number): boolean {
  if (b.length < 5 || b[3] !== 0) return false;
  const len = b.readUIntLE(0, 3);
  return len + 4 === size && [0x02, 0x03, 0x0e, 0x16, 0x17, 0x19].includes(b[4] as number);
}

function amqpState(midStream: boolean): NonNullable<Session['amqp']> {
  const st = { in: new FrameStream(false), out: new FrameStream(true), inC: new ContentAssembler(), outC: new ContentAssembler() };
  if (midStream) {
    st.in.stepOut();
    st.out.stepOut();
  }
  return st;
}

/** Where and when a content message began: the syscall that carried its method frame. */
interface AmqpAt {
  ts: number;
  tid: number;
  greenlet?: number;
}

/** An oslo.messaging call waiting for its reply: where it was sent or received, and what it was. */
interface AmqpCall extends AmqpAt {
  method: string;
  target: string;
  exchange: string;
  uniqueId?: string;
  bytes: number;
  s: Session;
}

/** Token → identity, keyed by an HMAC under a per-process key: the token itself is never kept. */
export class TokenDirectory {
  private readonly key = randomBytes(32);
  private readonly map: FifoMap<string, { user?: string; userId?: string; project?: string; projectId?: string }>;
  constructor(max = 10000) {
    this.map = new FifoMap(max);
  }
  private h(token: string): string {
    return createHmac('sha256', this.key).update(token).digest('base64');
  }
  learn(token: string, who: { user?: string; userId?: string; project?: string; projectId?: string }): void {
    const k = this.h(token);
    this.map.delete(k);
    this.map.set(k, who);
  }
  lookup(token: string): { user?: string; userId?: string; project?: string; projectId?: string } | undefined {
    return this.map.get(this.h(token));
  }
  /**
   * A reference to a token that names it across events without revealing it: 16 characters of
   * the HMAC under this process's key (not kept anywhere; a restart gives every token a new one).
   */
  ref(token: string): string {
    return this.h(token).slice(0, 16);
  }
  get size(): number {
    return this.map.size;
  }
}

export interface SessionStats {
  open: number;
  http: number;
  sql: number;
  rpc: number;
  /** AMQP: content messages read, oslo.messaging messages among them (ids_missing: whose ids were not seen), frame streams that lost step */
  amqp: { messages: number; oslo: number; ids_missing: number; desyncs: number; unmatched_replies: number };
  /** sessions forgotten because the table was full */
  evicted: number;
  /** data records for a connection the tracker never saw open */
  orphanData: number;
}

const ms = (a: number, b: number): number => (a - b) / 1e6;

export class SessionTracker {
  private readonly sessions: FifoMap<string, Session>;
  readonly tokens = new TokenDirectory();
  private stats = { http: 0, sql: 0, rpc: 0, evicted: 0, orphanData: 0 };
  private readonly amqpStats = { messages: 0, oslo: 0, ids_missing: 0, desyncs: 0, unmatched_replies: 0 };
  /** oslo.messaging calls sent (client) and received (server), by process and _msg_id, waiting for their reply */
  private readonly amqpCalls = new FifoMap<string, AmqpAt & { method: string; target: string; exchange: string; uniqueId?: string; bytes: number; s: Session }>(
    10000,
  );
  private readonly amqpServed = new FifoMap<
    string,
    AmqpAt & { method: string; target: string; exchange: string; uniqueId?: string; bytes: number; s: Session }
  >(10000);
  /** replies met before their call was parsed (two connections, parsed in any order) */
  private readonly amqpEarly = new FifoMap<string, AmqpAt & { failure: boolean; bytes: number }>(10000);
  /**
   * A greenlet's address → the id events carry: a keyed hash (this agent's key), so equal
   * greenlets stay equal and no address of a service's memory is handed out.
   */
  private readonly greenletKey = randomBytes(32);
  private readonly greenletIds = new FifoMap<string, number>(4096);
  private greenletId(tgid: number, addr: number): number {
    const k = `${tgid}:${addr}`;
    let id = this.greenletIds.get(k);
    if (id === undefined) {
      id = createHmac('sha256', this.greenletKey).update(k).digest().readUIntBE(0, 6);
      this.greenletIds.set(k, id);
    }
    return id;
  }

  constructor(
    private readonly emit: (o: SessionOutput) => void,
    private readonly opts: {
      captureBytes: number;
      idleMs?: number;
      maxSessions?: number;
      inspect?: (target: string, body: string, contentType: string) => unknown[];
    } = { captureBytes: 1024 },
  ) {
    this.sessions = new FifoMap(opts.maxSessions ?? 50000, () => this.stats.evicted++);
  }

  private open(key: string, tgid: number, connId: number, role: number): Session {
    let s = this.sessions.get(key);
    if (!s || s.connId !== connId) {
      if (s) this.finish(s, undefined);
      s = { key, connId, tgid, role, proto: 'unknown', lastActivity: Date.now(), undecided: 0 };
      this.sessions.set(key, s); // past maxSessions the oldest is evicted (counted)
    }
    return s;
  }

  /** A connection that was open before tracing began (found in /proc). */
  adopt(tgid: number, fd: number, connId: number, role: number, local: string, remote: string): void {
    const s = this.open(`${tgid}:${fd}`, tgid, connId, role);
    s.local = local;
    s.remote = remote;
    s.adopted = true;
  }

  onConnect(r: ConnRecord): void {
    if (r.ret !== 0 && r.ret !== -115) return;
    const s = this.open(`${r.tgid}:${r.fd}`, r.tgid, r.connId, r.role);
    const fmt = (a: string, p: number): string => (r.family === 10 ? `[${a}]:${p}` : `${a}:${p}`);
    if (r.family === 2 || r.family === 10) {
      s.local = fmt(r.laddr, r.lport);
      s.remote = fmt(r.raddr, r.rport);
    } else if (r.family === 1) s.remote = r.unixPath || 'unix';
  }

  onData(r: DataRecord): void {
    const key = `${r.tgid}:${r.fd}`;
    let s = this.sessions.get(key);
    if (!s || s.connId !== r.connId) {
      this.stats.orphanData++;
      s = this.open(key, r.tgid, r.connId, r.role);
    }
    s.lastActivity = Date.now();
    if (!s.cur || s.cur.seq !== r.seq) {
      if (s.cur) this.complete(s, s.cur, r.prevBytes);
      s.cur = {
        seq: r.seq,
        dir: r.dir,
        start: r.ts,
        lastTs: r.ts,
        chunks: [],
        captured: 0,
        seen: 0,
        tid: r.tid,
        cpu: r.cpuNs,
        runq: r.runqNs,
        greenlet: r.greenlet,
      };
    }
    const m = s.cur;
    m.lastTs = r.ts;
    if (s.proto === 'amqp' && r.offset > m.captured && r.data.length > 0) {
      // past the capture: the window the kernel sent from a message id on
      (m.windows ??= []).push({ offset: r.offset, data: r.data });
      return;
    }
    if (r.data.length > 0 && m.captured < this.opts.captureBytes) {
      m.chunks.push(r.data);
      m.captured += r.data.length;
    }
    m.seen = Math.max(m.seen, r.offset + r.data.length);
  }

  onClose(r: CloseRecord): Record<string, unknown> | undefined {
    const key = `${r.tgid}:${r.fd}`;
    const s = this.sessions.get(key);
    if (!s || s.connId !== r.connId) return undefined;
    this.finish(s, r.lastMsgBytes);
    this.sessions.delete(key);
    return { protocol: s.proto, ...(s.remote ? { remote: s.remote } : {}), ...(s.local ? { local: s.local } : {}) };
  }

  /** Complete messages idle for longer than idleMs; forget sessions of exited processes. */
  sweep(now = Date.now(), alive?: (tgid: number) => boolean): void {
    const idle = this.opts.idleMs ?? 250;
    for (const [key, s] of this.sessions) {
      if (alive && !alive(s.tgid)) {
        this.finish(s, undefined);
        this.sessions.delete(key);
        continue;
      }
      if (s.cur && now - s.lastActivity >= idle) {
        const m = s.cur;
        s.cur = undefined;
        this.complete(s, m, undefined);
      }
    }
  }

  private finish(s: Session, lastBytes: number | undefined): void {
    if (s.cur) {
      const m = s.cur;
      s.cur = undefined;
      this.complete(s, m, lastBytes);
    }
    // a request the connection ended without answering (the client gave up, the server died)
    if (s.proto === 'http' && s.pending && (s.pending.msg as Message & { head?: HttpHead }).head) {
      const p = s.pending;
      this.http(
        s,
        { seq: -1, dir: p.msg.dir === 1 ? 2 : 1, start: p.msg.lastTs, lastTs: p.msg.lastTs, chunks: [], captured: 0, seen: 0, tid: p.msg.tid },
        Buffer.alloc(0),
        0,
        true,
        true,
      );
    }
  }

  /** A message is complete; `bytes` is its exact size when known. */
  private complete(s: Session, m: Message, bytes: number | undefined): void {
    const data = m.chunks.length === 1 ? (m.chunks[0] as Buffer) : Buffer.concat(m.chunks);
    const size = bytes ?? m.seen;
    if (s.proto === 'unknown') {
      if (looksLikeHttp(data)) s.proto = 'http';
      else if (s.role === 2 && m.dir === 2 && data.length >= 8 && data.toString('latin1', 0, 8) === 'AMQP\x00\x00\x09\x01') {
        s.proto = 'amqp';
        s.amqp = amqpState(false);
      } else if (s.role === 2 && s.adopted && /:567[12]$/.test(s.remote ?? '')) {
        // met mid-stream on AMQP's port: the frames step in at the first syscall that starts one
        s.proto = 'amqp';
        s.amqp = amqpState(true);
      } else if (m.dir === 1 && s.role === 2 && parseMysqlGreeting(data)) {
        s.proto = 'mysql';
        s.mysql = { stage: 'login' };
        return;
      } else if (s.role === 2 && looksLikeJsonRpc(data)) {
        // OVSDB's JSON-RPC (RFC 7047): an OVN or OVS database client
        s.proto = 'jsonrpc';
      } else if (s.role === 2 && m.dir === 2 && isMysqlCommand(data, size)) {
        // a MySQL connection met mid-stream (adopted, or its greeting was missed)
        s.proto = 'mysql';
        s.mysql = { stage: 'ready' };
      } else {
        // an adopted connection may be met mid-message: decide on a later one
        if (!s.adopted || ++s.undecided > 4) s.proto = 'other';
        return;
      }
    }
    if (s.proto === 'http') this.http(s, m, data, size, bytes !== undefined);
    else if (s.proto === 'mysql') this.mysql(s, m, data, size);
    else if (s.proto === 'jsonrpc') this.jsonrpc(s, m, data, size);
    else if (s.proto === 'amqp') this.amqpMessage(s, m, data, size, bytes !== undefined);
  }

  /**
   * A client's request (a message it sent that names a method, not an echo)
   * waits for the next message from the server: its start is the answer's
   * (the reply, or the monitor updates ovsdb-server sends just before it).
   */
  private jsonrpc(s: Session, m: Message, data: Buffer, size: number): void {
    if (m.dir === 2) {
      const head = parseJsonRpcHead(data);
      if (head?.method && head.method !== 'echo' && head.id !== null && head.id !== undefined) {
        s.pending = { msg: m, bytes: size };
        (m as Message & { rpc?: typeof head }).rpc = head;
      }
      return;
    }
    const p = s.pending;
    const head = (p?.msg as (Message & { rpc?: ReturnType<typeof parseJsonRpcHead> }) | undefined)?.rpc;
    if (!p || !head?.method) return;
    s.pending = undefined;
    const out: RpcCallData = {
      protocol: 'ovsdb',
      role: 'client',
      method: head.method,
      latency_ms: Math.round(ms(m.start, p.msg.start) * 1000) / 1000,
      request_bytes: p.bytes,
      response_bytes: size,
    };
    if (head.db) out.target = head.db;
    if (head.tables?.length) out.tables = head.tables;
    if (head.ops?.length) out.ops = head.ops;
    if (s.remote) out.remote = s.remote;
    if (s.local) out.local = s.local;
    this.stats.rpc++;
    this.emit({ type: 'rpc.call', tgid: s.tgid, tid: p.msg.tid, ts: p.msg.start, data: out });
  }

  private http(s: Session, m: Message, data: Buffer, size: number, exact: boolean, unanswered = false): void {
    const head = unanswered ? undefined : parseHttpHead(data);
    if (head?.kind === 'request') {
      s.pending = { msg: m, bytes: size };
      (m as Message & { head?: HttpHead }).head = head;
      return;
    }
    const p = s.pending;
    if (!p) return;
    s.pending = undefined;
    const req = (p.msg as Message & { head?: HttpHead }).head as HttpHead;
    const out: HttpRequestData = {
      role: s.role === TRACE_ROLE.ROLE_SERVER ? 'server' : 'client',
      method: req.method ?? '',
      path: req.target ?? '',
      ...(req.targetTruncated ? { path_truncated: true } : {}),
      status: head?.status ?? null,
      latency_ms: unanswered ? null : Math.round(ms(m.start, p.msg.start) * 1000) / 1000,
      request_bytes: p.bytes,
      response_bytes: size,
      ...(exact ? {} : { response_bytes_partial: true }),
      ...(unanswered ? { answered: false } : {}),
    };
    // a server's worker thread, from the request's first byte to its answer's: on a CPU, and runnable
    // but waiting for one (the rest of the time it was blocked: I/O, locks, other services)
    if (s.role === TRACE_ROLE.ROLE_SERVER && !unanswered && m.tid === p.msg.tid && m.cpu !== undefined && p.msg.cpu !== undefined) {
      const cpu = m.cpu - p.msg.cpu;
      const runq = (m.runq ?? 0) - (p.msg.runq ?? 0);
      if (cpu >= 0 && runq >= 0) {
        out.cpu_ms = Math.round(cpu / 1e3) / 1e3;
        out.runq_ms = Math.round(runq / 1e3) / 1e3;
      }
    }
    if (s.remote) out.remote = s.remote;
    if (s.local) out.local = s.local;
    // the request's (a server's) or the call's (a client's) greenlet: its first bytes were read or written there
    if (p.msg.greenlet) out.greenlet = this.greenletId(s.tgid, p.msg.greenlet);
    const ua = req.headers['user-agent'];
    if (ua) out.user_agent = ua;
    const rid = head?.headers['x-openstack-request-id'] ?? head?.headers['openstack-request-id'] ?? head?.headers['x-compute-request-id'];
    if (rid) out.request_id = rid;
    const xff = req.headers['x-forwarded-for'];
    if (xff) out.forwarded_for = xff;
    // what the client sent, inspected before it is dropped (the body is not kept)
    if (this.opts.inspect && req.target) {
      const found = this.opts.inspect(req.target, req.body, req.headers['content-type'] ?? '');
      if (found.length) out.sqli = found;
    }
    // which token (a reference, never the token): the detectors follow a token across sources and agents
    if (req.secrets.authToken) out.token_ref = this.tokens.ref(req.secrets.authToken);
    const subjectToken = head?.secrets.subjectToken ?? req.secrets.subjectToken;
    if (subjectToken) out.subject_token_ref = this.tokens.ref(subjectToken);
    if (req.secrets.serviceToken) out.service_token = true;
    // who: the caller's token, mapped to the identity Keystone gave it
    if (req.secrets.authToken) {
      const who = this.tokens.lookup(req.secrets.authToken);
      if (who) Object.assign(out, pick(who));
    }
    // Keystone: an authentication names its user; a token response (issue or validation) names the token's owner
    const isAuth = req.target?.startsWith('/v3/auth/tokens') === true;
    if (isAuth && req.method === 'POST') {
      const subj = keystoneAuthSubject(req.body);
      if (subj.user) out.auth_user = subj.user;
      if (subj.userId) out.auth_user_id = subj.userId;
      if (subj.domain) out.auth_domain = subj.domain;
      if (subj.project) out.auth_project = subj.project;
    }
    if (head && isAuth) {
      const tokenOwner = keystoneTokenIdentity(head.body);
      const token = head.secrets.subjectToken ?? req.secrets.subjectToken;
      if (tokenOwner && token && head.status !== undefined && head.status < 300) {
        this.tokens.learn(token, tokenOwner);
        if (req.method === 'POST') Object.assign(out, pick(tokenOwner));
        else {
          if (tokenOwner.user) out.subject_user = tokenOwner.user;
          if (tokenOwner.project) out.subject_project = tokenOwner.project;
        }
      }
    }
    this.stats.http++;
    this.emit({ type: 'http.request', tgid: s.tgid, tid: p.msg.tid, ts: p.msg.start, data: out });
  }

  private mysql(s: Session, m: Message, data: Buffer, size: number): void {
    const st = s.mysql as NonNullable<Session['mysql']>;
    if (m.dir === 2) {
      s.pending = { msg: m, bytes: size };
      if (st.stage === 'login') {
        const login = parseMysqlLogin(data);
        if (login) {
          st.user = login.user;
          if (login.database) st.database = login.database;
        }
      }
      return;
    }
    const p = s.pending;
    if (!p) return;
    s.pending = undefined;
    const reqData = p.msg.chunks.length === 1 ? (p.msg.chunks[0] as Buffer) : Buffer.concat(p.msg.chunks);
    const res = parseMysqlResult(data);
    const base: SqlData = { latency_ms: Math.round(ms(m.start, p.msg.start) * 1000) / 1000, request_bytes: p.bytes, response_bytes: size };
    if (s.remote) base.server = s.remote;
    if (st.user) base.db_user = st.user;
    if (st.database) base.database = st.database;
    if (res) {
      base.result = res.result;
      if (res.affectedRows !== undefined) base.affected_rows = res.affectedRows;
      if (res.columns !== undefined) base.columns = res.columns;
      if (res.errorCode !== undefined) base.error_code = res.errorCode;
      if (res.sqlState) base.sql_state = res.sqlState;
      if (res.error) base.error = res.error;
    }
    if (st.stage === 'login') {
      st.stage = 'ready';
      this.stats.sql++;
      this.emit({ type: 'sql.login', tgid: s.tgid, tid: p.msg.tid, ts: p.msg.start, data: base });
      return;
    }
    const cmd = parseMysqlCommand(reqData, p.bytes);
    if (!cmd) return;
    if (cmd.command === 'init_db' && cmd.statement) st.database = cmd.statement;
    const out: SqlQueryData = { command: cmd.command, ...base };
    if (cmd.statement !== undefined) out.statement = cmd.statement;
    if (cmd.truncated) out.statement_truncated = true;
    if (p.msg.greenlet) out.greenlet = this.greenletId(s.tgid, p.msg.greenlet);
    this.stats.sql++;
    this.emit({ type: 'sql.query', tgid: s.tgid, tid: p.msg.tid, ts: p.msg.start, data: out });
  }

  /** One syscall's bytes on an AMQP connection: frames, content messages, oslo.messaging's RPC. */
  private amqpMessage(s: Session, m: Message, data: Buffer, size: number, exact: boolean): void {
    const st = s.amqp as NonNullable<Session['amqp']>;
    const out = m.dir === 2;
    const stream = out ? st.out : st.in;
    const asm = out ? st.outC : st.inC;
    const before = stream.desyncs;
    stream.feed({ data, total: size, exact, windows: m.windows ?? [] }, (f) => {
      if (f.type === FRAME_METHOD)
        (asm as ContentAssembler & { at?: AmqpAt }).at = { ts: m.start, tid: m.tid, ...(m.greenlet ? { greenlet: m.greenlet } : {}) };
      const c = asm.frame(f);
      if (c) this.amqpContent(s, c, (asm as ContentAssembler & { at?: AmqpAt }).at ?? { ts: m.start, tid: m.tid });
    });
    this.amqpStats.desyncs += stream.desyncs - before;
  }

  private amqpContent(s: Session, c: AmqpContent, at: AmqpAt): void {
    this.amqpStats.messages++;
    const o = parseOslo(c);
    if (!o) return;
    this.amqpStats.oslo++;
    // every oslo.messaging message carries a _unique_id: without it the ids were not seen (past the
    // kernel's scan), and a call would pass for a cast
    if (!o.uniqueId && !o.msgId) {
      this.amqpStats.ids_missing++;
      return;
    }
    const key = (id: string): string => `${s.tgid}:${id}`;
    const base = (method: string, target: string, latency: number, reqBytes: number, resBytes: number): RpcCallData => {
      const d: RpcCallData = {
        protocol: 'amqp',
        role: 'client',
        method,
        target,
        latency_ms: Math.round(latency * 1000) / 1000,
        request_bytes: reqBytes,
        response_bytes: resBytes,
      };
      if (c.exchange) d.exchange = c.exchange;
      if (s.remote) d.remote = s.remote;
      if (s.local) d.local = s.local;
      return d;
    };
    const emit = (tgid: number, a: AmqpAt, d: RpcCallData): void => {
      if (a.greenlet) d.greenlet = this.greenletId(tgid, a.greenlet);
      this.stats.rpc++;
      this.emit({ type: 'rpc.call', tgid, tid: a.tid, ts: a.ts, data: d });
    };
    // a call as sent (client) or received (server), kept until its reply
    const sent = (): AmqpCall => ({
      ...at,
      method: o.method ?? '?',
      target: c.routingKey,
      exchange: c.exchange,
      bytes: c.bodySize,
      s,
      ...(o.uniqueId ? { uniqueId: o.uniqueId } : {}),
    });
    if (c.kind === 'publish') {
      if (o.kind === 'call' && o.msgId) {
        const early = this.amqpEarly.get(key(o.msgId));
        const call = sent();
        if (early) {
          this.amqpEarly.delete(key(o.msgId));
          this.finishCall(call, o.msgId, early);
        } else this.amqpCalls.set(key(o.msgId), call);
      } else if (o.kind === 'cast') {
        const d = base(o.method ?? '?', c.routingKey, 0, c.bodySize, 0);
        d.kind = 'cast';
        if (o.uniqueId) d.unique_id = o.uniqueId;
        emit(s.tgid, at, d);
      } else if (o.kind === 'reply' && o.msgId) {
        // an RPC server's answer: the call it received is done
        const served = this.amqpServed.get(key(o.msgId));
        if (!served) return;
        this.amqpServed.delete(key(o.msgId));
        const d = base(served.method, served.target, (at.ts - served.ts) / 1e6, served.bytes, c.bodySize);
        d.role = 'server';
        d.kind = 'call';
        d.exchange = served.exchange;
        d.msg_id = o.msgId;
        if (served.uniqueId) d.unique_id = served.uniqueId;
        if (o.failure) d.failed = true;
        if (served.s.remote) d.remote = served.s.remote;
        // the request's time is the call's arrival; its thread and greenlet, the answer's (the worker that ran it)
        emit(s.tgid, { ts: served.ts, tid: at.tid, ...(at.greenlet ? { greenlet: at.greenlet } : {}) }, d);
      }
      return;
    }
    // delivered to this process
    if (o.kind === 'reply' && o.msgId) {
      const call = this.amqpCalls.get(key(o.msgId));
      if (!call) {
        if (!this.amqpEarly.has(key(o.msgId))) this.amqpEarly.set(key(o.msgId), { ...at, failure: o.failure === true, bytes: c.bodySize });
        return;
      }
      this.amqpCalls.delete(key(o.msgId));
      this.finishCall(call, o.msgId, { ...at, failure: o.failure === true, bytes: c.bodySize });
    } else if (o.kind === 'call' && o.msgId) {
      this.amqpServed.set(key(o.msgId), sent());
    } else if (o.kind === 'cast') {
      const d = base(o.method ?? '?', c.routingKey, 0, c.bodySize, 0);
      d.role = 'server';
      d.kind = 'cast';
      if (o.uniqueId) d.unique_id = o.uniqueId;
      emit(s.tgid, at, d);
    }
  }

  /** A call and its reply, both seen in the caller: the client's rpc.call. */
  private finishCall(call: AmqpCall, msgId: string, reply: AmqpAt & { failure: boolean; bytes: number }): void {
    if (reply.ts < call.ts) {
      this.amqpStats.unmatched_replies++;
      return;
    }
    const d: RpcCallData = {
      protocol: 'amqp',
      role: 'client',
      kind: 'call',
      method: call.method,
      target: call.target,
      exchange: call.exchange,
      msg_id: msgId,
      latency_ms: Math.round(((reply.ts - call.ts) / 1e6) * 1000) / 1000,
      request_bytes: call.bytes,
      response_bytes: reply.bytes,
    };
    if (call.uniqueId) d.unique_id = call.uniqueId;
    if (reply.failure) d.failed = true;
    if (call.s.remote) d.remote = call.s.remote;
    if (call.s.local) d.local = call.s.local;
    if (call.greenlet) d.greenlet = this.greenletId(call.s.tgid, call.greenlet);
    this.stats.rpc++;
    this.emit({ type: 'rpc.call', tgid: call.s.tgid, tid: call.tid, ts: call.ts, data: d });
  }

  status(): SessionStats {
    return { open: this.sessions.size, ...this.stats, amqp: { ...this.amqpStats } };
  }
}

function pick(who: { user?: string; userId?: string; project?: string; projectId?: string }): Record<string, string> {
  const out: Record<string, string> = {};
  if (who.user) out.user = who.user;
  if (who.userId) out.user_id = who.userId;
  if (who.project) out.project = who.project;
  if (who.projectId) out.project_id = who.projectId;
  return out;
}
