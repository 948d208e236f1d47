// Requests explained from the traced events, with no instrumentation in the
// services: every API request a traced service answers is split into time
// in SQL, time waiting on other services, time on a CPU, time runnable but
// waiting for one, and time blocked otherwise; stitched to the requests it
// caused in other services; given a cause; and folded into per-route,
// per-peer and per-fingerprint latency figures, whose baselines raise
// findings when they move (docs/performance.md).
//
// Attribution: a SQL statement or outbound call belongs to the server request
// whose worker thread issued it while the request was open. uwsgi and
// Apache workers serve one request per thread at a time, so this is exact
// there; an eventlet service serves many on one thread: where the tracer
// follows greenlet switches, the statement must also come from the greenlet
// that read the request; where it does not, a request that overlapped
// another on its thread says so (`shared_thread`) and its shares may
// include the other's.
//
// Events arrive when a message completes, so a request's last statement may
// be decoded just after its answer: a request is explained `settleMs` after
// it ended.
import { createHash } from 'node:crypto';
import { fingerprint } from '../analytics/sql.js';
import type { TraceEvent, EventOf } from '../trace/event.js';
import { FifoMap } from '../util/fifo-map.js';
import { LogHistogram, OtelHistogram } from './hist.js';
import type { ThreadSample } from './hub.js';
import { RouteTemplates } from './routes.js';

export type Component = 'sql' | 'dependency' | 'cpu' | 'cpu_wait' | 'blocked' | 'hub';

export interface Cause {
  component: Component;
  /** what this component usually takes on the request's route (its healthy baseline), when known */
  usual_ms?: number;
  /** one line an operator reads: what, where, how long */
  detail: string;
  ms: number;
  /** of the request's duration */
  share: number;
  /** the SQL fingerprint, or the peer, the cause names */
  subject?: string;
  /** a dependency's own cause, when the callee is traced here */
  via?: Cause & { service: string; request: string };
}

export interface SqlSummary {
  count: number;
  total_ms: number;
  slowest?: { fingerprint: string; ms: number };
  /** the fingerprint run most often, when it ran more than once */
  repeated?: { fingerprint: string; count: number; total_ms: number };
  /** per database the connection logged into ('' when the tracer met the connection already open) */
  by_database?: Record<string, { count: number; total_ms: number }>;
  /** every fingerprint of the request with its count and time, most time first (at most 100) */
  statements?: { fingerprint: string; count: number; total_ms: number }[];
}

export interface Call {
  kind: 'http' | 'ovsdb' | 'amqp';
  peer: string;
  peer_service?: string;
  method: string;
  route?: string;
  status: number | null;
  /** from the parent request's start */
  offset_ms: number;
  ms: number;
  /** the request it caused in the callee (a key of this engine) */
  child?: string;
  /** from the call to the callee's worker reading it: queued in the callee, and the network */
  queue_ms?: number;
  /** AMQP: a cast (sent, not waited for) */
  cast?: true;
}

export interface Explained {
  key: string;
  request_id?: string;
  service: string;
  pid: number;
  tid: number;
  ts: number;
  method: string;
  route: string;
  path: string;
  status: number | null;
  duration_ms: number;
  user?: string;
  project?: string;
  sql: SqlSummary;
  calls: Call[];
  cpu_ms?: number;
  runq_ms?: number;
  /** off-CPU and not runnable, outside SQL and calls: locks, disk, sleeps, a blocked hub */
  blocked_ms?: number;
  shared_thread?: true;
  /** a greenthreaded worker's hub seen asleep outside its wait while this request was open */
  hub_blocked?: HubBlock;
  /**
   * the first request of a connection an eventlet server accepted: from the accept to the request's
   * first byte read — waiting for a free greenthread of the server's pool (eventlet.wsgi accepts,
   * then waits for a slot before a greenthread reads)
   */
  queued_ms?: number;
  parent?: string;
  cause: Cause;
  /** keys of findings open on this request's route, fingerprints or peers */
  findings: string[];
}

export type FindingKind = 'route_regression' | 'slow_sql' | 'slow_dependency' | 'cpu_starvation' | 'n_plus_one' | 'pool_saturated' | 'hub_blocked';

/** A run of samples that found a worker thread asleep in one system call other than its event loop's wait. */
export interface HubBlock {
  /** of the block (its first sample to its last, plus one sampling interval), the part while the request was open */
  ms: number;
  /**
   * the part before the worker read the request: a request that arrived meanwhile waited unread
   * (in the socket) for up to this long — time its client saw and its own duration does not hold
   */
  queued_ms: number;
  syscall: string;
  /** the descriptor the call was on, as /proc names it (a path, pipe:[…], socket:[…]) */
  target?: string;
  samples: number;
  tid: number;
}

export interface Finding {
  key: string;
  kind: FindingKind;
  service: string;
  /** the route, fingerprint or peer */
  subject: string;
  detail: string;
  first_seen: number;
  last_seen: number;
  /** still holding at the last check */
  open: boolean;
  baseline_ms?: number;
  recent_ms?: number;
  /** for a route regression: the component whose mean grew most */
  moved?: { component: Component; subject?: string; baseline_ms: number; recent_ms: number };
  evidence: string[];
}

export interface PerfOptions {
  settleMs: number;
  maxRequests: number;
  routeValues: number;
  maxRoutes: number;
  maxFingerprints: number;
  nPlusOne: number;
  baseline: { learnSeconds: number; recentSeconds: number; minSamples: number; factor: number; minDeltaMs: number };
}

interface Child {
  kind: 'sql' | 'http' | 'ovsdb' | 'amqp';
  tid: number;
  start: number;
  end: number;
  ms: number;
  fp?: string;
  db?: string;
  method?: string;
  path?: string;
  status?: number | null;
  remote?: string;
  local?: string;
  requestId?: string;
  service: string;
  /** the greenlet that issued it, where the process uses greenlet (the tracer follows its switches) */
  greenlet?: number;
  /** AMQP: the oslo.messaging ids that find the callee's handling */
  msgId?: string;
  uniqueId?: string;
  cast?: boolean;
}

interface Pending {
  /** an API request; an RPC server's handling of a call or cast is put in the same shape (method CALL or CAST) */
  ev: EventOf<'http.request'>;
  end: number;
  route: string;
  /** the oslo.messaging ids of an RPC handled */
  rpc?: { msgId?: string; uniqueId?: string };
}

/** A cast delivered to an RPC server: its handling is the greenthread that ran it. */
interface CastDelivered {
  ev: EventOf<'rpc.call'>;
  /** the delivery's greenlet: the server's consumer loop, not the handler */
  poller?: number;
}

/** Per-window sums of a route's components, for naming what moved. */
interface Slot {
  n: number;
  errors: number;
  sqlCount: number;
  hist: LogHistogram;
  sql: number;
  calls: Map<string, number>;
  cpu: number;
  runq: number;
  blocked: number;
}

/** A latency series over time, in slots of the recent window's length. */
class Series {
  private readonly slots: (Slot & { at: number })[] = [];
  /** slots a finding was open in: a baseline learns from healthy time only */
  private readonly anomalous = new Set<number>();
  errors = 0;
  total = 0;
  constructor(
    readonly service: string,
    readonly subject: string,
  ) {}

  slot(now: number, slotMs: number, keep: number): Slot {
    const at = Math.floor(now / slotMs);
    let s = this.slots.at(-1);
    if (!s || s.at !== at) {
      s = { at, n: 0, errors: 0, sqlCount: 0, hist: new LogHistogram(), sql: 0, calls: new Map(), cpu: 0, runq: 0, blocked: 0 };
      this.slots.push(s);
      while (this.slots.length > keep) this.slots.shift();
    }
    return s;
  }

  private cached?: { at: number; slot: Slot; p50: number | undefined };

  /** the healthy baseline before slot `nowSlot - 1`, merged once per slot */
  baseline(nowSlot: number, keep: number): { slot: Slot; p50: number | undefined } {
    if (this.cached?.at !== nowSlot) {
      const slot = this.merged(nowSlot - keep, nowSlot - 1, true);
      this.cached = { at: nowSlot, slot, p50: slot.hist.quantile(0.5) };
    }
    return this.cached;
  }

