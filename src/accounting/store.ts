// Usage at 1-second resolution, downsampled for long retention (Gnocchi's
// "high" policy by default: 1 s for an hour, 1 min for a day, 1 h for a
// year). Its own SQLite file, apart from the event store: its retention is
// by age only, never by the event store's size budget.
//
// A row is written only when a value changed (an idle instance writes
// nothing); a reader carries the last value forward. The coarser tiers keep,
// per bucket, the last value of a cumulative meter and the mean of a gauge,
// written when the bucket closes (and when the agent stops).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { CLASS_NAMES } from './abi.js';
import { METERS, type Resource } from './meters.js';

export interface Tier {
  /** bucket width */
  stepSeconds: number;
  /** rows older than this are removed */
  keepSeconds: number;
}

export const DEFAULT_TIERS: Tier[] = [
  { stepSeconds: 1, keepSeconds: 3600 },
  { stepSeconds: 60, keepSeconds: 86400 },
  { stepSeconds: 3600, keepSeconds: 365 * 86400 },
];

export interface UsageQuery {
  project?: string;
  instance?: string;
  service?: string;
  resource?: string;
  meter?: string;
  /** ms since the epoch */
  since?: number;
  until?: number;
}

export interface UsageRow {
  resource_id: string;
  kind: string;
  project_id: string | null;
  user_id: string | null;
  instance_id: string | null;
  service: string | null;
  meter: string;
  type: string;
  unit: string;
  /** cumulative: used in the window (last − the value before it); gauge: the last value */
  volume: number;
  /** gauge: mean over the window */
  mean?: number;
  /** the resolution the answer came from, seconds */
  resolution: number;
  first_ts: number;
  last_ts: number;
}

interface Bucket {
  ts: number;
  volume: number;
  n: number;
}

export class UsageStore {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly tiers: Tier[];
  /** per tier > 0: the open bucket of each resource/meter */
  private readonly open: Map<string, Bucket>[];
  /** the last value written to tier 0 per resource/meter */
  private readonly last = new Map<string, number>();
  private readonly insert: Database.Statement;
  private readonly upsertResource: Database.Statement;
  private readonly setState: Database.Statement;
  private readonly getState: Database.Statement;
  private readonly delState: Database.Statement;
  private written = 0;
  private rows = 0;
  /** what was last written of each resource's row */
  private readonly seen = new Map<string, { json: string; meta: Record<string, unknown>; project: string | undefined; at: number }>();

