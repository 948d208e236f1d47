// An OVSDB client (RFC 7047) with the extensions ovsdb-server offers and OVN
// relies on (ovsdb-server(7)): monitor_cond_since + update3 (resume from the
// last transaction after a reconnect), monitor_cond + update2 and plain
// monitor as fallbacks, conditional monitoring (monitor_cond_change),
// transact, and echo both ways as a keepalive.
//
// It keeps a replica of the monitored tables, checked against the schema.
// An update is decoded whole before any of it is applied: a malformed one is
// logged with the offending part, counted, and answered by a fresh full
// resync, so the replica is never left half-changed. Connections are tcp:,
// unix: and ssl: (key, certificate and CA files, as ovn-controller takes
// them), several remotes may be given comma-separated, and a dropped
// connection is retried with exponential backoff while the replica — and
// everything built from it — stays as it was.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Logger } from '../log.js';
import { type FramingError, JsonStreamSplitter } from './jsonrpc.js';
import { applyDiff, type DatabaseSchema, decodeDatum, defaultValue, OvsdbDataError, parseSchema, type Row, type TableSchema, type Value } from './schema.js';

export const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

/** A condition as ovsdb-server takes it: [column, function, wire value], or a boolean. */
export type Condition = [string, string, unknown] | boolean;

export interface TableMonitor {
  /** Columns to replicate (default: all but the ones starting with "_"). */
  columns?: string[];
  /** Rows to replicate (default: all). Conditions are ORed, as ovsdb-server does. */
  where?: Condition[];
}

export interface SslFiles {
  privateKey: string;
  certificate: string;
  caCert: string;
}

export interface OvsdbOptions {
  /** "tcp:host:port", "ssl:host:port", "unix:/path"; several separated by commas. */
  remote: string;
  database: string;
  tables: Record<string, TableMonitor>;
  ssl?: SslFiles;
  log: Logger;
  /** Send an echo after this long without traffic; give up after twice that. Default 5 s. */
  probeIntervalMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Largest message accepted (the initial dump of a big database is one message). Default 512 MiB. */
  maxMessageBytes?: number;
  /** Requests in flight at most (transactions and monitor calls). Default 256. */
  maxPendingRequests?: number;
  requestTimeoutMs?: number;
}

export interface RowChange {
  table: string;
  uuid: string;
  old?: Row;
  new?: Row;
}

export type ClientState = 'idle' | 'connecting' | 'monitoring' | 'backoff' | 'stopped';

export interface OvsdbStats {
  state: ClientState;
  remote: string | undefined;
  method: string | undefined;
  connects: number;
  disconnects: number;
  /** Reconnects that resumed from the last transaction id (no full dump). */
  resumed: number;
  fullSyncs: number;
  updates: number;
  /** Messages or updates that could not be used (logged, then resynced). */
  malformed: number;
  rejectedRequests: number;
  lastTxnId: string;
  lastError: string | undefined;
  rows: Record<string, number>;
}

export class OvsdbError extends Error {
  constructor(
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'OvsdbError';
  }
}