  markAnomalous(from: number, to: number): void {
    this.cached = undefined;
    for (let at = from; at < to; at++) this.anomalous.add(at);
    if (this.anomalous.size > 4096) for (const at of this.anomalous) if (at < to - 4096) this.anomalous.delete(at);
  }

  /** merged slots with at in [from, to); `healthy`: only slots no finding was open in */
  merged(from: number, to: number, healthy = false): Slot {
    const out: Slot = { n: 0, errors: 0, sqlCount: 0, hist: new LogHistogram(), sql: 0, calls: new Map(), cpu: 0, runq: 0, blocked: 0 };
    for (const s of this.slots) {
      if (s.at < from || s.at >= to || (healthy && this.anomalous.has(s.at))) continue;
      out.n += s.n;
      out.errors += s.errors;
      out.sqlCount += s.sqlCount;
      out.hist.add(s.hist);
      out.sql += s.sql;
      out.cpu += s.cpu;
      out.runq += s.runq;
      out.blocked += s.blocked;
      for (const [k, v] of s.calls) out.calls.set(k, (out.calls.get(k) ?? 0) + v);
    }
    return out;
  }
}

/**
 * A request that starts this soon after its worker answered the one before had been waiting:
 * the worker finished writing, closed or kept the connection, and read the next at once.
 */
const QUEUED_GAP_MS = 10;
/** accept → first read longer than this is a request that waited for a greenthread */
const POOL_WAIT_MS = 20;

/** the last 16 requests under one key (a request id, a connection), newest last */
function remember(map: FifoMap<string, { key: string; ts: number }[]>, k: string, e: { key: string; ts: number }): void {
  const list = map.get(k) ?? [];
  list.push(e);
  if (list.length > 16) list.shift();
  map.set(k, list);
}

/** two requests on one thread overlapping by more than this were served at once */
const SHARED_MIN_MS = 5;

/** pool pre-pings (`SELECT 1`) and session settings are not the application's queries */
const HOUSEKEEPING = /^(SELECT \?|SET |SHOW |ROLLBACK|COMMIT|BEGIN|START TRANSACTION|XA )/i;

const round = (x: number): number => Math.round(x * 1000) / 1000;

export function sqlOperation(fp: string): string {
  const m = /^\s*([A-Za-z]+)/.exec(fp);
  return m ? (m[1] as string).toUpperCase() : 'OTHER';
}

export function fingerprintId(fp: string): string {
  return createHash('sha256').update(fp).digest('hex').slice(0, 12);
}

export interface PerfStats {
  requests: number;
  explained: number;
  /** explained requests forgotten for room (max_requests) */
  evicted: number;
  /** children (SQL, calls) forgotten for room before their request was explained */
  children_dropped: number;
  pending: number;
  /** requests not explained because max pending were waiting (a flood) */
  pending_dropped: number;
  stitched: number;
  shared_thread: number;
  findings_open: number;
  routes: number;
  route_overflow: number;
  fingerprint_overflow: number;
  /** worker threads sampled in the last two minutes (the blocked-hub check) */
  threads_sampled: number;
  /** the services judged greenthreaded (eventlet): their hubs are watched */
  greenthreaded: string[];
}

export class PerfEngine {
  readonly routes: RouteTemplates;
  private readonly children = new Map<number, Child[]>();
  private childCount = 0;
  private readonly maxChildren = 200_000;
  private readonly maxPending = 100_000;
  private pending: Pending[] = [];
  readonly requests: FifoMap<string, Explained>;
  /**
   * request id → the requests that answered with it. Not one: a request id is the caller's global
   * id as often as the service's own (Glance echoes the X-OpenStack-Request-ID it was sent, so a
   * nova-api request and every Glance request it caused share one).
   */
  private readonly byRequestId = new FifoMap<string, { key: string; ts: number }[]>(50_000);
  private readonly byConn = new FifoMap<string, { key: string; ts: number }[]>(20_000);
  /** RPC handlings explained, by "m:"+_msg_id (calls) and "u:"+_unique_id (casts) */
  private readonly rpcServed = new FifoMap<string, string>(20_000);
  /** RPC calls and casts explained before the handling they caused */
  private readonly rpcCallers = new FifoMap<string, { parent: string; call: Call; start: number }>(20_000);
  private castsDelivered: CastDelivered[] = [];
  /** connections accepted by traced servers: pid|remote|local → when */
  private readonly accepted = new FifoMap<string, number>(20_000);
  /** RPC handled by services (OpenTelemetry's rpc.server.duration) */
  readonly rpcServerMetrics = new Map<string, { labels: Record<string, string>; h: OtelHistogram }>();
  /** a server's listening address → its service */
  private readonly listeners = new FifoMap<string, string>(10_000);
  /** an address a service was reached through (a proxy, a load balancer) → that service, learned by stitching */
  private readonly peerNames = new FifoMap<string, string>(10_000);
  private readonly routeSeries = new Map<string, Series>();
  private readonly sqlSeries = new Map<string, Series>();
  private readonly peerSeries = new Map<string, Series>();
  private readonly fps = new Map<string, { fp: string; service: string; id: string }>();
  private readonly fpPerService = new Map<string, number>();
  readonly findings = new FifoMap<string, Finding>(5_000);
  private readonly listenersOf = new Set<(f: Finding) => void>();
  private readonly st = { requests: 0, explained: 0, evicted: 0, childrenDropped: 0, stitched: 0, shared: 0, fpOverflow: 0, pendingDropped: 0 };
  /** server requests by service/method/route/status, for the OTel histogram */
  readonly serverMetrics = new Map<string, { labels: Record<string, string>; h: OtelHistogram }>();
  readonly clientMetrics = new Map<string, { labels: Record<string, string>; h: OtelHistogram }>();
  readonly dbMetrics = new Map<string, { labels: Record<string, string>; h: OtelHistogram }>();
  /** OVSDB calls by service, method and database (OpenTelemetry's rpc.client.duration) */
  readonly rpcMetrics = new Map<string, { labels: Record<string, string>; h: OtelHistogram }>();

  /** told of every observation (the OTLP export) */
  sink?: {
    serverRequest(service: string, method: string, route: string, status: number | null, seconds: number): void;
    clientRequest(service: string, method: string, peer: string, peerService: string | undefined, status: number | null, seconds: number): void;
    dbOperation(service: string, operation: string, fingerprintId: string, seconds: number, errorCode?: number): void;
  };

  constructor(
    private opts: PerfOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.routes = new RouteTemplates({ maxValues: opts.routeValues, maxRoutes: opts.maxRoutes });
    this.requests = new FifoMap(opts.maxRequests, () => this.st.evicted++);
  }

  reconfigure(opts: PerfOptions): void {
    this.opts = opts;
  }

  onFinding(f: (x: Finding) => void): () => void {
    this.listenersOf.add(f);
    return () => this.listenersOf.delete(f);
  }

  private get slotMs(): number {
    return this.opts.baseline.recentSeconds * 1000;
  }
  private get keepSlots(): number {
    return Math.ceil(this.opts.baseline.learnSeconds / this.opts.baseline.recentSeconds) + 2;
  }

  onEvents(batch: readonly TraceEvent[]): void {
    for (const ev of batch) {
      if (ev.type === 'sql.query') this.onSql(ev);
      else if (ev.type === 'net.accept') {
        if (ev.data.remote && ev.data.local) this.accepted.set(`${ev.pid}|${ev.data.remote}|${ev.data.local}`, ev.ts);
      } else if (ev.type === 'rpc.call') this.onRpc(ev);
      else if (ev.type === 'http.request') {
        if (ev.data.role === 'server') this.onServer(ev);
        else this.onClient(ev);
      }
    }
  }

  private observe(map: Map<string, { labels: Record<string, string>; h: OtelHistogram }>, labels: Record<string, string>, seconds: number): void {
    const k = Object.values(labels).join('\u0000');
    let e = map.get(k);
    if (!e) {
      e = { labels, h: new OtelHistogram() };
      map.set(k, e);
    }
    e.h.observe(seconds);
  }

  private addChild(tgid: number, c: Child): void {
    let list = this.children.get(tgid);
    if (!list) {
      list = [];
      this.children.set(tgid, list);
    }
    list.push(c);
    this.childCount++;
    if (this.childCount > this.maxChildren) this.pruneChildren(this.now() - 60_000, true);
  }