  constructor(path: string, tiers: Tier[] = DEFAULT_TIERS) {
    if (!tiers.length || tiers[0]?.stepSeconds !== 1) throw new Error('the first tier must have a 1-second step');
    this.path = path;
    this.tiers = tiers;
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS resources (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, instance_id TEXT, project_id TEXT, user_id TEXT, service TEXT,
        metadata TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, ended_at INTEGER);
      CREATE INDEX IF NOT EXISTS resources_project ON resources(project_id);
      CREATE INDEX IF NOT EXISTS resources_instance ON resources(instance_id);
      CREATE TABLE IF NOT EXISTS samples (
        tier INTEGER NOT NULL, resource_id TEXT NOT NULL, meter TEXT NOT NULL, ts INTEGER NOT NULL, volume REAL NOT NULL,
        PRIMARY KEY (tier, resource_id, meter, ts)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
    this.insert = this.db.prepare('INSERT OR REPLACE INTO samples (tier, resource_id, meter, ts, volume) VALUES (?, ?, ?, ?, ?)');
    this.upsertResource = this.db.prepare(`
      INSERT INTO resources (id, kind, instance_id, project_id, user_id, service, metadata, first_seen, last_seen, ended_at)
      VALUES (@id, @kind, @instance_id, @project_id, @user_id, @service, @metadata, @ts, @ts, NULL)
      ON CONFLICT(id) DO UPDATE SET metadata = excluded.metadata, project_id = excluded.project_id, user_id = excluded.user_id,
        last_seen = excluded.last_seen, ended_at = NULL`);
    this.setState = this.db.prepare('INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)');
    this.getState = this.db.prepare('SELECT value FROM state WHERE key = ?');
    this.delState = this.db.prepare('DELETE FROM state WHERE key = ?');
    this.open = tiers.map(() => new Map());
    this.rows = (this.db.prepare('SELECT COUNT(*) AS n FROM samples').get() as { n: number }).n;
    // the last values written, so a restart neither rewrites nor goes backwards
    for (const r of this.db
      .prepare(
        'SELECT s.resource_id, s.meter, s.volume FROM samples s JOIN (SELECT resource_id, meter, MAX(ts) AS ts FROM samples WHERE tier = 0 GROUP BY resource_id, meter) m USING (resource_id, meter, ts) WHERE s.tier = 0',
      )
      .all() as { resource_id: string; meter: string; volume: number }[])
      this.last.set(`${r.resource_id}\0${r.meter}`, r.volume);
  }

  /** The last value stored for a resource's meter (survives restarts while tier 0 keeps it). */
  lastValue(resourceId: string, meter: string): number | undefined {
    return this.last.get(`${resourceId}\0${meter}`);
  }

  state<T>(key: string): T | undefined {
    const r = this.getState.get(key) as { value: string } | undefined;
    return r ? (JSON.parse(r.value) as T) : undefined;
  }
  putState(key: string, value: unknown): void {
    if (value === undefined) this.delState.run(key);
    else this.setState.run(key, JSON.stringify(value));
  }
  stateKeys(prefix: string): string[] {
    return (this.db.prepare('SELECT key FROM state WHERE key >= ? AND key < ?').all(prefix, `${prefix}\uffff`) as { key: string }[]).map((r) => r.key);
  }

  /** Write one reading: resources seen now and their meters' values at `ts` (ms). */
  write(ts: number, resources: Resource[], values: { resource: string; meter: string; volume: number }[]): void {
    const sec = Math.floor(ts / 1000) * 1000;
    this.db.transaction(() => {
      for (const r of resources) {
        // a resource's row is rewritten when it changes, and its last_seen once a minute
        const seen = this.seen.get(r.id);
        const fresh = seen !== undefined && sec - seen.at < 60_000 && seen.project === r.projectId;
        if (fresh && seen.meta === r.metadata) continue;
        const json = JSON.stringify(r.metadata);
        if (fresh && seen.json === json) {
          seen.meta = r.metadata;
          continue;
        }
        this.seen.set(r.id, { json, meta: r.metadata, project: r.projectId, at: sec });
        this.upsertResource.run({
          id: r.id,
          kind: r.kind,
          instance_id: r.instanceId ?? null,
          project_id: r.projectId ?? null,
          user_id: r.userId ?? null,
          service: r.service ?? null,
          metadata: json,
          ts: sec,
        });
      }
      for (const v of values) {
        const key = `${v.resource}\0${v.meter}`;
        const changed = this.last.get(key) !== v.volume;
        if (changed) {
          this.insert.run(0, v.resource, v.meter, sec, v.volume);
          this.rows++;
          this.last.set(key, v.volume);
          this.written++;
        }
        const gauge = METERS[v.meter]?.type === 'gauge';
        for (let t = 1; t < this.tiers.length; t++) {
          const step = (this.tiers[t] as Tier).stepSeconds * 1000;
          const bucket = Math.floor(ts / step) * step;
          const open = this.open[t] as Map<string, Bucket>;
          const b = open.get(key);
          if (!changed && !gauge && b?.ts === bucket) continue; // the bucket holds this value already
          if (b && b.ts !== bucket) {
            this.insert.run(t, v.resource, v.meter, b.ts, b.volume);
            this.rows++;
            open.delete(key);
          }
          const cur = open.get(key);
          if (!cur) open.set(key, { ts: bucket, volume: v.volume, n: 1 });
          else if (gauge) {
            cur.volume = (cur.volume * cur.n + v.volume) / (cur.n + 1);
            cur.n++;
          } else cur.volume = v.volume;
        }
      }
    })();
  }

  /** A resource is gone (its instance ended, its tap was removed): after its last values. */
  end(resourceId: string, ts: number): void {
    this.seen.delete(resourceId);
    this.db.prepare('UPDATE resources SET ended_at = ? WHERE id = ?').run(ts, resourceId);
  }

  /** Write the open buckets of the coarse tiers (at stop). */
  flush(): void {
    this.db.transaction(() => {
      for (let t = 1; t < this.tiers.length; t++) {
        for (const [key, b] of this.open[t] as Map<string, Bucket>) {
          const [resource, meter] = key.split('\0') as [string, string];
          this.insert.run(t, resource, meter, b.ts, b.volume);
        }
      }
    })();
  }

  applyRetention(now = Date.now()): number {
    let removed = 0;
    this.tiers.forEach((t, i) => {
      removed += this.db.prepare('DELETE FROM samples WHERE tier = ? AND ts < ?').run(i, now - t.keepSeconds * 1000).changes;
    });
    this.rows = Math.max(0, this.rows - removed);
    return removed;
  }

  /** Usage per resource and meter in a window, from the finest tier that covers it. */
  usage(q: UsageQuery): UsageRow[] {
    const now = Date.now();
    const since = q.since ?? now - 3600_000;
    const until = q.until ?? now;
    // the finest tier whose retention reaches back to `since`
    let tier = this.tiers.findIndex((t) => now - t.keepSeconds * 1000 <= since);
    if (tier < 0) tier = this.tiers.length - 1;
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.project) {
      where.push('r.project_id = ?');
      args.push(q.project);
    }
    if (q.instance) {
      where.push('(r.instance_id = ? OR r.id = ?)');
      args.push(q.instance, q.instance);
    }
    if (q.service) {
      where.push('r.service = ?');
      args.push(q.service);
    }
    if (q.resource) {
      where.push('r.id = ?');
      args.push(q.resource);
    }
    if (q.meter) {
      where.push('s.meter = ?');
      args.push(q.meter);
    }
    const sql = `
      SELECT r.id AS resource_id, r.kind, r.project_id, r.user_id, r.instance_id, r.service, s.meter,
        (SELECT volume FROM samples b WHERE b.tier = s.tier AND b.resource_id = r.id AND b.meter = s.meter AND b.ts < ? ORDER BY b.ts DESC LIMIT 1) AS before,
        (SELECT volume FROM samples e WHERE e.tier = s.tier AND e.resource_id = r.id AND e.meter = s.meter AND e.ts <= ? ORDER BY e.ts DESC LIMIT 1) AS last,
        AVG(s.volume) AS mean, MIN(s.ts) AS first_ts, MAX(s.ts) AS last_ts
      FROM samples s JOIN resources r ON r.id = s.resource_id
      WHERE s.tier = ? AND s.ts >= ? AND s.ts <= ? ${where.length ? `AND ${where.join(' AND ')}` : ''}
      GROUP BY r.id, s.meter ORDER BY r.id, s.meter`;
    const rows = this.db.prepare(sql).all(since, until, tier, since, until, ...args) as {
      resource_id: string;
      kind: string;
      project_id: string | null;
      user_id: string | null;
      instance_id: string | null;
      service: string | null;
      meter: string;
      before: number | null;
      last: number;
      mean: number;
      first_ts: number;
      last_ts: number;
    }[];
    const resolution = (this.tiers[tier] as Tier).stepSeconds;
    return rows.map((r) => {
      const def = METERS[r.meter];
      const gauge = def?.type === 'gauge';
      return {
        resource_id: r.resource_id,
        kind: r.kind,
        project_id: r.project_id,
        user_id: r.user_id,
        instance_id: r.instance_id,
        service: r.service,
        meter: r.meter,
        type: def?.type ?? 'gauge',
        unit: def?.unit ?? '',
        volume: gauge ? r.last : r.last - (r.before ?? 0),
        ...(gauge ? { mean: r.mean } : {}),
        resolution,
        first_ts: r.first_ts,
        last_ts: r.last_ts,
      };
    });
  }