interface Pending {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

type Method = 'monitor_cond_since' | 'monitor_cond' | 'monitor';

export function parseRemote(remote: string): { kind: 'tcp' | 'ssl'; host: string; port: number } | { kind: 'unix'; path: string } {
  const m = /^(tcp|ssl):(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(remote);
  if (m) {
    const port = Number(m[4]);
    if (port < 1 || port > 65535) throw new OvsdbError(`remote ${remote}: port out of range`);
    return { kind: m[1] as 'tcp' | 'ssl', host: (m[2] ?? m[3]) as string, port };
  }
  if (remote.startsWith('unix:') && remote.length > 5) return { kind: 'unix', path: remote.slice(5) };
  throw new OvsdbError(`remote ${JSON.stringify(remote)}: expected tcp:HOST:PORT, ssl:HOST:PORT or unix:PATH`);
}

/**
 * Events: 'change' (changes: RowChange[], info: { initial: boolean }) after
 * each applied update; 'synced' ({ full: boolean }) once the replica matches
 * the server after a (re)connect; 'state' (ClientState).
 */
export class OvsdbClient extends EventEmitter {
  readonly remotes: string[];
  readonly tables = new Map<string, Map<string, Row>>();
  schema: DatabaseSchema | undefined;
  private sock: Socket | undefined;
  private splitter: JsonStreamSplitter;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private remoteIndex = -1;
  private backoff: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private lastRx = 0;
  /** when the unanswered echo went out, if one is outstanding */
  private probeSentAt: number | undefined;
  private monitorId = 0;
  /** monitor ids whose updates belong to the replica (the previous one stays valid across monitor_cond_change) */
  private liveIds = new Set<string>();
  /** updates that arrived while a monitor request was in flight, applied after its reply */
  private queued: [string, unknown][] | undefined;
  private method: Method | undefined;
  private synced = false;
  private readonly where = new Map<string, Condition[] | undefined>();
  private s: OvsdbStats;
  private readonly log: Logger;
  private readonly probeMs: number;
  /** why we closed the connection ourselves, reported instead of "closed" */
  private closeReason: string | undefined;

  constructor(private readonly opts: OvsdbOptions) {
    super();
    this.remotes = opts.remote
      .split(',')
      .map((r) => r.trim())
      .filter(Boolean);
    if (this.remotes.length === 0) throw new OvsdbError('no OVSDB remote given');
    for (const r of this.remotes) parseRemote(r);
    if (this.remotes.some((r) => r.startsWith('ssl:')) && !opts.ssl)
      throw new OvsdbError('an ssl: remote needs the private key, certificate and CA certificate files');
    this.log = opts.log.child({ ovsdb: opts.database });
    this.backoff = opts.backoffMinMs ?? 250;
    this.probeMs = opts.probeIntervalMs ?? 5000;
    this.splitter = new JsonStreamSplitter(opts.maxMessageBytes ?? 512 * 1024 * 1024);
    for (const [t, m] of Object.entries(opts.tables)) this.where.set(t, m.where);
    this.s = {
      state: 'idle',
      remote: undefined,
      method: undefined,
      connects: 0,
      disconnects: 0,
      resumed: 0,
      fullSyncs: 0,
      updates: 0,
      malformed: 0,
      rejectedRequests: 0,
      lastTxnId: ZERO_UUID,
      lastError: undefined,
      rows: {},
    };
  }

  /** Start connecting; the client keeps reconnecting until stop(). */
  start(): this {
    if (this.s.state === 'idle') this.connectNext();
    return this;
  }

  /** Resolves once the replica is in step with the server (or rejects after timeoutMs). */
  waitSynced(timeoutMs = 10_000): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('synced', done);
        reject(
          new OvsdbError(`no sync with ${this.opts.database} at ${this.opts.remote} within ${timeoutMs} ms${this.s.lastError ? `: ${this.s.lastError}` : ''}`),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.once('synced', done);
    });
  }

  isSynced(): boolean {
    return this.synced;
  }

  stats(): OvsdbStats {
    const rows: Record<string, number> = {};
    for (const [t, m] of this.tables) rows[t] = m.size;
    return { ...this.s, rows };
  }

  rows(table: string): IterableIterator<Row> {
    return (this.tables.get(table) ?? new Map<string, Row>()).values();
  }

  get(table: string, uuid: string): Row | undefined {
    return this.tables.get(table)?.get(uuid);
  }

  async stop(): Promise<void> {
    this.setState('stopped');
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.failPending(new OvsdbError('client stopped'));
    const s = this.sock;
    this.sock = undefined;
    if (s) {
      await new Promise<void>((resolve) => {
        s.once('close', () => resolve());
        s.destroy();
      });
    }
  }

  /** Run a transaction (RFC 7047 §4.1.3); resolves with the operation results or rejects with the first error. */
  async transact(ops: unknown[]): Promise<unknown[]> {
    const res = (await this.request('transact', [this.opts.database, ...ops])) as unknown[];
    if (!Array.isArray(res)) throw new OvsdbError('transact: malformed reply', res);
    const bad = res.findIndex((r) => r && typeof r === 'object' && 'error' in (r as object) && (r as { error: unknown }).error);
    if (bad >= 0 || res.length > ops.length) {
      const r = (res[bad >= 0 ? bad : res.length - 1] ?? {}) as { error?: string; details?: string };
      throw new OvsdbError(`transact: ${bad >= 0 ? `operation ${bad}` : 'commit'} failed: ${r.error}${r.details ? ` (${r.details})` : ''}`, r);
    }
    return res;
  }

