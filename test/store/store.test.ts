// The event store on a real SQLite file, and the bus's bounded queues.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { EventBus } from '../../src/trace/bus.js';
import type { TraceEvent } from '../../src/trace/event.js';
import { EventStore, SCHEMA_VERSION, StoreError } from '../../src/store/store.js';

const ev = (i: number, over: Partial<Omit<TraceEvent, 'data'>> & { data?: Record<string, unknown> } = {}): TraceEvent =>
  ({
    ts: 1_700_000_000_000 + i,
    type: 'file.open',
    service: i % 2 ? 'keystone' : 'neutron-server',
    pid: 100 + (i % 3),
    tid: 100,
    ppid: 1,
    uid: 0,
    comm: 'x',
    data: { path: `/etc/keystone/f${i}`, result: 3 },
    ...over,
  }) as TraceEvent;

describe('event store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sbt-store-'));
  test.after(() => rmSync(dir, { recursive: true, force: true }));

  test('batched writes, filtered queries newest first, segments, reopen', () => {
    const path = join(dir, 'a.db');
    const s = new EventStore({ path, segmentRows: 1000 });
    const batch = Array.from({ length: 2500 }, (_, i) => ev(i));
    s.write(batch.slice(0, 1200));
    s.write(batch.slice(1200));
    s.write([ev(2500, { type: 'http.request', data: { method: 'POST', status: 401 }, parent: { pid: 1, comm: 'init', service: '' } })]);
    const st = s.stats();
    assert.equal(st.rows, 2501);
    assert.equal(st.segments, 3);
    assert.equal(st.schemaVersion, SCHEMA_VERSION);
    assert.equal(s.db.pragma('journal_mode', { simple: true }), 'wal');
    const http = s.query({ type: 'http' });
    assert.equal(http.length, 1);
    assert.deepEqual(http[0]?.data, { method: 'POST', status: 401 });
    assert.deepEqual(http[0]?.parent, { pid: 1, comm: 'init', service: '' });
    const ks = s.query({ service: 'keystone', type: 'file.open', limit: 5 });
    assert.deepEqual(
      ks.map((e) => e.ts),
      [2499, 2497, 2495, 2493, 2491].map((i) => 1_700_000_000_000 + i),
    );
    assert.equal(s.query({ pid: 101, since: 1_700_000_000_000 + 2400, limit: 10000 }).length, 34);
    assert.equal(s.query({ pathPrefix: '/etc/keystone/f249', limit: 100 }).length, 11);
    assert.equal(s.query({ service: 'nova-api' }).length, 0);
    s.close();
    const again = new EventStore({ path });
    assert.equal(again.stats().rows, 2501);
    again.write([ev(3000)]);
    assert.equal(again.query({ limit: 1 })[0]?.ts, 1_700_000_003_000);
    again.close();
  });

  test('retention drops whole segments by age and by size, and the file shrinks', () => {
    const path = join(dir, 'b.db');
    const s = new EventStore({ path, segmentRows: 2000, maxAgeSeconds: 3600, maxBytes: 2 ** 40 });
    const now = Date.now();
    // distinct objects: the store keeps an object repeated by identity once per chunk
    const big = (i: number) => ({ blob: 'y'.repeat(400), i });
    s.write(Array.from({ length: 4000 }, (_, i) => ev(i, { ts: now - 7200_000 + i, data: big(i) })));
    s.write(Array.from({ length: 4000 }, (_, i) => ev(i, { ts: now - 60_000 + i, data: big(i) })));
    assert.equal(s.stats().segments, 4);
    assert.equal(s.applyRetention(now), 2, 'the two old segments go');
    assert.equal(s.stats().rows, 4000);
    assert.ok(s.query({ limit: 10000 }).every((e) => e.ts >= now - 60_000));
    s.close();
    const before = s.stats;
    void before;
    const sized = new EventStore({ path, maxBytes: 1 << 20, segmentRows: 2000 });
    const size0 = sized.bytes();
    sized.write(Array.from({ length: 6000 }, (_, i) => ev(i, { ts: now + i, data: big(i) })));
    assert.ok(sized.bytes() > 1 << 20);
    sized.applyRetention(now);
    assert.ok(sized.bytes() <= 1 << 20, `under budget: ${sized.bytes()}`);
    assert.ok(sized.stats().droppedSegments >= 2);
    assert.ok(size0 >= 0);
    sized.close();
  });

  test('a version-1 database migrates forward, its events kept', () => {
    const path = join(dir, 'v1.db');
    const raw = new Database(path);
    raw.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE segments (id INTEGER PRIMARY KEY, first_ts REAL NOT NULL, last_ts REAL NOT NULL, rows INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE names (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, UNIQUE (kind, name));
      INSERT INTO names VALUES (1, 'type', 'file.open'), (2, 'service', 'keystone');
      INSERT INTO segments VALUES (1, 1000, 1000, 1);
      CREATE TABLE ev_1 (ts REAL NOT NULL, type INTEGER NOT NULL, service INTEGER NOT NULL, pid INTEGER NOT NULL, tid INTEGER NOT NULL, ppid INTEGER NOT NULL, uid INTEGER NOT NULL, comm TEXT NOT NULL, ctx TEXT, data TEXT NOT NULL);
      INSERT INTO ev_1 VALUES (1000, 1, 2, 7, 7, 1, 0, 'x', NULL, '{"path":"/etc/keystone/keystone.conf"}');
      PRAGMA user_version = 1;`);
    raw.close();
    const s = new EventStore({ path });
    assert.equal(s.stats().schemaVersion, SCHEMA_VERSION);
    assert.deepEqual(
      s.query({ service: 'keystone' }).map((e) => (e.data as { path?: string }).path),
      ['/etc/keystone/keystone.conf'],
    );
    s.saveAlert({
      id: 'a1',
      ts: 2000,
      lastTs: 2000,
      rule: 'keystone.bruteforce.source',
      severity: 'high',
      service: 'keystone',
      subject: '192.0.2.9',
      state: 'firing',
    });
    s.saveAlert({
      id: 'a1',
      ts: 2000,
      lastTs: 3000,
      rule: 'keystone.bruteforce.source',
      severity: 'high',
      service: 'keystone',
      subject: '192.0.2.9',
      state: 'resolved',
    });
    assert.deepEqual(
      s.alerts({ rule: 'keystone.bruteforce' }).map((a) => (a as { state: string }).state),
      ['resolved'],
    );
    s.close();
  });

  test('a version-2 store keeps its row segments readable beside new chunk segments', () => {
    const path = join(dir, 'v2.db');
    const raw = new Database(path);
    raw.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE segments (id INTEGER PRIMARY KEY, first_ts REAL NOT NULL, last_ts REAL NOT NULL, rows INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE names (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, UNIQUE (kind, name));
      CREATE TABLE alerts (id TEXT PRIMARY KEY, ts REAL NOT NULL, last_ts REAL NOT NULL, rule TEXT NOT NULL, severity TEXT NOT NULL,
                           service TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL);
      INSERT INTO names VALUES (1, 'type', 'file.open'), (2, 'service', 'keystone'), (3, 'type', 'http.request');
      INSERT INTO segments VALUES (1, 1000, 1001, 2);
      CREATE TABLE ev_1 (ts REAL NOT NULL, type INTEGER NOT NULL, service INTEGER NOT NULL, pid INTEGER NOT NULL, tid INTEGER NOT NULL, ppid INTEGER NOT NULL, uid INTEGER NOT NULL, comm TEXT NOT NULL, ctx TEXT, data TEXT NOT NULL);
      INSERT INTO ev_1 VALUES (1000, 1, 2, 7, 7, 1, 0, 'x', '{"parent":{"pid":1,"comm":"init","service":""}}', '{"path":"/etc/keystone/keystone.conf"}');
      INSERT INTO ev_1 VALUES (1001, 3, 2, 7, 7, 1, 0, 'x', NULL, '{"method":"GET"}');
      PRAGMA user_version = 2;`);
    raw.close();
    const s = new EventStore({ path });
    assert.equal(s.stats().schemaVersion, SCHEMA_VERSION);
    s.write([ev(1, { ts: 2000, service: 'keystone' }), ev(3, { ts: 2001, service: 'keystone', type: 'http.request', data: { method: 'POST' } })]);
    assert.deepEqual(
      s.query({ service: 'keystone' }).map((e) => e.ts),
      [2001, 2000, 1001, 1000],
      'newest first across both formats',
    );
    assert.deepEqual(
      s.query({ type: 'http' }).map((e) => e.data),
      [{ method: 'POST' }, { method: 'GET' }],
    );
    assert.deepEqual(s.query({ until: 1000 })[0]?.parent, { pid: 1, comm: 'init', service: '' });
    assert.deepEqual(
      [...s.each({ service: 'keystone' })].map((e) => e.ts),
      [1000, 1001, 2000, 2001],
    );
    assert.equal(s.stats().rows, 4);
    s.close();
  });

  test('a damaged chunk is skipped, counted and named; the rest still answers', () => {
    const path = join(dir, 'damaged.db');
    const s = new EventStore({ path });
    s.write(Array.from({ length: 600 }, (_, i) => ev(i)));
    const table = (s.db.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'evc_%'").get() as { name: string }).name;
    s.db.prepare(`UPDATE ${table} SET body = substr(body, 1, 100) WHERE rowid = 1`).run();
    const got = s.query({ limit: 10_000 });
    assert.equal(got.length, 600 - 512, 'the second chunk still answers');
    const st = s.stats();
    assert.equal(st.readErrors, 1);
    assert.match(st.lastReadError ?? '', new RegExp(`${table} chunk 1 skipped: chunk header says 512 events, which its 100 bytes do not hold`));
    s.close();
  });

  test('a database from a newer stackbpf is refused, not damaged', () => {
    const path = join(dir, 'c.db');
    const raw = new Database(path);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
    raw.close();
    assert.throws(
      () => new EventStore({ path }),
      (e: unknown) =>
        e instanceof StoreError && new RegExp(`schema version ${SCHEMA_VERSION + 5}, newer than this stackbpf knows \\(${SCHEMA_VERSION}\\)`).test(e.message),
    );
    const check = new Database(path);
    assert.equal(check.pragma('user_version', { simple: true }), SCHEMA_VERSION + 5);
    check.close();
  });
});