  /** The stored series of one resource's meter (for charts and tests). */
  series(resourceId: string, meter: string, since: number, tier = 0): { ts: number; volume: number }[] {
    return this.db
      .prepare('SELECT ts, volume FROM samples WHERE tier = ? AND resource_id = ? AND meter = ? AND ts >= ? ORDER BY ts')
      .all(tier, resourceId, meter, since) as { ts: number; volume: number }[];
  }

  resources(): { id: string; kind: string; project_id: string | null; instance_id: string | null; service: string | null; ended_at: number | null }[] {
    return this.db.prepare('SELECT id, kind, project_id, instance_id, service, ended_at FROM resources ORDER BY id').all() as never;
  }

  /** rows: counted when the store opens, then kept up to date (a COUNT(*) on every status call would scan the table; a rewrite of a row within its second counts twice) */
  stats(): { rows: number; written: number; path: string } {
    return { rows: this.rows, written: this.written, path: this.path };
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}

/** Group usage rows by destination: bytes per class (north_south, east_west, node, ...) and direction. */
export function byDestination(rows: UsageRow[]): Record<string, Record<string, { incoming: number; outgoing: number }>> {
  const out: Record<string, Record<string, { incoming: number; outgoing: number }>> = {};
  for (const r of rows) {
    const m = /^network\.(incoming|outgoing)\.bytes\.([a-z_]+)$/.exec(r.meter);
    if (!m || !(CLASS_NAMES as readonly string[]).includes(m[2] as string)) continue;
    const key = r.project_id ?? r.resource_id;
    out[key] ??= {};
    const cls = ((out[key] as Record<string, { incoming: number; outgoing: number }>)[m[2] as string] ??= { incoming: 0, outgoing: 0 });
    cls[m[1] as 'incoming' | 'outgoing'] += r.volume;
  }
  return out;
}