  /** Change which rows of a table are replicated (monitor_cond_change); rows leaving the condition are deleted from the replica. */
  async setConditions(table: string, where: Condition[] | undefined): Promise<void> {
    if (!(table in this.opts.tables)) throw new OvsdbError(`table ${table} is not monitored`);
    this.where.set(table, where);
    if (!this.sock || !this.synced || this.method === 'monitor') {
      // applied on the next (re)connect; plain monitor has no conditions, so resubscribe
      if (this.sock && this.method === 'monitor') this.drop('resync: conditions changed (plain monitor has none: resubscribing)');
      return;
    }
    const old = this.monitorKey();
    this.monitorId++;
    this.liveIds.add(this.monitorKey());
    await this.request('monitor_cond_change', [old, this.monitorKey(), { [table]: [{ where: where ?? [true] }] }]);
  }

  // --- connection ---

  private setState(s: ClientState): void {
    if (this.s.state === 'stopped' && s !== 'stopped') return;
    this.s.state = s;
    this.emit('state', s);
  }

  private connectNext(): void {
    if (this.s.state === 'stopped') return;
    this.remoteIndex = (this.remoteIndex + 1) % this.remotes.length;
    const remote = this.remotes[this.remoteIndex] as string;
    this.s.remote = remote;
    this.setState('connecting');
    const r = parseRemote(remote);
    let sock: Socket;
    try {
      if (r.kind === 'unix') sock = netConnect({ path: r.path });
      else if (r.kind === 'tcp') sock = netConnect({ host: r.host, port: r.port });
      else {
        const ssl = this.opts.ssl as SslFiles;
        sock = tlsConnect({
          host: r.host,
          port: r.port,
          key: readFileSync(ssl.privateKey),
          cert: readFileSync(ssl.certificate),
          ca: readFileSync(ssl.caCert),
          // as OVS: the peer must be signed by the CA; host names are not checked
          checkServerIdentity: () => undefined,
        });
      }
    } catch (err) {
      this.onClosed(`cannot connect to ${remote}: ${(err as Error).message}`);
      return;
    }
    this.sock = sock;
    this.splitter.reset();
    sock.setNoDelay?.(true);
    const ready = r.kind === 'ssl' ? 'secureConnect' : 'connect';
    sock.once(ready, () => void this.onConnected(remote));
    sock.on('data', (d: Buffer) => this.onData(d));
    let why = '';
    sock.on('error', (err) => {
      why = err.message;
    });
    sock.once('close', () => {
      if (this.sock === sock) this.onClosed(this.closeReason ?? (why || 'connection closed by the server'));
    });
  }

  private onClosed(why: string): void {
    this.sock = undefined;
    this.closeReason = undefined;
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.failPending(new OvsdbError(`connection lost: ${why}`));
    const wasSynced = this.synced;
    this.synced = false;
    this.s.lastError = why;
    if (this.s.state === 'stopped') return;
    this.s.disconnects++;
    // The replica is kept: consumers go on with what they know until the resync.
    // a resync we asked for reconnects at once; anything else backs off
    const deliberate = why.startsWith('resync:');
    (wasSynced && !deliberate ? this.log.warn : this.log.info).call(this.log, 'ovsdb connection lost; keeping the replica, retrying', {
      remote: this.s.remote,
      error: why,
      retryMs: deliberate ? 0 : this.backoff,
    });
    this.setState('backoff');
    this.retryTimer = setTimeout(() => this.connectNext(), deliberate ? 0 : this.backoff);
    this.retryTimer.unref?.();
    if (!deliberate) this.backoff = Math.min(this.backoff * 2, this.opts.backoffMaxMs ?? 8000);
  }

  private async onConnected(remote: string): Promise<void> {
    this.s.connects++;
    this.lastRx = Date.now();
    this.probeSentAt = undefined;
    this.probeTimer = setInterval(() => this.probe(), this.probeMs);
    this.probeTimer.unref?.();
    try {
      if (!this.schema) this.schema = parseSchema(await this.request('get_schema', [this.opts.database]));
      this.checkMonitoredColumns(this.schema);
      await this.monitor();
      this.backoff = this.opts.backoffMinMs ?? 250;
    } catch (err) {
      const msg = (err as Error).message;
      this.s.lastError = msg;
      this.log.error('ovsdb monitor failed', { remote, error: msg });
      if (err instanceof OvsdbDataError) this.s.malformed++;
      this.drop(msg);
    }
  }

  private checkMonitoredColumns(schema: DatabaseSchema): void {
    for (const [t, m] of Object.entries(this.opts.tables)) {
      const ts = schema.tables.get(t);
      if (!ts) throw new OvsdbError(`database ${schema.name} ${schema.version} has no table ${t}`);
      for (const c of m.columns ?? []) if (!ts.columns.has(c)) throw new OvsdbError(`database ${schema.name} ${schema.version}: table ${t} has no column ${c}`);
    }
  }

