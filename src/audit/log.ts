// The audit log: an append-only Merkle log of CADF records in its own SQLite
// file (apart from the event store: its own retention, never in the event
// store's size budget), with signed checkpoints.
//
// Each leaf is the exact bytes stored for a record:
//   {"v":1,"seq":N,"prev":"<base64 leaf hash of record N-1>","event":{CADF}}
// `prev` chains the records, so a changed, removed or reordered record is
// named precisely by `verify`, and the Merkle root in each signed checkpoint
// makes the whole prefix tamper-evident. A record is acknowledged once its
// transaction is committed with synchronous=FULL: on disk, whatever happens to
// the process after.
import Database from 'better-sqlite3';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CadfEvent } from './cadf.js';
import { type Checkpoint, type SigningKey, noteHash, signCheckpoint } from './checkpoint.js';
import { Frontier, type Hash, leafHash } from './merkle.js';

export class AuditLogError extends Error {}

const CHUNK = 64;

/** A stored body: a BLOB of the leaf's bytes (TEXT where a tool wrote one). */
export const bodyText = (b: string | Buffer): string => (typeof b === 'string' ? b : b.toString('utf8'));
const bodyBytes = (b: string | Buffer): Buffer => (typeof b === 'string' ? Buffer.from(b) : b);

export interface StoredRecord {
  seq: number;
  id: string;
  body: string;
}

interface Row {
  seq: number;
  id: string;
  body: string | Buffer;
}

const text = (r: Row): StoredRecord => ({ seq: r.seq, id: r.id, body: bodyText(r.body) });

export interface RecordQuery {
  since?: number;
  until?: number;
  initiator?: string;
  project?: string;
  action?: string;
  outcome?: string;
  kind?: string;
  limit?: number;
}

export interface StoredCheckpoint {
  seq: number;
  size: number;
  time: number;
  note: string;
  frontier: string;
}

/** What kind of record: the API, below it, or the agent's own. */
export function kindOf(e: CadfEvent): string {
  if (e.eventType === 'monitor') return 'gap';
  if (e.eventType === 'control') return 'agent';
  const t = e.target.typeURI;
  if (t === 'data/database') return 'database';
  if (t === 'data/config' || t === 'data/security/policy') return 'file';
  if (t === 'compute/process') return 'exec';
  return 'api';
}

export class AuditLog {
  readonly db: Database.Database;
  private frontier: Frontier;
  private lastLeaf: Hash | undefined;
  private readonly insert: Database.Statement;
  /** CHUNK rows in one statement: a third less time per row than one at a time */
  private readonly insertMany: Database.Statement;
  private readonly append: (rows: CadfEvent[]) => number[];
  appended = 0;

  readonly origin: string;