  private fpKey(service: string, statement: string): { fp: string; id: string } {
    const fp = fingerprint(statement);
    const k = `${service}\u0000${fp}`;
    const known = this.fps.get(k);
    if (known) return known;
    const n = this.fpPerService.get(service) ?? 0;
    if (n >= this.opts.maxFingerprints) {
      this.st.fpOverflow++;
      return { fp, id: 'other' };
    }
    const e = { fp, service, id: fingerprintId(fp) };
    this.fps.set(k, e);
    this.fpPerService.set(service, n + 1);
    return e;
  }

  private onSql(ev: EventOf<'sql.query'>): void {
    const d = ev.data;
    if (typeof d.statement !== 'string') return;
    const { fp, id } = this.fpKey(ev.service, d.statement);
    const ms = d.latency_ms;
    this.observe(this.dbMetrics, { service: ev.service, db_system_name: 'mysql', db_operation_name: sqlOperation(fp), db_query_fingerprint: id }, ms / 1000);
    this.sink?.dbOperation(ev.service, sqlOperation(fp), id, ms / 1000, d.error_code);
    if (id !== 'other') {
      const s = this.series(this.sqlSeries, ev.service, fp);
      const slot = s.slot(ev.ts, this.slotMs, this.keepSlots);
      slot.n++;
      slot.hist.observe(ms);
      s.total++;
      if (d.error_code !== undefined) s.errors++;
    }
    this.addChild(ev.pid, {
      kind: 'sql',
      tid: ev.tid,
      start: ev.ts,
      end: ev.ts + ms,
      ms,
      fp,
      db: d.database ?? '',
      service: ev.service,
      ...(d.greenlet ? { greenlet: d.greenlet } : {}),
    });
  }

  /** One call's duration in the series of its service's calls to that peer (slow_dependency's baseline). */
  private peerTime(service: string, peer: string, ts: number, ms: number): void {
    const s = this.series(this.peerSeries, service, peer);
    const slot = s.slot(ts, this.slotMs, this.keepSlots);
    slot.n++;
    slot.hist.observe(ms);
    s.total++;
  }

  /** An OVSDB transaction: the callee is the database it names (OVN_Northbound), wherever it listens. */
  private onRpc(ev: EventOf<'rpc.call'>): void {
    const d = ev.data;
    if (d.protocol === 'amqp') {
      this.onAmqp(ev);
      return;
    }
    const peer = d.target ?? d.remote ?? '?';
    this.observe(this.rpcMetrics, { service: ev.service, rpc_system: d.protocol, rpc_service: d.target ?? '', rpc_method: d.method }, d.latency_ms / 1000);
    this.peerTime(ev.service, peer, ev.ts, d.latency_ms);
    this.addChild(ev.pid, {
      kind: 'ovsdb',
      tid: ev.tid,
      start: ev.ts,
      end: ev.ts + d.latency_ms,
      ms: d.latency_ms,
      method: d.method,
      path: [d.ops?.join(','), d.tables?.join(',')].filter(Boolean).join(' '),
      status: null,
      remote: peer,
      service: ev.service,
    });
  }

  /**
   * oslo.messaging over RabbitMQ. A call (client) waits for its reply: a dependency of the request
   * that made it, its peer the topic. A cast is sent and not waited for. A call handled (server) is
   * a request of the RPC server, from the call's arrival to its answer; a cast handled is the
   * greenthread that ran it, found once it has done something (tick).
   */
  private onAmqp(ev: EventOf<'rpc.call'>): void {
    const d = ev.data;
    const topic = d.target ?? '?';
    if (d.role === 'client') {
      if (d.kind === 'call') {
        this.observe(this.rpcMetrics, { service: ev.service, rpc_system: 'oslo_messaging', rpc_service: topic, rpc_method: d.method }, d.latency_ms / 1000);
        this.peerTime(ev.service, `rpc:${topic}`, ev.ts, d.latency_ms);
      }
      this.addChild(ev.pid, {
        kind: 'amqp',
        tid: ev.tid,
        start: ev.ts,
        end: ev.ts + d.latency_ms,
        ms: d.latency_ms,
        method: d.method,
        path: topic,
        status: d.failed ? 500 : d.kind === 'call' ? 200 : null,
        ...(d.remote ? { remote: d.remote } : {}),
        ...(d.msg_id ? { msgId: d.msg_id } : {}),
        ...(d.unique_id ? { uniqueId: d.unique_id } : {}),
        ...(d.kind === 'cast' ? { cast: true } : {}),
        ...(d.greenlet ? { greenlet: d.greenlet } : {}),
        service: ev.service,
      });
      return;
    }
    if (d.kind === 'cast') {
      if (this.castsDelivered.length >= this.maxPending) this.st.pendingDropped++;
      else this.castsDelivered.push({ ev, ...(d.greenlet ? { poller: d.greenlet } : {}) });
      return;
    }
    this.served(ev, 'CALL', d.latency_ms, d.greenlet, d.failed === true, ev.tid, {
      ...(d.msg_id ? { msgId: d.msg_id } : {}),
      ...(d.unique_id ? { uniqueId: d.unique_id } : {}),
    });
  }

  /** An RPC handled, as a request of its service: method CALL or CAST, route "topic method". */
  private served(
    ev: EventOf<'rpc.call'>,
    method: 'CALL' | 'CAST',
    ms: number,
    greenlet: number | undefined,
    failed: boolean,
    tid: number,
    rpc: { msgId?: string; uniqueId?: string },
  ): void {
    const d = ev.data;
    const route = `${d.target ?? '?'} ${d.method}`;
    this.st.requests++;
    this.observe(
      this.rpcServerMetrics,
      { service: ev.service, rpc_system: 'oslo_messaging', rpc_service: d.target ?? '', rpc_method: d.method, rpc_kind: method.toLowerCase() },
      ms / 1000,
    );
    if (this.pending.length >= this.maxPending) {
      this.st.pendingDropped++;
      return;
    }
    const req: EventOf<'http.request'> = {
      ...ev,
      tid,
      type: 'http.request',
      data: {
        role: 'server',
        method,
        path: route,
        status: failed ? 500 : 200,
        latency_ms: round(ms),
        request_bytes: d.request_bytes,
        response_bytes: d.response_bytes,
        ...(greenlet ? { greenlet } : {}),
      },
    };
    this.pending.push({ ev: req, end: ev.ts + ms, route, rpc });
  }

  /** Casts delivered long enough ago: the greenthread that ran each, and what it did. */
  private castsDue(now: number): void {
    const keep: CastDelivered[] = [];
    for (const c of this.castsDelivered) {
      const ev = c.ev;
      // the handler: the first greenlet other than the consumer's to do something after the delivery
      const after = (this.children.get(ev.pid) ?? []).filter((x) => x.start >= ev.ts && x.greenlet && x.greenlet !== c.poller);
      const first = after.reduce<Child | undefined>((a, x) => (!a || x.start < a.start ? x : a), undefined);
      if (!first) {
        if (now - ev.ts < 10_000) keep.push(c);
        continue;
      }
      const mine = after.filter((x) => x.greenlet === first.greenlet);
      const last = Math.max(...mine.map((x) => x.end));
      if (last + this.opts.settleMs > now && now - ev.ts < 120_000) {
        keep.push(c);
        continue;
      }
      this.served(ev, 'CAST', last - ev.ts, first.greenlet, false, first.tid, ev.data.unique_id ? { uniqueId: ev.data.unique_id } : {});
    }
    this.castsDelivered = keep;
  }

  private onClient(ev: EventOf<'http.request'>): void {
    const d = ev.data;
    const ms = d.latency_ms ?? 0;
    const peer = d.remote ?? '?';
    this.observe(
      this.clientMetrics,
      {
        service: ev.service,
        http_request_method: d.method,
        server_address: peer,
        peer_service: this.listeners.get(peer) ?? '',
        http_response_status_code: d.status === null ? '' : String(d.status),
      },
      ms / 1000,
    );
    this.sink?.clientRequest(ev.service, d.method, peer, this.listeners.get(peer), d.status, ms / 1000);
    this.peerTime(ev.service, peer, ev.ts, ms);
    this.addChild(ev.pid, {
      kind: 'http',
      tid: ev.tid,
      start: ev.ts,
      end: ev.ts + ms,
      ms,
      method: d.method,
      path: d.path,
      status: d.status,
      ...(d.remote ? { remote: d.remote } : {}),
      ...(d.local ? { local: d.local } : {}),
      ...(d.request_id ? { requestId: d.request_id } : {}),
      ...(d.greenlet ? { greenlet: d.greenlet } : {}),
      service: ev.service,
    });
  }

