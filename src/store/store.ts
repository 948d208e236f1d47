// Event storage: SQLite (better-sqlite3) as the embedded default.
//
// Events go into segments — one table per time slice (`evc_<n>`, no
// secondary index, so inserts stay cheap) — listed in `segments` with their
// first and last timestamps. A segment's rows are chunks of up to 512 events
// each (src/store/chunk.ts), with the chunk's time range, types and services
// in columns so a query skips chunks it cannot match. Segments written
// before schema 3 hold one row per event (`ev_<n>`) and are still read. Retention drops whole segments (by age, and by
// size when the file is over its budget), which costs the same whatever the
// rate, unlike DELETE of old rows; freed pages are returned to the file
// system by incremental vacuum. Writes are batched into one transaction per
// batch; WAL lets readers (the query API) run while the agent writes.
// Schema versions live in PRAGMA user_version and migrate forward in order.
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { EVENT_TYPES, type EventFilter, type TraceEvent, matches } from '../trace/event.js';
import { CHUNK_EVENTS, decodeChunk, encodeChunk } from './chunk.js';

export interface StoreOptions {
  /** database file, or ':memory:' */
  path: string;
  /** drop events older than this (seconds; default 7 days) */
  maxAgeSeconds?: number;
  /** keep the database under this many bytes (default 1 GiB) */
  maxBytes?: number;
  /** start a new segment after this many seconds (default 600) or rows (default 100,000) */
  segmentSeconds?: number;
  segmentRows?: number;
}

export interface StoreStats {
  path: string;
  schemaVersion: number;
  segments: number;
  rows: number;
  bytes: number;
  oldestTs: number | null;
  newestTs: number | null;
  written: number;
  batches: number;
  droppedSegments: number;
  writeErrors: number;
  /** damaged chunks skipped by queries, and the last one's table, row and fault */
  readErrors: number;
  lastReadError: string | null;
}

export class StoreError extends Error {
  override name = 'StoreError';
}

export const SCHEMA_VERSION = 3;
/** segments.format: one row per event (schema ≤ 2), or chunks of events */
const ROWS = 1;
const CHUNKS = 2;