describe('bus', () => {
  test('bounded queues: a drop-oldest reader loses the oldest (counted); a back-pressure consumer makes the bus saturated', async () => {
    const bus = new EventBus();
    const slow: TraceEvent[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    bus.subscribe({ name: 'store', capacity: 100, policy: 'backpressure', batch: 10, handle: async () => gate });
    bus.subscribe({ name: 'viewer', capacity: 5, policy: 'drop-oldest', batch: 1000, handle: (b) => void slow.push(...b) });
    for (let i = 0; i < 50; i++) bus.publish(ev(i));
    bus.flush(); // viewer takes its 5 newest; store takes 10 and blocks
    for (let i = 50; i < 150; i++) bus.publish(ev(i));
    assert.equal(bus.saturated(0.8), true);
    const st = Object.fromEntries(bus.stats().map((s) => [s.name, s]));
    assert.equal(st.store?.dropped, 40);
    assert.equal(st.viewer?.queued, 5);
    assert.equal(st.viewer?.dropped, 45 + 95);
    release();
    assert.equal(await bus.drain(2000), true);
    assert.deepEqual(
      slow.slice(-5).map((e) => e.ts - 1_700_000_000_000),
      [145, 146, 147, 148, 149],
    );
  });
});

describe('module tables', () => {
  test('a module migrates its own tables forward, once, with its version kept apart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-modtab-'));
    try {
      const path = join(dir, 'm.db');
      const steps = [
        (db: Database.Database) => db.exec('CREATE TABLE usage_samples (ts REAL, v REAL)'),
        (db: Database.Database) => db.exec('ALTER TABLE usage_samples ADD COLUMN meter TEXT'),
      ];
      let s = new EventStore({ path });
      s.migrateModule('accounting', steps.slice(0, 1));
      s.close();
      s = new EventStore({ path });
      const db = s.migrateModule('accounting', steps);
      db.prepare('INSERT INTO usage_samples (ts, v, meter) VALUES (1, 2, ?)').run('cpu');
      assert.equal(s.stats().schemaVersion, SCHEMA_VERSION, "the event store's own version is untouched");
      s.close();
      s = new EventStore({ path });
      assert.throws(() => s.migrateModule('accounting', steps.slice(0, 1)), /tables of accounting are at version 2, newer than this stackbpf knows \(1\)/);
      s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