  private onServer(ev: EventOf<'http.request'>): void {
    const d = ev.data;
    this.st.requests++;
    const route = this.routes.route(ev.service, d.path);
    if (d.local) this.listeners.set(d.local, ev.service);
    const ms = d.latency_ms ?? 0;
    this.observe(
      this.serverMetrics,
      { service: ev.service, http_request_method: d.method, http_route: route, http_response_status_code: d.status === null ? '' : String(d.status) },
      ms / 1000,
    );
    this.sink?.serverRequest(ev.service, d.method, route, d.status, ms / 1000);
    if (this.pending.length >= this.maxPending) {
      this.st.pendingDropped++;
      return;
    }
    this.pending.push({ ev, end: ev.ts + ms, route });
  }

  private series(map: Map<string, Series>, service: string, subject: string): Series {
    const k = `${service}\u0000${subject}`;
    let s = map.get(k);
    if (!s) {
      s = new Series(service, subject);
      map.set(k, s);
    }
    return s;
  }

  /** Explain the requests that ended long enough ago; check the baselines. */
  tick(): void {
    const now = this.now();
    if (this.castsDelivered.length) this.castsDue(now);
    const due = this.pending.filter((p) => p.end + this.opts.settleMs <= now).sort((a, b) => a.end - b.end);
    if (due.length) {
      this.pending = this.pending.filter((p) => p.end + this.opts.settleMs > now);
      for (const p of due) this.explain(p, due);
      this.pruneChildren(now - this.opts.settleMs - 120_000, false);
    }
    this.check(now);
  }

  private pruneChildren(before: number, force: boolean): void {
    let n = 0;
    for (const [tgid, list] of this.children) {
      let keep = list.filter((c) => c.end >= before);
      if (force && keep.length > 1000) {
        this.st.childrenDropped += keep.length - 1000;
        keep = keep.slice(-1000);
      }
      if (keep.length) this.children.set(tgid, keep);
      else this.children.delete(tgid);
      n += keep.length;
    }
    this.childCount = n;
  }

  private explain(p: Pending, batch: Pending[]): void {
    const ev = p.ev;
    const d = ev.data;
    const start = ev.ts;
    const end = p.end;
    const dur = d.latency_ms ?? 0;
    const slack = 0.5; // ms: the two clocks are one, but rounding of µs
    const inWindow = (c: Child): boolean => c.start >= start - slack && c.end <= end + slack;
    // an OVSDB client runs its own thread (ovsdbapp's connection): its transactions are the request's
    // when no other request of the process was open at the time
    const alone = (c: Child): boolean => ![...batch, ...this.pending].some((o) => o !== p && o.ev.pid === ev.pid && o.ev.ts < c.end && o.end > c.start);
    // on an eventlet thread, where the tracer follows greenlet switches, the request's greenlet's
    // only: not a greenthread it spawned, not another request's
    const ownGreenlet = (c: Child): boolean => !c.greenlet || !d.greenlet || c.greenlet === d.greenlet;
    const mine = (this.children.get(ev.pid) ?? []).filter((c) => inWindow(c) && ((c.tid === ev.tid && ownGreenlet(c)) || (c.kind === 'ovsdb' && alone(c))));
    // a few ms of overlap is the edges of two requests measured on one thread (the answer's last
    // write, the next request's first read), not two served at once
    const shared = batch.some((o) => o !== p && o.ev.pid === ev.pid && o.ev.tid === ev.tid && Math.min(o.end, end) - Math.max(o.ev.ts, start) > SHARED_MIN_MS);
    if (shared) {
      this.st.shared++;
      this.concurrentThreads.set(ev.service, (this.concurrentThreads.get(ev.service) ?? 0) + 1);
    }
    // the connection's first request: how long it sat accepted but unread
    let queued: number | undefined;
    if (d.remote && d.local) {
      const k = `${ev.pid}|${d.remote}|${d.local}`;
      const at = this.accepted.get(k);
      if (at !== undefined && at <= start) {
        queued = round(start - at);
        this.accepted.delete(k);
      }
    }
    this.workload(ev.service).push({ start, end, worker: `${ev.pid}/${ev.tid}`, ...(queued !== undefined ? { queued } : {}) });
    this.lastServed.set(`${ev.pid}/${ev.tid}`, { service: ev.service, pid: ev.pid, tid: ev.tid, end });
    // SQL
    const sql: SqlSummary = { count: 0, total_ms: 0 };
    const perFp = new Map<string, { count: number; ms: number }>();
    for (const c of mine) {
      if (c.kind !== 'sql') continue;
      sql.count++;
      sql.total_ms += c.ms;
      const f = perFp.get(c.fp as string) ?? { count: 0, ms: 0 };
      f.count++;
      f.ms += c.ms;
      perFp.set(c.fp as string, f);
      if (!sql.slowest || c.ms > sql.slowest.ms) sql.slowest = { fingerprint: c.fp as string, ms: c.ms };
      sql.by_database ??= {};
      const b = (sql.by_database[c.db ?? ''] ??= { count: 0, total_ms: 0 });
      b.count++;
      b.total_ms = round(b.total_ms + c.ms);
    }
    sql.total_ms = round(sql.total_ms);
    if (perFp.size)
      sql.statements = [...perFp]
        .sort((a, b) => b[1].ms - a[1].ms)
        .slice(0, 100)
        .map(([fingerprint, v]) => ({ fingerprint, count: v.count, total_ms: round(v.ms) }));
    let top: [string, { count: number; ms: number }] | undefined;
    for (const e of perFp) if (!HOUSEKEEPING.test(e[0]) && (!top || e[1].count > top[1].count)) top = e;
    if (top && top[1].count > 1) sql.repeated = { fingerprint: top[0], count: top[1].count, total_ms: round(top[1].ms) };
    // calls, stitched to the request each caused
    const calls: Call[] = [];
    const key = this.keyOf(ev);
    for (const c of mine) {
      if (c.kind === 'ovsdb') {
        calls.push({
          kind: 'ovsdb',
          peer: c.remote ?? '?',
          peer_service: 'ovsdb-server',
          method: c.method as string,
          route: c.path || c.remote || '',
          status: null,
          offset_ms: round(c.start - start),
          ms: round(c.ms),
        });
        continue;
      }
      if (c.kind === 'amqp') {
        const call: Call = {
          kind: 'amqp',
          peer: c.remote ?? '?',
          method: c.cast ? 'CAST' : 'CALL',
          route: `${c.path} ${c.method}`,
          status: c.status ?? null,
          offset_ms: round(c.start - start),
          ms: round(c.ms),
          ...(c.cast ? { cast: true as const } : {}),
        };
        const id = c.cast ? (c.uniqueId ? `u:${c.uniqueId}` : undefined) : c.msgId ? `m:${c.msgId}` : undefined;
        const served = id ? this.rpcServed.get(id) : undefined;
        const child = served ? this.requests.get(served) : undefined;
        if (child) this.link(key, call, c.start, child);
        else if (id) this.rpcCallers.set(id, { parent: key, call, start: c.start });
        calls.push(call);
        continue;
      }
      if (c.kind !== 'http') continue;
      const call: Call = {
        kind: 'http',
        peer: c.remote ?? '?',
        method: c.method as string,
        status: c.status ?? null,
        offset_ms: round(c.start - start),
        ms: round(c.ms),
      };
      const peerService = c.remote ? this.listeners.get(c.remote) : undefined;
      if (peerService) {
        call.peer_service = peerService;
        call.route = this.routes.route(peerService, c.path as string);
      }
      const child = this.findChild(c);
      if (child) {
        call.child = child.key;
        if (!call.peer_service) {
          // reached through something not traced (a proxy, a load balancer): the callee names it
          call.peer_service = child.service;
          call.route = child.route;
          if (c.remote) this.peerNames.set(c.remote, child.service);
        }
        call.queue_ms = round(Math.max(0, child.ts - c.start));
        child.parent = key;
        this.st.stitched++;
      }
      calls.push(call);
    }
    const callMs = calls.reduce((a, c) => a + c.ms, 0);
    const out: Explained = {
      key,
      ...(d.request_id ? { request_id: d.request_id } : {}),
      service: ev.service,
      pid: ev.pid,
      tid: ev.tid,
      ts: ev.ts,
      method: d.method,
      route: p.route,
      path: d.path,
      status: d.status,
      duration_ms: dur,
      ...(d.user ? { user: d.user } : {}),
      ...(d.project ? { project: d.project } : {}),
      sql,
      calls,
      findings: [],
      cause: { component: 'cpu', detail: '', ms: 0, share: 0 },
    };
    if (d.cpu_ms !== undefined && d.runq_ms !== undefined) {
      out.cpu_ms = d.cpu_ms;
      out.runq_ms = d.runq_ms;
      out.blocked_ms = round(Math.max(0, dur - d.cpu_ms - d.runq_ms - sql.total_ms - callMs));
    }
    if (shared) out.shared_thread = true;
    if (queued !== undefined && queued >= POOL_WAIT_MS) out.queued_ms = queued;
    this.vote(ev.service, ev.pid, ev.tid, start, end, mine);
    if (this.greenthreaded(ev.service)) {
      const run = this.hubRun(ev.pid, ev.tid, start, end);
      if (run) {
        out.hub_blocked = run;
        const subject = `${run.syscall}${run.target ? ` ${run.target}` : ''}`;
        const f = this.raise(
          'hub_blocked',
          ev.service,
          subject,
          `${ev.service} (pid ${ev.pid}): its eventlet hub asleep in ${run.syscall}(2)${run.target ? ` on ${run.target}` : ''} for ${run.ms} ms (${run.samples} samples) — every request of the worker waited`,
          ev.ts,
          [key],
        );
        out.findings.push(f.key);
      }
    }
    const routeSeries = this.series(this.routeSeries, ev.service, `${d.method} ${p.route}`);
    const b = routeSeries.baseline(Math.floor(this.now() / this.slotMs), this.keepSlots);
    out.cause = this.causeOf(out, b.slot.n >= 4 * this.opts.baseline.minSamples ? b : undefined);
    this.requests.delete(key);
    this.requests.set(key, out);
    if (p.rpc) {
      const ids = [p.rpc.msgId && `m:${p.rpc.msgId}`, p.rpc.uniqueId && `u:${p.rpc.uniqueId}`].filter((x): x is string => !!x);
      for (const id of ids) {
        this.rpcServed.set(id, key);
        // its caller was explained first (a cast's sender does not wait for it)
        const caller = this.rpcCallers.get(id);
        if (caller) {
          this.rpcCallers.delete(id);
          if (this.requests.has(caller.parent)) this.link(caller.parent, caller.call, caller.start, out);
        }
      }
    }
    if (d.request_id) remember(this.byRequestId, d.request_id, { key, ts: ev.ts });
    if (d.remote && d.local) remember(this.byConn, `${d.remote}>${d.local}`, { key, ts: ev.ts });
    this.st.explained++;
    // the route's series: latency and what it was made of
    const s = this.series(this.routeSeries, ev.service, `${d.method} ${p.route}`);
    const slot = s.slot(ev.ts, this.slotMs, this.keepSlots);
    slot.n++;
    slot.hist.observe(dur);
    slot.sql += sql.total_ms;
    slot.sqlCount += sql.count;
    if (d.status === null || d.status >= 500) slot.errors++;
    for (const c of calls) slot.calls.set(c.peer_service ?? c.peer, (slot.calls.get(c.peer_service ?? c.peer) ?? 0) + c.ms);
    slot.cpu += out.cpu_ms ?? 0;
    slot.runq += out.runq_ms ?? 0;
    slot.blocked += out.blocked_ms ?? 0;
    s.total++;
    if (d.status === null || d.status >= 500) s.errors++;
    // N+1: one statement run again and again in one request
    if (sql.repeated && sql.repeated.count >= this.opts.nPlusOne) {
      const f = this.raise(
        'n_plus_one',
        ev.service,
        sql.repeated.fingerprint,
        `${sql.repeated.count}× in one ${d.method} ${p.route} (${sql.repeated.total_ms} ms)`,
        ev.ts,
        [key],
      );
      out.findings.push(f.key);
    }
    // the findings open on what this request touched; a request beyond the baseline is their evidence
    for (const f of this.findings.values()) {
      if (!f.open || f.key === out.findings[0] || f.service !== ev.service) continue;
      let beyond: boolean | undefined;
      if (f.subject === `${d.method} ${p.route}`) beyond = f.kind === 'cpu_starvation' ? (out.runq_ms ?? 0) > (f.baseline_ms ?? 0) : dur > (f.baseline_ms ?? 0);
      else if (f.kind === 'slow_sql' && perFp.has(f.subject)) beyond = (sql.slowest?.ms ?? 0) > (f.baseline_ms ?? 0);
      else if (f.kind === 'slow_dependency') {
        const c = calls.filter((x) => x.peer === f.subject);
        if (c.length) beyond = c.some((x) => x.ms > (f.baseline_ms ?? 0));
      }
      if (beyond === undefined) continue;
      out.findings.push(f.key);
      if (beyond) {
        f.evidence.push(key);
        if (f.evidence.length > 20) f.evidence.shift();
      }
    }
  }