/** Ordered migrations: MIGRATIONS[i] takes the schema from version i to i + 1. */
const MIGRATIONS: ((db: Database.Database) => void)[] = [
  (db) => {
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE segments (id INTEGER PRIMARY KEY, first_ts REAL NOT NULL, last_ts REAL NOT NULL, rows INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE names (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, UNIQUE (kind, name));
    `);
  },
  // 2: alerts raised by the analytics (src/analytics)
  (db) => {
    db.exec(`
      CREATE TABLE alerts (id TEXT PRIMARY KEY, ts REAL NOT NULL, last_ts REAL NOT NULL, rule TEXT NOT NULL, severity TEXT NOT NULL,
                           service TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL);
      CREATE INDEX alerts_ts ON alerts (ts);
    `);
  },
  // 3: new segments hold chunks of events; older ones keep their rows
  (db) => {
    db.exec(`ALTER TABLE segments ADD COLUMN format INTEGER NOT NULL DEFAULT ${ROWS}`);
  },
];

interface Segment {
  id: number;
  firstTs: number;
  lastTs: number;
  /** events in the segment */
  rows: number;
  format: number;
}

export interface QueryOptions extends EventFilter {
  /** ms since the epoch */
  since?: number;
  until?: number;
  /** newest first; default 100, at most 10,000 */
  limit?: number;
}

/**
 * WHERE terms for a time range (ms since the epoch): rows whose `to` column
 * is not before `since` and whose `from` column is not after `until` (one
 * `ts` column for a row per event; a chunk's first_ts and last_ts).
 */
function timeWhere(q: { since?: number; until?: number }, from = 'ts', to = 'ts'): { where: string[]; args: unknown[] } {
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.since !== undefined) {
    where.push(`${to} >= ?`);
    args.push(q.since);
  }
  if (q.until !== undefined) {
    where.push(`${from} <= ?`);
    args.push(q.until);
  }
  return { where, args };
}

export class EventStore {
  readonly db: Database.Database;
  private readonly opts: Required<StoreOptions>;
  private segments: Segment[] = [];
  private insert: Database.Statement | undefined;
  private readonly nameIds = new Map<string, number>();
  private readonly idNames = new Map<number, string>();
  private readonly writeBatch: (events: TraceEvent[]) => void;
  private lastReadError: string | null = null;
  private counters = { written: 0, batches: 0, droppedSegments: 0, writeErrors: 0, readErrors: 0 };
  private retentionTimer: NodeJS.Timeout | undefined;

  constructor(opts: StoreOptions) {
    this.opts = { maxAgeSeconds: 7 * 86400, maxBytes: 1 << 30, segmentSeconds: 600, segmentRows: 100_000, ...opts };
    if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
    try {
      this.db = new Database(opts.path);
      // events hold command lines, paths and API calls: readable by root only
      if (opts.path !== ':memory:') chmodSync(opts.path, 0o600);
    } catch (err) {
      throw new StoreError(`cannot open the event store ${opts.path}: ${(err as Error).message}`);
    }
    try {
      // auto_vacuum only takes effect before anything is written, WAL's header included
      if ((this.db.pragma('user_version', { simple: true }) as number) === 0) {
        this.db.pragma('auto_vacuum = INCREMENTAL');
        this.db.pragma('page_size = 16384'); // a chunk spans 1–2 pages instead of 5–6: a third less CPU per event than 4 KiB
      }
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('cache_size = -32768'); // 32 MiB of page cache
      this.migrate();
      this.load();
    } catch (err) {
      this.db.close();
      throw err instanceof StoreError ? err : new StoreError(`event store ${opts.path}: ${(err as Error).message}`);
    }
    this.writeBatch = this.db.transaction((events: TraceEvent[]) => this.writeChunks(events));
  }

  private migrate(): void {
    let v = this.db.pragma('user_version', { simple: true }) as number;
    if (v > SCHEMA_VERSION)
      throw new StoreError(
        `event store ${this.opts.path} has schema version ${v}, newer than this stackbpf knows (${SCHEMA_VERSION}): use a newer stackbpf or another state_dir`,
      );
    while (v < SCHEMA_VERSION) {
      const step = MIGRATIONS[v] as (db: Database.Database) => void;
      this.db.transaction(() => {
        step(this.db);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
      v++;
    }
  }

  /**
   * A module's own tables in this database, migrated forward in order:
   * `steps[i]` takes the module's tables from version i to i + 1. Versions are
   * kept per module (table module_schema), so modules add tables without
   * touching the event store's own schema version. Returns the database.
   */
  migrateModule(module: string, steps: ((db: Database.Database) => void)[]): Database.Database {
    this.db.exec('CREATE TABLE IF NOT EXISTS module_schema (module TEXT PRIMARY KEY, version INTEGER NOT NULL)');
    const row = this.db.prepare('SELECT version FROM module_schema WHERE module = ?').get(module) as { version: number } | undefined;
    let v = row?.version ?? 0;
    if (v > steps.length)
      throw new StoreError(`event store ${this.opts.path}: the tables of ${module} are at version ${v}, newer than this stackbpf knows (${steps.length})`);
    while (v < steps.length) {
      const step = steps[v] as (db: Database.Database) => void;
      const next = v + 1;
      this.db.transaction(() => {
        step(this.db);
        this.db
          .prepare('INSERT INTO module_schema (module, version) VALUES (?, ?) ON CONFLICT (module) DO UPDATE SET version = excluded.version')
          .run(module, next);
      })();
      v = next;
    }
    return this.db;
  }

  private load(): void {
    this.segments = (this.db.prepare('SELECT id, first_ts AS firstTs, last_ts AS lastTs, rows, format FROM segments ORDER BY id').all() as Segment[]).map(
      (s) => ({
        ...s,
      }),
    );
    for (const r of this.db.prepare('SELECT id, kind, name FROM names').all() as { id: number; kind: string; name: string }[]) {
      this.nameIds.set(`${r.kind}\0${r.name}`, r.id);
      this.idNames.set(r.id, r.name);
    }
  }

  private table(seg: Segment): string {
    return seg.format === CHUNKS ? `evc_${seg.id}` : `ev_${seg.id}`;
  }

  private current(ts: number): Segment {
    const last = this.segments[this.segments.length - 1];
    if (last && last.format === CHUNKS && last.rows < this.opts.segmentRows && ts - last.firstTs < this.opts.segmentSeconds * 1000) return last;
    if (last) this.db.prepare('UPDATE segments SET last_ts = ?, rows = ? WHERE id = ?').run(last.lastTs, last.rows, last.id);
    const id = Number(this.db.prepare('INSERT INTO segments (first_ts, last_ts, rows, format) VALUES (?, ?, 0, ?)').run(ts, ts, CHUNKS).lastInsertRowid);
    const seg = { id, firstTs: ts, lastTs: ts, rows: 0, format: CHUNKS };
    this.db.exec(
      `CREATE TABLE ${this.table(seg)} (first_ts REAL NOT NULL, last_ts REAL NOT NULL, n INTEGER NOT NULL, types TEXT NOT NULL, services TEXT NOT NULL, body BLOB NOT NULL)`,
    );
    this.segments.push(seg);
    this.insert = undefined;
    return seg;
  }

  private insertFor(seg: Segment): Database.Statement {
    if (!this.insert || this.insertSeg !== seg.id) {
      this.insert = this.db.prepare(`INSERT INTO ${this.table(seg)} VALUES (?, ?, ?, ?, ?, ?)`);
      this.insertSeg = seg.id;
    }
    return this.insert;
  }

  private insertSeg = -1;
  private updateSegment: Database.Statement | undefined;

  // events go in chunks of up to CHUNK_EVENTS (one row each); a chunk never
  // spans two segments
  private writeChunks(events: TraceEvent[]): void {
    let seg = this.current(events[0]?.ts ?? Date.now());
    let start = 0;
    const put = (end: number): void => {
      if (end === start) return;
      const c = encodeChunk(events, start, end);
      this.insertFor(seg).run(c.firstTs, c.lastTs, c.n, c.types, c.services, c.body);
      seg.rows += c.n;
      if (c.lastTs > seg.lastTs) seg.lastTs = c.lastTs;
      start = end;
    };
    for (let i = 0; i < events.length; i++) {
      const ev = events[i] as TraceEvent;
      if (seg.rows + (i - start) >= this.opts.segmentRows || ev.ts - seg.firstTs >= this.opts.segmentSeconds * 1000) {
        put(i);
        seg = this.current(ev.ts);
      }
      if (i + 1 - start === CHUNK_EVENTS) put(i + 1);
    }
    put(events.length);
    this.updateSegment ??= this.db.prepare('UPDATE segments SET last_ts = ?, rows = ? WHERE id = ?');
    this.updateSegment.run(seg.lastTs, seg.rows, seg.id);
  }

  /** Write a batch in one transaction. */
  write(events: TraceEvent[]): void {
    if (events.length === 0) return;
    try {
      this.writeBatch(events);
      this.counters.written += events.length;
      this.counters.batches++;
    } catch (err) {
      this.counters.writeErrors++;
      throw new StoreError(`event store: writing ${events.length} events failed: ${(err as Error).message}`);
    }
  }

  bytes(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    const size = this.db.pragma('page_size', { simple: true }) as number;
    return (pages - free) * size;
  }

  /**
   * Drop segments past the age limit, then the oldest while over the size
   * budget; stop once `budgetMs` is spent (the rest waits for the next
   * call: the agent's event loop must not stall long, or the kernel's ring
   * buffer fills). Returns the segments dropped.
   */
  applyRetention(now = Date.now(), budgetMs = Infinity): number {
    const start = performance.now();
    let dropped = 0;
    const drop = (seg: Segment): void => {
      this.db.transaction(() => {
        this.db.exec(`DROP TABLE IF EXISTS ${this.table(seg)}`);
        this.db.prepare('DELETE FROM segments WHERE id = ?').run(seg.id);
      })();
      this.segments.shift();
      dropped++;
    };
    const cutoff = now - this.opts.maxAgeSeconds * 1000;
    const more = (): boolean => performance.now() - start < budgetMs;
    while (this.segments.length > 1 && (this.segments[0] as Segment).lastTs < cutoff && more()) drop(this.segments[0] as Segment);
    while (this.segments.length > 1 && this.bytes() > this.opts.maxBytes && more()) drop(this.segments[0] as Segment);
    if (dropped > 0) {
      this.db.pragma('incremental_vacuum(256)'); // 1 MiB back to the file system per call: bigger steps stall (~25 ms per 1,000 pages here); freed pages are reused meanwhile
      this.counters.droppedSegments += dropped;
    } else if ((this.db.pragma('freelist_count', { simple: true }) as number) > 0 && more()) {
      this.db.pragma('incremental_vacuum(256)');
    }
    return dropped;
  }

  /** Check retention every `seconds`, spending at most `budgetMs` each time. */
  startRetention(seconds = 0.5, onError?: (err: unknown) => void, budgetMs = 40): void {
    this.retentionTimer = setInterval(() => {
      try {
        this.applyRetention(Date.now(), budgetMs);
      } catch (err) {
        onError?.(err);
      }
    }, seconds * 1000);
    this.retentionTimer.unref();
  }

  /** Insert or update an alert (the whole alert is kept as JSON; key columns for queries). */
  saveAlert(a: { id: string; ts: number; lastTs: number; rule: string; severity: string; service: string; subject: string; state: string }): void {
    this.db
      .prepare(
        'INSERT INTO alerts (id, ts, last_ts, rule, severity, service, subject, state, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET last_ts = excluded.last_ts, state = excluded.state, body = excluded.body',
      )
      .run(a.id, a.ts, a.lastTs, a.rule, a.severity, a.service, a.subject, a.state, JSON.stringify(a));
  }

  /** Alerts, newest first. */
  alerts(q: { since?: number; rule?: string; state?: string; limit?: number } = {}): unknown[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.since !== undefined) {
      where.push('last_ts >= ?');
      args.push(q.since);
    }
    if (q.rule !== undefined) {
      where.push('(rule = ? OR rule LIKE ?)');
      args.push(q.rule, `${q.rule}.%`);
    }
    if (q.state !== undefined) {
      where.push('state = ?');
      args.push(q.state);
    }
    args.push(Math.min(Math.max(q.limit ?? 100, 1), 10_000));
    return (
      this.db.prepare(`SELECT body FROM alerts${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC LIMIT ?`).all(...args) as {
        body: string;
      }[]
    ).map((r) => JSON.parse(r.body) as unknown);
  }

  /** Every stored event in a time range, oldest first (learning reads whole windows). */
  *each(q: { since?: number; until?: number; service?: string } = {}): Generator<TraceEvent> {
    for (const seg of [...this.segments]) {
      if (q.since !== undefined && seg.lastTs < q.since) continue;
      if (q.until !== undefined && seg.firstTs > q.until) break;
      for (const ev of this.scan(seg, q, false)) yield ev;
    }
  }

  /** Newest first, filtered; the query API the analytics features use. */
  query(q: QueryOptions = {}): TraceEvent[] {
    const limit = Math.min(Math.max(q.limit ?? 100, 1), 10_000);
    const out: TraceEvent[] = [];
    for (let i = this.segments.length - 1; i >= 0 && out.length < limit; i--) {
      const seg = this.segments[i] as Segment;
      if (q.since !== undefined && seg.lastTs < q.since) break;
      if (q.until !== undefined && seg.firstTs > q.until) continue;
      for (const ev of this.scan(seg, q, true)) {
        out.push(ev);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  /** The types a filter's `type` stands for (an exact type or a family prefix). */
  private typesOf(type: string): string[] {
    return EVENT_TYPES.filter((t) => t === type || t.startsWith(type.endsWith('.') ? type : `${type}.`));
  }

  /** A segment's events matching `q`, in time order or newest first. */
  private *scan(seg: Segment, q: QueryOptions, newestFirst: boolean): Generator<TraceEvent> {
    if (seg.format === ROWS) {
      yield* this.scanRows(seg, q, newestFirst);
      return;
    }
    const { where, args } = timeWhere(q, 'first_ts', 'last_ts');
    if (q.service !== undefined) {
      where.push('instr(services, ?) > 0');
      args.push(` ${q.service} `);
    }
    if (q.type !== undefined) {
      const types = this.typesOf(q.type);
      if (types.length === 0) return;
      where.push(`(${types.map(() => 'instr(types, ?) > 0').join(' OR ')})`);
      args.push(...types.map((t) => ` ${t} `));
    }
    const sql = `SELECT rowid, body FROM ${this.table(seg)}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid${newestFirst ? ' DESC' : ''}`;
    const filter: EventFilter = { service: q.service, type: q.type, pid: q.pid, pathPrefix: q.pathPrefix };
    for (const row of this.db.prepare(sql).iterate(...args) as Iterable<{ rowid: number; body: Buffer }>) {
      let events: TraceEvent[];
      try {
        events = decodeChunk(row.body);
      } catch (err) {
        this.counters.readErrors++;
        this.lastReadError = `${this.table(seg)} chunk ${row.rowid} skipped: ${(err as Error).message}`;
        continue;
      }
      for (let k = 0; k < events.length; k++) {
        const ev = events[newestFirst ? events.length - 1 - k : k] as TraceEvent;
        if (q.since !== undefined && ev.ts < q.since) continue;
        if (q.until !== undefined && ev.ts > q.until) continue;
        if (matches(ev, filter)) yield ev;
      }
    }
  }

  /** A segment written before schema 3: one row per event. */
  private *scanRows(seg: Segment, q: QueryOptions, newestFirst: boolean): Generator<TraceEvent> {
    const { where, args } = timeWhere(q);
    if (q.service !== undefined) {
      const id = this.nameIds.get(`service\0${q.service}`);
      if (id === undefined) return;
      where.push('service = ?');
      args.push(id);
    }
    if (q.type !== undefined) {
      const ids = this.typesOf(q.type)
        .map((t) => this.nameIds.get(`type\0${t}`))
        .filter((x): x is number => x !== undefined);
      if (ids.length === 0) return;
      where.push(`type IN (${ids.join(',')})`);
    }
    if (q.pid !== undefined) {
      where.push('(pid = ? OR ppid = ?)');
      args.push(q.pid, q.pid);
    }
    const sql = `SELECT * FROM ${this.table(seg)}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid${newestFirst ? ' DESC' : ''}`;
    for (const row of this.db.prepare(sql).iterate(...args) as Iterable<Record<string, unknown>>) {
      const ev = this.rowToEvent(row);
      if (q.pathPrefix !== undefined && !matches(ev, { pathPrefix: q.pathPrefix })) continue;
      yield ev;
    }
  }

  private rowToEvent(row: Record<string, unknown>): TraceEvent {
    const ev: TraceEvent = {
      ts: row.ts as number,
      type: this.idNames.get(row.type as number) as TraceEvent['type'],
      service: this.idNames.get(row.service as number) ?? '',
      pid: row.pid as number,
      tid: row.tid as number,
      ppid: row.ppid as number,
      uid: row.uid as number,
      comm: row.comm as string,
      data: JSON.parse(row.data as string),
    } as TraceEvent;
    if (row.ctx) {
      const ctx = JSON.parse(row.ctx as string) as { parent?: TraceEvent['parent']; instance?: string };
      if (ctx.parent) ev.parent = ctx.parent;
      if (ctx.instance) ev.instance = ctx.instance;
    }
    return ev;
  }

  stats(): StoreStats {
    let rows = 0;
    for (const s of this.segments) rows += s.rows;
    return {
      path: this.opts.path,
      schemaVersion: this.db.pragma('user_version', { simple: true }) as number,
      segments: this.segments.length,
      rows,
      bytes: this.bytes(),
      oldestTs: this.segments[0]?.firstTs ?? null,
      newestTs: this.segments[this.segments.length - 1]?.lastTs ?? null,
      ...this.counters,
      lastReadError: this.lastReadError,
    };
  }

  close(): void {
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    if (this.db.open) this.db.close();
  }
}