  /**
   * @param origin the log's name in its checkpoints; a log keeps the one it was created with
   * @param opts.append false: open to read and verify only (no tree state is rebuilt, nothing is checked)
   */
  constructor(
    readonly path: string,
    origin?: string,
    opts: { append?: boolean } = {},
  ) {
    const fresh = !existsSync(path);
    if (fresh && opts.append === false) throw new AuditLogError(`${path}: no audit log there`);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    if (fresh) chmodSync(path, 0o600);
    // records are ~1.5 KB appended in batches: 16 KiB pages take a third of the time of 4 KiB ones
    // (fewer overflow pages and B-tree splits); set before the first table, it is the file's for good
    if (fresh) this.db.pragma('page_size = 16384');
    this.db.pragma('journal_mode = WAL');
    // an acknowledged record is on disk: the WAL is synced at each commit
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        initiator TEXT,
        project TEXT,
        body BLOB NOT NULL
      );
      CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
      CREATE TABLE IF NOT EXISTS checkpoints (
        seq INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        time INTEGER NOT NULL,
        note TEXT NOT NULL,
        frontier TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
    this.insert = this.db.prepare('INSERT INTO records (seq, id, ts, kind, action, outcome, initiator, project, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const stored = this.meta('origin');
    if (!stored && !origin) throw new AuditLogError(`${path}: the log names no origin`);
    if (!stored) this.setMeta('origin', origin as string);
    this.origin = stored ?? (origin as string);
    this.frontier = opts.append === false ? new Frontier() : this.resume();
    this.insertMany = this.db.prepare(
      `INSERT INTO records (seq, id, ts, kind, action, outcome, initiator, project, body) VALUES ${new Array(CHUNK).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
    );
    this.append = this.db.transaction((rows: CadfEvent[]) => {
      const seqs: number[] = [];
      let args: unknown[] = [];
      for (const e of rows) {
        const seq = this.frontier.size;
        // the leaf's bytes, stored as they were hashed (a BLOB: no second encoding)
        const body = Buffer.from(JSON.stringify({ v: 1, seq, prev: this.lastLeaf ? this.lastLeaf.toString('base64') : '', event: e }));
        const ini = e.initiator as { user_id?: string; name?: string; id: string; project_id?: string };
        // eventTime is pycadf's 2026-12-06T08:07:26.123197+0000: its first 23 characters and Z are ISO 8601
        args.push(seq, e.id, Date.parse(`${e.eventTime.slice(0, 23)}Z`), kindOf(e), e.action, e.outcome, ini.user_id ?? ini.id, ini.project_id ?? null, body);
        if (args.length === CHUNK * 9) {
          this.insertMany.run(args);
          args = [];
        }
        const leaf = leafHash(body);
        this.frontier.append(leaf);
        this.lastLeaf = leaf;
        seqs.push(seq);
      }
      for (let i = 0; i < args.length; i += 9) this.insert.run(args.slice(i, i + 9));
      return seqs;
    });
  }

  /** The tree's state after the last record: from the last checkpoint's frontier, then the records after it. */
  private resume(): Frontier {
    const cp = this.db.prepare('SELECT size, frontier FROM checkpoints ORDER BY seq DESC LIMIT 1').get() as { size: number; frontier: string } | undefined;
    const first = this.db.prepare('SELECT MIN(seq) AS lo FROM records').get() as { lo: number | null };
    let f: Frontier;
    let from: number;
    if (cp) {
      f = Frontier.load(JSON.parse(cp.frontier));
      from = cp.size;
    } else {
      if (first.lo !== null && first.lo !== 0) throw new AuditLogError(`${this.path}: records start at ${first.lo} and no checkpoint says what came before`);
      f = new Frontier();
      from = 0;
    }
    if (from > 0) {
      const prev = this.db.prepare('SELECT body FROM records WHERE seq = ?').get(from - 1) as { body: string | Buffer } | undefined;
      this.lastLeaf = prev ? leafHash(bodyBytes(prev.body)) : undefined;
      if (!prev) this.lastLeaf = JSON.parse(cp?.frontier ?? '{}').last ? Buffer.from(JSON.parse(cp?.frontier ?? '{}').last, 'base64') : undefined;
    }
    for (const r of this.db.prepare('SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq').iterate(from) as Iterable<{
      seq: number;
      body: string | Buffer;
    }>) {
      if (r.seq !== f.size) throw new AuditLogError(`${this.path}: record ${f.size} is missing (the next is ${r.seq}); run \`stackbpf audit verify\``);
      const leaf = leafHash(bodyBytes(r.body));
      f.append(leaf);
      this.lastLeaf = leaf;
    }
    return f;
  }

  /** records appended (the tree's size), when open for appending */
  get size(): number {
    return this.frontier.size;
  }

  /** one past the last record stored */
  end(): number {
    return (this.db.prepare('SELECT COALESCE(MAX(seq) + 1, 0) AS n FROM records').get() as { n: number }).n;
  }

  /** Append records durably; returns their sequence numbers (their leaf indexes). */
  add(events: CadfEvent[]): number[] {
    if (events.length === 0) return [];
    const seqs = this.append(events);
    this.appended += seqs.length;
    return seqs;
  }

  lastCheckpoint(): StoredCheckpoint | undefined {
    return this.db.prepare('SELECT seq, size, time, note, frontier FROM checkpoints ORDER BY seq DESC LIMIT 1').get() as StoredCheckpoint | undefined;
  }