  private keyOf(ev: EventOf<'http.request'>): string {
    const rid = ev.data.request_id;
    if (rid && !this.requests.has(rid)) return rid;
    return `${ev.service}-${ev.pid}-${Math.round(ev.ts * 1000)}`;
  }

  /** A call (or cast) and the handling it caused, in another service. */
  private link(parent: string, call: Call, callStart: number, child: Explained): void {
    if (call.child) return;
    call.child = child.key;
    call.peer_service = child.service;
    call.queue_ms = round(Math.max(0, child.ts - callStart));
    child.parent = parent;
    this.st.stitched++;
  }

  /** The callee's request: the request id its answer carried, else the connection and the time. */
  /**
   * The server request a call reached: on the call's own connection, begun while the call was open
   * (exact); else (through a proxy, a load balancer) by the request id the answer carried, begun
   * while the call was open, in another service than the caller's.
   */
  private findChild(c: Child): Explained | undefined {
    const during = (e: { ts: number }) => e.ts >= c.start - 1 && e.ts <= c.end + 1;
    if (c.local && c.remote) {
      const e = (this.byConn.get(`${c.local}>${c.remote}`) ?? []).find(during);
      const r = e && this.requests.get(e.key);
      if (r) return r;
    }
    if (c.requestId)
      for (const e of this.byRequestId.get(c.requestId) ?? []) {
        const r = during(e) ? this.requests.get(e.key) : undefined;
        if (r && r.service !== c.service) return r;
      }
    return undefined;
  }