  private probe(): void {
    if (!this.sock) return;
    const now = Date.now();
    if (this.probeSentAt !== undefined) {
      // the probe went out a whole interval ago: anything heard since then answers it
      if (this.lastRx >= this.probeSentAt) this.probeSentAt = undefined;
      else {
        const idle = now - this.lastRx;
        this.log.warn('ovsdb inactivity probe unanswered: reconnecting', { remote: this.s.remote, idleMs: idle });
        this.drop(`inactivity probe unanswered after ${idle} ms`);
        return;
      }
    }
    if (now - this.lastRx < this.probeMs) return;
    this.probeSentAt = now;
    this.request('echo', ['stackbpf']).catch(() => undefined);
  }

  private monitorKey(): string {
    return `stackbpf-${this.monitorId}`;
  }

  private monitorRequests(): Record<string, unknown> {
    const schema = this.schema as DatabaseSchema;
    const out: Record<string, unknown> = {};
    for (const [t, m] of Object.entries(this.opts.tables)) {
      const ts = schema.tables.get(t) as TableSchema;
      const columns = m.columns ?? [...ts.columns.keys()].filter((c) => !c.startsWith('_'));
      const req: Record<string, unknown> = { columns };
      const where = this.where.get(t);
      if (where && this.method !== 'monitor') req.where = where;
      out[t] = this.method === 'monitor' ? req : [req];
    }
    return out;
  }

  private async monitor(): Promise<void> {
    this.queued = [];
    try {
      await this.monitorOnce();
    } finally {
      const q = this.queued;
      this.queued = undefined;
      if (this.synced) for (const [method, params] of q) this.onRequest(method, params, null);
    }
  }

  private async monitorOnce(): Promise<void> {
    this.monitorId++;
    this.liveIds = new Set([this.monitorKey()]);
    const methods: Method[] = this.method ? [this.method] : ['monitor_cond_since', 'monitor_cond', 'monitor'];
    for (const m of methods) {
      this.method = m;
      const params: unknown[] = [this.opts.database, this.monitorKey(), this.monitorRequests()];
      const resume = m === 'monitor_cond_since' && this.s.lastTxnId !== ZERO_UUID && this.hasReplica();
      if (m === 'monitor_cond_since') params.push(resume ? this.s.lastTxnId : ZERO_UUID);
      let reply: unknown;
      try {
        reply = await this.request(m, params);
      } catch (err) {
        if (err instanceof OvsdbError && /unknown method/i.test(err.message) && methods.length > 1) continue;
        throw err;
      }
      this.s.method = m;
      if (m === 'monitor_cond_since') {
        if (!Array.isArray(reply) || reply.length !== 3 || typeof reply[0] !== 'boolean' || typeof reply[1] !== 'string')
          throw new OvsdbDataError('monitor_cond_since reply', `expected [found, last-txn-id, updates], got ${JSON.stringify(reply)?.slice(0, 120)}`);
        const [found, txn, updates] = reply as [boolean, string, unknown];
        if (found && resume) {
          this.applyUpdate(updates, 2, false);
          this.s.resumed++;
        } else this.replaceAll(updates, 2);
        this.s.lastTxnId = txn;
        this.markSynced(!(found && resume));
      } else {
        this.replaceAll(reply, m === 'monitor_cond' ? 2 : 1);
        this.markSynced(true);
      }
      return;
    }
  }

  private hasReplica(): boolean {
    return this.tables.size > 0;
  }

  private markSynced(full: boolean): void {
    if (full) this.s.fullSyncs++;
    this.synced = true;
    this.setState('monitoring');
    this.log.info('ovsdb replica in sync', { remote: this.s.remote, method: this.s.method, full, rows: this.stats().rows });
    this.emit('synced', { full });
  }

  /**
   * Drop the connection and start over with a full copy (after a bad
   * update, or when asked); the replica is kept until the copy replaces it.
   */
  resync(why: string): void {
    this.s.lastTxnId = ZERO_UUID;
    this.log.info('ovsdb replica resync requested', { why });
    this.drop(`resync: ${why}`);
  }

  private drop(reason: string): void {
    if (!this.sock) return;
    this.closeReason ??= reason;
    this.sock.destroy();
  }

  // --- incoming ---

  private onData(d: Buffer): void {
    this.lastRx = Date.now();
    let texts: string[];
    try {
      texts = this.splitter.push(d);
    } catch (err) {
      const fe = err as FramingError;
      for (const t of fe.complete ?? []) this.onMessage(t);
      this.s.malformed++;
      this.log.error('ovsdb stream unusable: reconnecting', { remote: this.s.remote, error: fe.message });
      this.drop(fe.message);
      return;
    }
    for (const t of texts) this.onMessage(t);
  }