  /** Sign the tree as it is now and store the checkpoint; returns its note. */
  checkpoint(key: SigningKey, now = Date.now()): StoredCheckpoint {
    const last = this.lastCheckpoint();
    const c: Checkpoint = {
      origin: this.origin,
      size: this.frontier.size,
      root: this.frontier.root(),
      time: Math.max(now, last?.time ?? 0),
      prev: last ? noteHash(last.note) : '',
    };
    const note = signCheckpoint(c, key);
    const frontier = JSON.stringify({ ...this.frontier.save(), ...(this.lastLeaf ? { last: this.lastLeaf.toString('base64') } : {}) });
    const seq = (last?.seq ?? 0) + 1;
    this.db.prepare('INSERT INTO checkpoints (seq, size, time, note, frontier) VALUES (?, ?, ?, ?, ?)').run(seq, c.size, c.time, note, frontier);
    return { seq, size: c.size, time: c.time, note, frontier };
  }

  checkpoints(from = 0): StoredCheckpoint[] {
    return this.db.prepare('SELECT seq, size, time, note, frontier FROM checkpoints WHERE seq >= ? ORDER BY seq').all(from) as StoredCheckpoint[];
  }

  meta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** Records matching the filters, newest first. */
  query(q: RecordQuery): StoredRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (clause: string, ...vals: unknown[]): void => {
      where.push(clause);
      args.push(...vals);
    };
    if (q.since !== undefined) add('ts >= ?', q.since);
    if (q.until !== undefined) add('ts < ?', q.until);
    if (q.initiator) add('(initiator = ? OR CAST(body AS TEXT) LIKE ?)', q.initiator, `%"name":${JSON.stringify(q.initiator)}%`);
    if (q.project) add('project = ?', q.project);
    if (q.action) add('(action = ? OR action LIKE ?)', q.action, `${q.action}/%`);
    if (q.outcome) add('outcome = ?', q.outcome);
    if (q.kind) add('kind = ?', q.kind);
    const sql = `SELECT seq, id, body FROM records ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, q.limit ?? 100) as Row[]).map(text);
  }

  /** A record by its CADF id (a scan: lookups by id are rare, and an index on it would cost every append a third). */
  byId(id: string): StoredRecord | undefined {
    const r = this.db.prepare('SELECT seq, id, body FROM records WHERE id = ?').get(id) as Row | undefined;
    return r ? text(r) : undefined;
  }

  /** Every record from `from` on, in order, with the exact bytes stored (what the leaf hash is of). */
  *each(from = 0): Iterable<StoredRecord & { bytes: Buffer }> {
    for (const r of this.db.prepare('SELECT seq, id, body FROM records WHERE seq >= ? ORDER BY seq').iterate(from) as Iterable<Row>) {
      const bytes = bodyBytes(r.body);
      yield { seq: r.seq, id: r.id, body: bytes.toString('utf8'), bytes };
    }
  }

  /** Leaf hashes of records [lo, hi). */
  leaves(lo: number, hi: number): Hash[] {
    const out: Hash[] = [];
    for (const r of this.db.prepare('SELECT body FROM records WHERE seq >= ? AND seq < ? ORDER BY seq').iterate(lo, hi) as Iterable<{ body: string | Buffer }>)
      out.push(leafHash(bodyBytes(r.body)));
    return out;
  }

  /**
   * Retention: remove records older than `beforeMs`, but only whole spans up to a checkpoint, so
   * the log still verifies from that checkpoint on (its stored frontier stands for what was removed).
   */
  prune(beforeMs: number): number {
    const cut = this.db
      .prepare(
        'SELECT c.seq, c.size FROM checkpoints c WHERE c.size <= (SELECT COALESCE(MIN(seq), (SELECT COALESCE(MAX(seq) + 1, 0) FROM records)) FROM records WHERE ts >= ?) ORDER BY c.size DESC LIMIT 1',
      )
      .get(beforeMs) as { seq: number; size: number } | undefined;
    if (!cut || cut.size === 0) return 0;
    const n = this.db.prepare('DELETE FROM records WHERE seq < ?').run(cut.size).changes;
    if (n > 0) this.setMeta('pruned_before_checkpoint', String(cut.seq));
    return n;
  }

  stats(): { records: number; checkpoints: number; bytes: number } {
    const r = this.db.prepare('SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) AS n FROM records').get() as { n: number };
    const c = this.db.prepare('SELECT COUNT(*) AS n FROM checkpoints').get() as { n: number };
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const size = this.db.pragma('page_size', { simple: true }) as number;
    return { records: r.n, checkpoints: c.n, bytes: pages * size };
  }

  close(): void {
    this.db.close();
  }
}