  /**
   * The cause: for a request slower than its route usually is (beyond its
   * healthy median by baseline.min_delta_ms), the component
   * that took the most beyond what it usually takes there (its healthy
   * baseline); otherwise, or before a baseline exists, the largest share.
   */
  causeOf(r: Explained, base?: { slot: Slot; p50: number | undefined }): Cause {
    const dur = Math.max(r.duration_ms, 1e-6);
    // a blocked hub stops everything the request waits on (its SQL answers, its calls' answers
    // are read late): what the other components show then is the hub's doing
    const h = r.hub_blocked;
    if (h && h.ms + h.queued_ms >= this.opts.baseline.minDeltaMs)
      return {
        component: 'hub',
        ms: h.ms,
        share: round(Math.min(1, h.ms / dur)),
        subject: `${h.syscall}${h.target ? ` ${h.target}` : ''}`,
        detail: `the eventlet hub (thread ${h.tid}) asleep in ${h.syscall}(2)${h.target ? ` on ${h.target}` : ''}: ${h.ms} ms while this request was open${
          h.queued_ms ? `, and up to ${h.queued_ms} ms before the worker could read it (unread in the socket)` : ''
        } — nothing else on the worker could run`,
      };
    const cands: Cause[] = [];
    if (r.sql.count) {
      const rep = r.sql.repeated;
      const slow = r.sql.slowest as { fingerprint: string; ms: number };
      if (rep && rep.count >= this.opts.nPlusOne && rep.total_ms >= slow.ms)
        cands.push({
          component: 'sql',
          ms: r.sql.total_ms,
          share: 0,
          subject: rep.fingerprint,
          detail: `SQL: ${r.sql.count} statements, ${r.sql.total_ms} ms; the same statement ${rep.count}× (${rep.total_ms} ms): ${rep.fingerprint}`,
        });
      else
        cands.push({
          component: 'sql',
          ms: r.sql.total_ms,
          share: 0,
          subject: slow.fingerprint,
          detail: `SQL: ${r.sql.count} statements, ${r.sql.total_ms} ms; the slowest ${round(slow.ms)} ms: ${slow.fingerprint}`,
        });
    }
    const byPeer = new Map<string, { ms: number; calls: Call[] }>();
    for (const c of r.calls) {
      const k = c.peer_service ?? c.peer;
      const e = byPeer.get(k) ?? { ms: 0, calls: [] };
      e.ms += c.ms;
      e.calls.push(c);
      byPeer.set(k, e);
    }
    for (const [peer, e] of byPeer) {
      const longest = e.calls.reduce((a, b) => (b.ms > a.ms ? b : a));
      const cause: Cause = {
        component: 'dependency',
        ms: round(e.ms),
        share: 0,
        subject: longest.peer,
        detail:
          `waiting on ${peer} (${longest.peer}): ${e.calls.length} call${e.calls.length > 1 ? 's' : ''}, ${round(e.ms)} ms; the longest ${longest.method} ${longest.route ?? ''} ${longest.ms} ms`.replace(
            '  ',
            ' ',
          ),
      };
      const child = longest.child ? this.requests.get(longest.child) : undefined;
      if (child) cause.via = { ...child.cause, service: child.service, request: child.key };
      cands.push(cause);
    }
    if (r.cpu_ms !== undefined) cands.push({ component: 'cpu', ms: r.cpu_ms, share: 0, detail: `on a CPU in ${r.service}: ${r.cpu_ms} ms` });
    if (r.runq_ms !== undefined)
      cands.push({ component: 'cpu_wait', ms: r.runq_ms, share: 0, detail: `runnable but waiting for a CPU (starved): ${r.runq_ms} ms` });
    if (r.blocked_ms !== undefined)
      cands.push({
        component: 'blocked',
        ms: r.blocked_ms,
        share: 0,
        detail: `blocked off-CPU outside SQL and calls (locks, disk, sleeps${r.shared_thread ? ', other requests on the thread' : ''}): ${r.blocked_ms} ms`,
      });
    if (!cands.length) return { component: 'blocked', ms: r.duration_ms, share: 1, detail: 'no breakdown: the worker thread was not seen on both ends' };
    const slower = base?.p50 !== undefined && r.duration_ms - base.p50 >= this.opts.baseline.minDeltaMs;
    if (base) {
      const n = Math.max(1, base.slot.n);
      const usual: Record<Component, (c: Cause) => number> = {
        sql: () => base.slot.sql / n,
        cpu: () => base.slot.cpu / n,
        cpu_wait: () => base.slot.runq / n,
        blocked: () => base.slot.blocked / n,
        hub: () => 0,
        dependency: (c) => {
          const peer = r.calls.find((x) => x.peer === c.subject);
          return (base.slot.calls.get(peer?.peer_service ?? c.subject ?? '') ?? 0) / n;
        },
      };
      for (const c of cands) c.usual_ms = round(usual[c.component](c));
    }
    const score = (c: Cause): number => (slower ? c.ms - (c.usual_ms ?? 0) : c.ms);
    const best = cands.reduce((a, b) => (score(b) > score(a) ? b : a));
    best.share = round(best.ms / dur);
    if (slower && best.usual_ms !== undefined) best.detail += ` (usually ${best.usual_ms} ms on this route)`;
    return best;
  }

  private raise(kind: FindingKind, service: string, subject: string, detail: string, at: number, evidence: string[], extra: Partial<Finding> = {}): Finding {
    const key = `${kind}:${service}:${fingerprintId(subject)}`;
    let f = this.findings.get(key);
    const fresh = !f?.open;
    if (!f) {
      f = { key, kind, service, subject, detail, first_seen: at, last_seen: at, open: true, evidence: [] };
      this.findings.set(key, f);
    }
    if (fresh) f.first_seen = at;
    f.open = true;
    f.last_seen = at;
    f.detail = detail;
    Object.assign(f, extra);
    for (const e of evidence) if (!f.evidence.includes(e)) f.evidence.push(e);
    if (f.evidence.length > 20) f.evidence.splice(0, f.evidence.length - 20);
    if (fresh) for (const l of this.listenersOf) l(f);
    return f;
  }

  private close(kind: FindingKind, service: string, subject: string): void {
    const f = this.findings.get(`${kind}:${service}:${fingerprintId(subject)}`);
    if (f) f.open = false;
  }

  /** A series' recent p95 against its baseline: is it beyond factor × and min_delta? */
  private moved(s: Series, nowSlot: number): { base: Slot; recent: Slot; bp95: number; rp95: number } | undefined {
    const b = this.opts.baseline;
    // the recent window: the last complete slot and the current one
    const recent = s.merged(nowSlot - 1, nowSlot + 1);
    const base = s.merged(nowSlot - this.keepSlots, nowSlot - 1, true);
    if (recent.n < b.minSamples || base.n < 4 * b.minSamples) return undefined;
    const bp95 = base.hist.quantile(0.95) as number;
    const rp95 = recent.hist.quantile(0.95) as number;
    if (rp95 > bp95 * b.factor && rp95 - bp95 >= b.minDeltaMs) return { base, recent, bp95, rp95 };
    return undefined;
  }

  /** a service's recent requests (start, end, worker thread), for the worker pool's occupancy */
  private readonly recentWork = new Map<string, { start: number; end: number; worker: string; queued?: number }[]>();
  /** requests seen served at once on one thread, per service (eventlet): their pool is not the threads */
  private readonly concurrentThreads = new Map<string, number>();
  private concurrent(service: string): boolean {
    return (this.concurrentThreads.get(service) ?? 0) >= 3;
  }

  private workload(service: string): { start: number; end: number; worker: string; queued?: number }[] {
    let w = this.recentWork.get(service);
    if (!w) {
      w = [];
      this.recentWork.set(service, w);
    }
    if (w.length >= 4096) w.splice(0, w.length - 4095);
    return w;
  }

  /**
   * A worker pool is saturated when its workers (the threads that served requests over the learn
   * window: uwsgi and Apache serve one request per thread) were busy nearly all of the recent
   * window, and most requests started within QUEUED_GAP_MS of their worker answering the one before: they had
   * been waiting for it, queued in the listen backlog.
   */
  private checkPools(now: number): void {
    const b = this.opts.baseline;
    const from = now - this.opts.settleMs - 2 * this.slotMs;
    const to = now - this.opts.settleMs;
    for (const [service, w] of this.recentWork) {
      while (w.length && (w[0] as { end: number }).end < now - b.learnSeconds * 1000) w.shift();
      if (this.concurrent(service)) {
        this.checkGreenPool(service, w, from, to, now);
        continue;
      }
      const workers = new Set(w.map((x) => x.worker));
      const recent = w.filter((x) => x.end > from && x.start < to);
      let busy = 0;
      let waited = 0;
      const lastEnd = new Map<string, number>();
      for (const x of w) {
        const prev = lastEnd.get(x.worker);
        if (x.start >= from && x.start < to && prev !== undefined && x.start - prev < QUEUED_GAP_MS) waited++;
        lastEnd.set(x.worker, x.end);
        if (x.end > from && x.start < to) busy += Math.min(x.end, to) - Math.max(x.start, from);
      }
      const occupancy = busy / (workers.size * (to - from));
      const started = recent.filter((x) => x.start >= from).length;
      if (started >= b.minSamples && occupancy >= 0.9 && waited >= 0.5 * started)
        this.raise(
          'pool_saturated',
          service,
          service,
          `${service}: its ${workers.size} worker${workers.size > 1 ? 's were' : ' was'} busy ${Math.round(occupancy * 100)}% of the last ${Math.round((to - from) / 1000)} s; ${waited} of ${started} requests started the moment a worker freed up (they were queued)`,
          now,
          [],
        );
      else if (started >= b.minSamples) this.close('pool_saturated', service, service);
    }
  }