  private onMessage(text: string): void {
    let msg: { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch (err) {
      this.s.malformed++;
      this.log.error('ovsdb message is not JSON: ignored', { error: (err as Error).message, message: text.slice(0, 200) });
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.s.malformed++;
      this.log.error('ovsdb message is not an object: ignored', { message: text.slice(0, 200) });
      return;
    }
    if (typeof msg.method === 'string') {
      this.onRequest(msg.method, msg.params, msg.id);
      return;
    }
    if (typeof msg.id === 'number' && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id) as Pending;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error !== null && msg.error !== undefined) {
        const e = msg.error as { error?: string; details?: string } | string;
        const text = typeof e === 'string' ? e : `${e.error ?? 'error'}${e.details ? `: ${e.details}` : ''}`;
        p.reject(new OvsdbError(`${p.method}: ${text}`, msg.error));
      } else p.resolve(msg.result);
      return;
    }
    this.s.malformed++;
    this.log.warn('ovsdb reply to no request: ignored', { id: msg.id });
  }

  private onRequest(method: string, params: unknown, id: unknown): void {
    if (method === 'echo') {
      this.send({ id, result: params, error: null });
      return;
    }
    if (method === 'update' || method === 'update2' || method === 'update3') {
      if (this.queued) {
        if (this.queued.length >= 100_000) {
          this.resync('too many updates queued behind the monitor reply');
          return;
        }
        this.queued.push([method, params]);
        return;
      }
      if (!this.synced) return;
      const p = params as unknown[];
      if (!Array.isArray(p) || p.length < 2) {
        this.s.malformed++;
        this.log.error('ovsdb update without [monitor-id, updates]: resyncing', { method, params: JSON.stringify(params)?.slice(0, 200) });
        this.resync('malformed update');
        return;
      }
      if (typeof p[0] !== 'string' || !this.liveIds.has(p[0])) return; // from a monitor we replaced
      try {
        if (method === 'update3') {
          if (typeof p[1] !== 'string') throw new OvsdbDataError('update3', 'last-txn-id is not a string');
          this.applyUpdate(p[2], 2, false);
          this.s.lastTxnId = p[1];
        } else this.applyUpdate(p[1], method === 'update2' ? 2 : 1, false);
      } catch (err) {
        this.s.malformed++;
        this.log.error('ovsdb update refused: replica unchanged, resyncing', { method, error: (err as Error).message });
        this.resync((err as Error).message);
      }
      return;
    }
    if (id !== undefined && id !== null) this.send({ id, result: null, error: { error: 'unknown method', details: method } });
  }

  /**
   * Decode a table-updates (1) or table-updates2 (2) object into changes
   * against the current replica, without touching it; throws with the table,
   * row and column of the first thing wrong.
   */
  private decodeUpdate(raw: unknown, version: 1 | 2, base: Map<string, Map<string, Row>>): RowChange[] {
    const schema = this.schema as DatabaseSchema;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new OvsdbDataError('update', 'table updates must be an object');
    const changes: RowChange[] = [];
    for (const [table, rows] of Object.entries(raw as Record<string, unknown>)) {
      const ts = schema.tables.get(table);
      if (!ts || !(table in this.opts.tables)) throw new OvsdbDataError(`update.${table}`, 'table not monitored');
      if (typeof rows !== 'object' || rows === null) throw new OvsdbDataError(`update.${table}`, 'rows must be an object');
      const cur = base.get(table);
      for (const [uuid, ru] of Object.entries(rows as Record<string, unknown>)) {
        const where = `${table} row ${uuid}`;
        if (typeof ru !== 'object' || ru === null) throw new OvsdbDataError(where, 'row update must be an object');
        const old = cur?.get(uuid);
        const u = ru as Record<string, unknown>;
        if (version === 1) {
          if (u.new === undefined || u.new === null) {
            changes.push({ table, uuid, ...(old ? { old } : {}) });
          } else changes.push({ table, uuid, ...(old ? { old } : {}), new: this.fullRow(ts, uuid, u.new, where) });
          continue;
        }
        const kinds = Object.keys(u);
        if (kinds.length !== 1) throw new OvsdbDataError(where, `expected one of initial/insert/modify/delete, got ${kinds.join(',') || 'nothing'}`);
        const kind = kinds[0] as string;
        if (kind === 'initial' || kind === 'insert') changes.push({ table, uuid, ...(old ? { old } : {}), new: this.fullRow(ts, uuid, u[kind], where) });
        else if (kind === 'delete') changes.push({ table, uuid, ...(old ? { old } : {}) });
        else if (kind === 'modify') {
          if (!old) throw new OvsdbDataError(where, 'modify of a row the replica does not have');
          if (typeof u.modify !== 'object' || u.modify === null) throw new OvsdbDataError(where, 'modify must be an object');
          const next: Row = { ...old };
          for (const [col, diff] of Object.entries(u.modify as Record<string, unknown>)) {
            const ct = ts.columns.get(col);
            if (!ct) throw new OvsdbDataError(`${where}.${col}`, 'unknown column');
            next[col] = applyDiff(old[col], diff, ct, `${where}.${col}`);
          }
          changes.push({ table, uuid, old, new: next });
        } else throw new OvsdbDataError(where, `unknown row update kind ${JSON.stringify(kind)}`);
      }
    }
    return changes;
  }

  private fullRow(ts: TableSchema, uuid: string, raw: unknown, where: string): Row {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new OvsdbDataError(where, 'row must be an object');
    const row: Row = { _uuid: uuid };
    const cols = this.opts.tables[ts.name]?.columns ?? [...ts.columns.keys()].filter((c) => !c.startsWith('_'));
    for (const c of cols) row[c] = defaultValue(ts.columns.get(c) as never);
    for (const [col, v] of Object.entries(raw as Record<string, unknown>)) {
      const ct = ts.columns.get(col);
      if (!ct) {
        if (col === '_uuid' || col === '_version') continue;
        throw new OvsdbDataError(`${where}.${col}`, 'unknown column');
      }
      row[col] = decodeDatum(v, ct, `${where}.${col}`) as Value;
    }
    return row;
  }

  private applyUpdate(raw: unknown, version: 1 | 2, initial: boolean): void {
    const changes = this.decodeUpdate(raw, version, this.tables);
    for (const ch of changes) {
      let t = this.tables.get(ch.table);
      if (!t) this.tables.set(ch.table, (t = new Map()));
      if (ch.new) t.set(ch.uuid, ch.new);
      else t.delete(ch.uuid);
    }
    this.s.updates++;
    if (changes.length) this.emit('change', changes, { initial });
  }

  /** A full dump: build the new replica apart, then report only what differs from the old one. */
  private replaceAll(raw: unknown, version: 1 | 2): void {
    const fresh = this.decodeUpdate(raw ?? {}, version, new Map());
    const next = new Map<string, Map<string, Row>>();
    for (const t of Object.keys(this.opts.tables)) next.set(t, new Map());
    for (const ch of fresh) if (ch.new) next.get(ch.table)?.set(ch.uuid, ch.new);
    const changes: RowChange[] = [];
    for (const [t, rows] of next) {
      const old = this.tables.get(t) ?? new Map<string, Row>();
      for (const [uuid, row] of rows) {
        const o = old.get(uuid);
        if (!o || JSON.stringify(o) !== JSON.stringify(row)) changes.push({ table: t, uuid, ...(o ? { old: o } : {}), new: row });
      }
      for (const [uuid, o] of old) if (!rows.has(uuid)) changes.push({ table: t, uuid, old: o });
    }
    const initial = !this.hasReplica();
    this.tables.clear();
    for (const [t, rows] of next) this.tables.set(t, rows);
    this.s.updates++;
    if (changes.length || initial) this.emit('change', changes, { initial });
  }

  // --- outgoing ---

  private send(msg: unknown): void {
    this.sock?.write(JSON.stringify(msg));
  }

  private request(method: string, params: unknown[]): Promise<unknown> {
    if (!this.sock)
      return Promise.reject(new OvsdbError(`${method}: not connected to ${this.opts.database}${this.s.lastError ? ` (${this.s.lastError})` : ''}`));
    if (this.pending.size >= (this.opts.maxPendingRequests ?? 256)) {
      this.s.rejectedRequests++;
      return Promise.reject(new OvsdbError(`${method}: ${this.pending.size} requests already in flight`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new OvsdbError(`${method}: no reply within ${this.opts.requestTimeoutMs ?? 60_000} ms`));
      }, this.opts.requestTimeoutMs ?? 60_000);
      timer.unref?.();
      this.pending.set(id, { method, resolve, reject, timer });
      this.send({ id, method, params });
    });
  }

  private failPending(err: Error): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }
}