  /**
   * An eventlet server's greenthread pool is saturated when most new connections of the recent
   * window waited between their accept and their first read: eventlet.wsgi accepts, then waits
   * for a free greenthread before one reads the request (the time is seen, unlike a thread pool's
   * listen backlog).
   */
  private checkGreenPool(service: string, w: { start: number; end: number; worker: string; queued?: number }[], from: number, to: number, now: number): void {
    const b = this.opts.baseline;
    const fresh = w.filter((x) => x.start >= from && x.start < to && x.queued !== undefined);
    const waited = fresh.filter((x) => (x.queued as number) >= POOL_WAIT_MS);
    if (fresh.length >= b.minSamples && waited.length >= 0.5 * fresh.length) {
      const q = waited.map((x) => x.queued as number).sort((a, c) => a - c);
      const open = Math.max(
        ...fresh.map((x) => w.filter((y) => y.worker.split('/')[0] === x.worker.split('/')[0] && y.start <= x.start && y.end > x.start).length),
      );
      this.raise(
        'pool_saturated',
        service,
        service,
        `${service}: ${waited.length} of ${fresh.length} new connections in the last ${Math.round((to - from) / 1000)} s waited after their accept for a free greenthread (median ${round(q[Math.floor(q.length / 2)] as number)} ms, at most ${round(q[q.length - 1] as number)} ms); up to ${open} requests were open at once in one process — its pool`,
        now,
        [],
      );
    } else this.close('pool_saturated', service, service); // fewer waited, or no new connection waits at all
  }

  // ---- the threads that serve requests, sampled (hub.ts) -------------------------------------------

  /** how often the module samples the worker threads (ms) */
  sampleMs = 250;
  private readonly threadSamples = new Map<string, ThreadSample[]>();
  /**
   * Per service: samples that found a request's thread while its SQL was in flight, asleep in
   * epoll (an eventlet hub: the greenthread waits for its answer in the hub) or in the read itself
   * (a thread per request).
   */
  private readonly waitVotes = new Map<string, { loop: number; direct: number }>();

  /** each worker thread's last answer (pid/tid → …), for choosing the threads to sample */
  private readonly lastServed = new Map<string, { service: string; pid: number; tid: number; end: number }>();

  /** The worker threads that answered requests since `since`: the ones to sample. */
  workers(since: number): { service: string; pid: number; tid: number }[] {
    const out: { service: string; pid: number; tid: number }[] = [];
    for (const [k, w] of this.lastServed) {
      if (w.end < since - 600_000) this.lastServed.delete(k);
      else if (w.end >= since) out.push({ service: w.service, pid: w.pid, tid: w.tid });
    }
    return out;
  }

  onThreadSample(s: ThreadSample): void {
    const k = `${s.pid}/${s.tid}`;
    let l = this.threadSamples.get(k);
    if (!l) {
      l = [];
      this.threadSamples.set(k, l);
    }
    l.push(s);
    while (l.length && (l[0] as ThreadSample).ts < s.ts - 120_000) l.shift();
    if (l.length > 1000) l.splice(0, l.length - 1000);
  }

  /** Greenthreaded: requests seen sharing one thread, or its SQL waited for in epoll, not in the read. */
  greenthreaded(service: string): boolean {
    if (this.concurrent(service)) return true;
    const v = this.waitVotes.get(service);
    return v !== undefined && v.loop >= 3 && v.loop >= 4 * v.direct;
  }

  private vote(service: string, pid: number, tid: number, start: number, end: number, mine: Child[]): void {
    // the few samples of the request's window (up to 1000 are kept per thread)
    const l = (this.threadSamples.get(`${pid}/${tid}`) ?? []).filter((x) => x.ts > start && x.ts < end);
    if (!l.length) return;
    let v = this.waitVotes.get(service);
    for (const c of mine) {
      if (c.kind !== 'sql' || c.tid !== tid || c.end - c.start < 2) continue;
      for (const x of l) {
        if (x.ts <= c.start || x.ts >= c.end || x.state !== 'S') continue;
        v ??= { loop: 0, direct: 0 };
        if (x.syscall.startsWith('epoll')) v.loop++;
        else if (/^(read|recvfrom|recvmsg|readv)$/.test(x.syscall)) v.direct++;
      }
    }
    if (v) {
      // recent behaviour counts: halve both now and then
      if (v.loop + v.direct > 200) {
        v.loop = Math.floor(v.loop / 2);
        v.direct = Math.floor(v.direct / 2);
      }
      this.waitVotes.set(service, v);
    }
  }

  /**
   * The longest run (3 samples at least, none more than 4 intervals apart: the timer can be late
   * on a busy agent) that found the thread asleep in one system
   * call other than an event loop's wait, overlapping [from, to]; its ms is the overlap. Lock
   * waits (futex) are left out: the GIL passes between a process's threads through one all the time.
   */
  private hubRun(pid: number, tid: number, from: number, to: number): HubBlock | undefined {
    const l = this.threadSamples.get(`${pid}/${tid}`) ?? [];
    let best: HubBlock | undefined;
    let cur: { first: ThreadSample; last: ThreadSample; n: number } | undefined;
    const flush = () => {
      if (cur && cur.n >= 3) {
        // the block ends between its last sample and the next; the worker reads what queued at once
        const end = cur.last.ts + this.sampleMs;
        const ms = Math.max(0, Math.min(end, to) - Math.max(cur.first.ts, from));
        const queued = Math.max(0, Math.min(end, from) - cur.first.ts);
        const touches = end >= from - this.sampleMs && cur.first.ts <= to;
        if (touches && ms + queued > 0 && (!best || ms + queued > best.ms + best.queued_ms))
          best = {
            ms: round(ms),
            queued_ms: round(queued),
            syscall: cur.first.syscall,
            ...(cur.first.target ? { target: cur.first.target } : {}),
            samples: cur.n,
            tid,
          };
      }
      cur = undefined;
    };
    for (const s of l) {
      const asleep = (s.state === 'S' || s.state === 'D') && s.nr >= 0 && !s.loopWait && s.syscall !== 'futex';
      if (asleep && cur && cur.first.nr === s.nr && cur.first.fd === s.fd && s.ts - cur.last.ts <= 4 * this.sampleMs) {
        cur.last = s;
        cur.n++;
        continue;
      }
      flush();
      if (asleep) cur = { first: s, last: s, n: 1 };
    }
    flush();
    return best;
  }

  private checkHubs(now: number): void {
    const quiet = now - this.opts.settleMs - this.opts.baseline.recentSeconds * 1000;
    for (const f of this.findings.values()) if (f.kind === 'hub_blocked' && f.open && f.last_seen < quiet) f.open = false;
    for (const [k, l] of this.threadSamples) if (!l.length || (l.at(-1) as ThreadSample).ts < now - 120_000) this.threadSamples.delete(k);
  }

  private check(now: number): void {
    this.checkPools(now);
    this.checkHubs(now);
    const nowSlot = Math.floor(now / this.slotMs);
    const b = this.opts.baseline;
    // a finding's slots stay out of its series' baseline
    const raiseOn = (series: Series, ...args: Parameters<PerfEngine['raise']>): void => {
      series.markAnomalous(nowSlot - 1, nowSlot + 1);
      this.raise(...args);
    };
    const enough = (series: Series): boolean => series.merged(nowSlot - 1, nowSlot + 1).n >= b.minSamples;
    for (const s of this.routeSeries.values()) {
      // waiting for a CPU, against the route's own healthy history
      const recent = s.merged(nowSlot - 1, nowSlot + 1);
      const base = s.merged(nowSlot - this.keepSlots, nowSlot - 1, true);
      const rq = recent.n ? recent.runq / recent.n : 0;
      const bq = base.n ? base.runq / base.n : 0;
      if (recent.n >= b.minSamples && base.n >= 4 * b.minSamples && rq > bq * b.factor && rq - bq >= b.minDeltaMs)
        raiseOn(
          s,
          'cpu_starvation',
          s.service,
          s.subject,
          `${s.service} ${s.subject}: its worker waits ${round(rq)} ms per request for a CPU (baseline ${round(bq)} ms)`,
          now,
          [],
          { baseline_ms: round(bq), recent_ms: round(rq) },
        );
      else if (recent.n >= b.minSamples) this.close('cpu_starvation', s.service, s.subject);
      const m = this.moved(s, nowSlot);
      if (!m) {
        if (recent.n >= b.minSamples) this.close('route_regression', s.service, s.subject);
        continue;
      }
      const per = (x: Slot, f: (x: Slot) => number): number => (x.n ? f(x) / x.n : 0);
      const parts: { component: Component; subject?: string; baseline_ms: number; recent_ms: number }[] = [
        { component: 'sql', baseline_ms: per(m.base, (x) => x.sql), recent_ms: per(m.recent, (x) => x.sql) },
        { component: 'cpu', baseline_ms: per(m.base, (x) => x.cpu), recent_ms: per(m.recent, (x) => x.cpu) },
        { component: 'cpu_wait', baseline_ms: per(m.base, (x) => x.runq), recent_ms: per(m.recent, (x) => x.runq) },
        { component: 'blocked', baseline_ms: per(m.base, (x) => x.blocked), recent_ms: per(m.recent, (x) => x.blocked) },
      ];
      for (const peer of new Set([...m.base.calls.keys(), ...m.recent.calls.keys()]))
        parts.push({
          component: 'dependency',
          subject: peer,
          baseline_ms: per(m.base, (x) => x.calls.get(peer) ?? 0),
          recent_ms: per(m.recent, (x) => x.calls.get(peer) ?? 0),
        });
      const moved = parts.reduce((x, c) => (c.recent_ms - c.baseline_ms > x.recent_ms - x.baseline_ms ? c : x));
      moved.baseline_ms = round(moved.baseline_ms);
      moved.recent_ms = round(moved.recent_ms);
      raiseOn(
        s,
        'route_regression',
        s.service,
        s.subject,
        `${s.service} ${s.subject}: p95 ${round(m.rp95)} ms, baseline ${round(m.bp95)} ms; ${moved.component}${moved.subject ? ` (${moved.subject})` : ''} grew ${moved.baseline_ms} → ${moved.recent_ms} ms per request`,
        now,
        [],
        { baseline_ms: round(m.bp95), recent_ms: round(m.rp95), moved },
      );
    }
    for (const f of this.findings.values()) if (f.kind === 'n_plus_one' && f.open && now - f.last_seen > 6 * this.slotMs) f.open = false;
    for (const s of this.sqlSeries.values()) {
      const m = this.moved(s, nowSlot);
      if (m)
        raiseOn(s, 'slow_sql', s.service, s.subject, `${s.service}: p95 ${round(m.rp95)} ms, baseline ${round(m.bp95)} ms: ${s.subject}`, now, [], {
          baseline_ms: round(m.bp95),
          recent_ms: round(m.rp95),
        });
      else if (enough(s)) this.close('slow_sql', s.service, s.subject);
    }
    for (const s of this.peerSeries.values()) {
      const m = this.moved(s, nowSlot);
      const peer = this.listeners.get(s.subject) ?? this.peerNames.get(s.subject);
      if (m)
        raiseOn(
          s,
          'slow_dependency',
          s.service,
          s.subject,
          `${s.service} → ${peer ? `${peer} (${s.subject})` : s.subject}: p95 ${round(m.rp95)} ms, baseline ${round(m.bp95)} ms`,
          now,
          [],
          { baseline_ms: round(m.bp95), recent_ms: round(m.rp95) },
        );
      else if (enough(s)) this.close('slow_dependency', s.service, s.subject);
    }
  }

  /** The request and everything it caused, as a tree. */
  tree(key: string, depth = 0): (Explained & { children: unknown[] }) | undefined {
    // by request id: the first to begin of the requests that answered with it (the caller of the rest)
    // (a key may be a request id too: the first request to answer with it was keyed so)
    const first = depth ? undefined : this.byRequestId.get(key)?.filter((e) => this.requests.has(e.key));
    const r = first?.length ? this.requests.get(first.reduce((a, b) => (b.ts < a.ts ? b : a)).key) : this.requests.get(key);
    if (!r) return undefined;
    const children =
      depth > 8
        ? []
        : r.calls
            .filter((c) => c.child)
            .map((c) => this.tree(c.child as string, depth + 1))
            .filter(Boolean);
    return { ...r, children: children as unknown[] };
  }

  /** Per service and route: rate, errors and quantiles over the last `windowMs`. */
  top(windowMs: number): {
    service: string;
    route: string;
    rate: number;
    errors: number;
    p50_ms?: number;
    p99_ms?: number;
    sql_per_request: number;
    total: number;
  }[] {
    const now = this.now();
    const nowSlot = Math.floor(now / this.slotMs);
    const slots = Math.max(1, Math.ceil(windowMs / this.slotMs));
    const out = [];
    for (const s of this.routeSeries.values()) {
      const w = s.merged(nowSlot - slots + 1, nowSlot + 1);
      if (!w.n) continue;
      // the current slot is partly over: the span is what the merged slots cover so far
      const span = Math.max(1, (now - (nowSlot - slots + 1) * this.slotMs) / 1000);
      out.push({
        service: s.service,
        route: s.subject,
        rate: round(w.n / span),
        errors: w.errors,
        ...(w.hist.quantile(0.5) !== undefined ? { p50_ms: round(w.hist.quantile(0.5) as number) } : {}),
        ...(w.hist.quantile(0.99) !== undefined ? { p99_ms: round(w.hist.quantile(0.99) as number) } : {}),
        sql_per_request: round(w.sqlCount / w.n),
        total: s.total,
      });
    }
    return out.sort((a, b) => b.rate - a.rate);
  }

  /** Explained requests, slowest first. */
  slow(f: { service?: string; since?: number; minMs?: number; limit?: number }): Explained[] {
    const out: Explained[] = [];
    for (const r of this.requests.values()) {
      if (f.service && r.service !== f.service) continue;
      if (f.since !== undefined && r.ts < f.since) continue;
      if (f.minMs !== undefined && r.duration_ms < f.minMs) continue;
      out.push(r);
    }
    return out.sort((a, b) => b.duration_ms - a.duration_ms).slice(0, f.limit ?? 50);
  }

  /** The fingerprints with their counts, mean and p99, slowest (by p99) first. */
  fingerprints(service?: string, limit = 50): { service: string; fingerprint: string; id: string; count: number; mean_ms: number; p99_ms: number }[] {
    const out = [];
    const nowSlot = Math.floor(this.now() / this.slotMs);
    for (const s of this.sqlSeries.values()) {
      if (service && s.service !== service) continue;
      const w = s.merged(nowSlot - this.keepSlots, nowSlot + 1);
      if (!w.n) continue;
      out.push({
        service: s.service,
        fingerprint: s.subject,
        id: fingerprintId(s.subject),
        count: w.n,
        mean_ms: round(w.hist.mean as number),
        p99_ms: round(w.hist.quantile(0.99) as number),
      });
    }
    return out.sort((a, b) => b.p99_ms - a.p99_ms).slice(0, limit);
  }

  stats(): PerfStats {
    let open = 0;
    for (const f of this.findings.values()) if (f.open) open++;
    const r = this.routes.stats();
    return {
      requests: this.st.requests,
      explained: this.st.explained,
      evicted: this.st.evicted,
      children_dropped: this.st.childrenDropped,
      pending: this.pending.length,
      pending_dropped: this.st.pendingDropped,
      stitched: this.st.stitched,
      shared_thread: this.st.shared,
      findings_open: open,
      routes: r.routes,
      route_overflow: r.overflow,
      fingerprint_overflow: this.st.fpOverflow,
      threads_sampled: this.threadSamples.size,
      greenthreaded: [...new Set([...this.concurrentThreads.keys(), ...this.waitVotes.keys()])].filter((x) => this.greenthreaded(x)).sort(),
    };
  }
}
