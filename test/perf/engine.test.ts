// The request explainer's logic on synthetic events (pure logic; the e2e test
// runs it on real Keystone and Neutron): attribution to the worker thread and
// the request's window, stitching by request id and by connection, the
// cause, N+1, and baselines that raise a finding naming what moved and close
// it again.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Explained, PerfEngine, type PerfOptions } from '../../src/perf/engine.js';
import { parseThreadSample, type ThreadSample } from '../../src/perf/hub.js';
import type { TraceEvent } from '../../src/trace/event.js';

const OPTS: PerfOptions = {
  settleMs: 1000,
  maxRequests: 1000,
  routeValues: 50,
  maxRoutes: 100,
  maxFingerprints: 100,
  nPlusOne: 10,
  baseline: { learnSeconds: 600, recentSeconds: 10, minSamples: 5, factor: 2, minDeltaMs: 25 },
};

const base = (service: string, pid: number, tid: number, ts: number) => ({ ts, service, pid, tid, ppid: 1, uid: 0, comm: 'x' });

function server(service: string, pid: number, ts: number, ms: number, o: Record<string, unknown> = {}): TraceEvent {
  return {
    ...base(service, pid, (o.tid as number) ?? pid, ts),
    type: 'http.request',
    data: { role: 'server', method: 'GET', path: '/v2.0/ports', status: 200, latency_ms: ms, request_bytes: 100, response_bytes: 100, ...o },
  } as TraceEvent;
}
function client(service: string, pid: number, ts: number, ms: number, o: Record<string, unknown> = {}): TraceEvent {
  return {
    ...base(service, pid, pid, ts),
    type: 'http.request',
    data: { role: 'client', method: 'GET', path: '/v3/auth/tokens', status: 200, latency_ms: ms, request_bytes: 100, response_bytes: 100, ...o },
  } as TraceEvent;
}
function sql(service: string, pid: number, ts: number, ms: number, statement: string, tid = pid): TraceEvent {
  return {
    ...base(service, pid, tid, ts),
    type: 'sql.query',
    data: { command: 'query', statement, latency_ms: ms, request_bytes: 10, response_bytes: 10 },
  } as TraceEvent;
}

function amqp(service: string, pid: number, ts: number, o: Record<string, unknown>): TraceEvent {
  return {
    ...base(service, pid, pid, ts),
    type: 'rpc.call',
    data: { protocol: 'amqp', role: 'client', method: 'm', target: 't', exchange: 'nova', latency_ms: 0, request_bytes: 10, response_bytes: 0, ...o },
  } as TraceEvent;
}

describe('request explainer', () => {
  test('oslo.messaging: an API request casts, the greenthread that runs the cast calls, the call is served: one tree across three services', () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const sqlOn = (service: string, pid: number, ts: number, ms: number, greenlet: number) => {
      const ev = sql(service, pid, ts, ms, 'SELECT instances.id FROM instances WHERE instances.uuid = 1');
      (ev.data as { greenlet?: number }).greenlet = greenlet;
      return ev;
    };
    e.onEvents([
      // nova-api's request casts to the conductor (on its greenlet 1)
      amqp('nova-api', 10, now + 90, { kind: 'cast', method: 'schedule_and_build_instances', target: 'conductor', unique_id: 'u1', greenlet: 1 }),
      server('nova-api', 10, now, 100, { method: 'POST', path: '/v2.1/servers', greenlet: 1 }),
      // the conductor: its consumer (greenlet 7) reads the cast; a new greenthread (8) runs it
      amqp('nova-conductor', 20, now + 92, {
        role: 'server',
        kind: 'cast',
        method: 'schedule_and_build_instances',
        target: 'conductor',
        unique_id: 'u1',
        greenlet: 7,
      }),
      sqlOn('nova-conductor', 20, now + 95, 5, 8),
      // another greenthread's statement meanwhile: not the cast's
      sqlOn('nova-conductor', 20, now + 96, 50, 9),
      amqp('nova-conductor', 20, now + 110, {
        kind: 'call',
        method: 'select_destinations',
        target: 'scheduler',
        msg_id: 'm1',
        unique_id: 'u2',
        latency_ms: 40,
        greenlet: 8,
      }),
      sqlOn('nova-conductor', 20, now + 160, 4, 8),
      // the scheduler serves the call: from its delivery to its answer, on the answering greenlet
      sqlOn('nova-scheduler', 30, now + 115, 20, 3),
      amqp('nova-scheduler', 30, now + 112, {
        role: 'server',
        kind: 'call',
        method: 'select_destinations',
        target: 'scheduler',
        msg_id: 'm1',
        unique_id: 'u2',
        latency_ms: 36,
        failed: true,
        greenlet: 3,
      }),
    ]);
    now += 2000;
    e.tick();
    now += 2000;
    e.tick();
    const api = e.slow({ minMs: 0, limit: 10 }).find((r) => r.service === 'nova-api') as Explained;
    assert.ok(api, 'the API request is explained');
    const t = e.tree(api.key) as Explained & { children: (Explained & { children: Explained[] })[] };
    assert.equal(t.calls.length, 1);
    assert.deepEqual(
      { kind: t.calls[0]?.kind, method: t.calls[0]?.method, route: t.calls[0]?.route, cast: t.calls[0]?.cast, peer: t.calls[0]?.peer_service },
      { kind: 'amqp', method: 'CAST', route: 'conductor schedule_and_build_instances', cast: true, peer: 'nova-conductor' },
    );
    const cast = t.children[0] as Explained & { children: Explained[] };
    assert.equal(cast.service, 'nova-conductor');
    assert.equal(cast.method, 'CAST');
    assert.equal(cast.route, 'conductor schedule_and_build_instances');
    // its own greenthread's statements (8), not the other greenthread's (9); it ends with its last
    assert.equal(cast.sql.count, 2);
    assert.equal(cast.duration_ms, 72);
    assert.equal(cast.calls[0]?.ms, 40);
    const call = cast.children[0] as Explained;
    assert.equal(call.service, 'nova-scheduler');
    assert.equal(call.method, 'CALL');
    assert.equal(call.route, 'scheduler select_destinations');
    assert.equal(call.status, 500, 'answered with a remote exception');
    assert.equal(call.sql.count, 1);
    assert.equal(cast.calls[0]?.queue_ms, 2);
  });

  test("a request's SQL and calls on its worker thread, within its window, are its own; the callee's request is stitched", () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    e.onEvents([
      // keystone validating the token neutron sends (its answer carries keystone's request id)
      sql('keystone', 20, now + 12, 3, "SELECT * FROM token WHERE id = 'x'"),
      server('keystone', 20, now + 11, 30, {
        method: 'GET',
        path: '/v3/auth/tokens',
        request_id: 'req-k1',
        local: '127.0.0.1:5000',
        remote: '127.0.0.1:40000',
        cpu_ms: 20,
        runq_ms: 1,
      }),
      client('neutron', 10, now + 10, 32, { remote: '127.0.0.1:5000', local: '127.0.0.1:40000', request_id: 'req-k1' }),
      sql('neutron', 10, now + 50, 40, 'SELECT ports.id FROM ports WHERE ports.network_id = 5'),
      sql('neutron', 10, now + 91, 2, 'SELECT 1'),
      // another thread of neutron, and a statement after the request: not this request's
      sql('neutron', 10, now + 60, 500, 'SELECT 2', 11),
      sql('neutron', 10, now + 200, 7, 'UPDATE ports SET status = 1'),
      server('neutron', 10, now, 100, {
        path: '/v2.0/ports?network_id=x',
        request_id: 'req-n1',
        local: '127.0.0.1:9696',
        remote: '127.0.0.1:50000',
        cpu_ms: 15,
        runq_ms: 2,
      }),
    ]);
    e.tick();
    assert.equal(e.stats().explained, 0, 'nothing is explained before settle_ms');
    now += 2000;
    e.tick();
    const n = e.requests.get('req-n1') as Explained;
    assert.equal(n.route, '/v2.0/ports');
    assert.equal(n.sql.count, 2);
    assert.equal(n.sql.total_ms, 42);
    assert.equal(n.sql.slowest?.fingerprint, 'SELECT ports.id FROM ports WHERE ports.network_id = ?');
    assert.equal(n.calls.length, 1);
    const call = n.calls[0];
    assert.equal(call?.peer_service, 'keystone');
    assert.equal(call?.route, '/v3/auth/tokens');
    assert.equal(call?.child, 'req-k1');
    assert.equal(call?.queue_ms, 1);
    // 100 = 15 cpu + 2 waiting + 42 sql + 32 call + 9 blocked
    assert.equal(n.blocked_ms, 9);
    assert.equal(n.cause.component, 'sql');
    const k = e.requests.get('req-k1') as Explained;
    assert.equal(k.parent, 'req-n1');
    assert.equal(k.cause.component, 'cpu');
    const tree = e.tree('req-n1') as Explained & { children: Explained[] };
    assert.equal(tree.children[0]?.key, 'req-k1');
    assert.equal(e.stats().stitched, 1);
  });

  test('without a request id the callee is found by the connection and the time', () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    e.onEvents([
      server('keystone', 20, now + 5, 80, { path: '/v3/auth/tokens', local: '127.0.0.1:5000', remote: '127.0.0.1:40001', cpu_ms: 5, runq_ms: 0 }),
      client('neutron', 10, now + 4, 82, { remote: '127.0.0.1:5000', local: '127.0.0.1:40001' }),
      server('neutron', 10, now, 100, { local: '127.0.0.1:9696', remote: '127.0.0.1:50001', cpu_ms: 10, runq_ms: 0 }),
    ]);
    now += 2000;
    e.tick();
    const n = [...e.requests.values()].find((r) => r.service === 'neutron') as Explained;
    assert.ok(n.calls[0]?.child, 'stitched');
    // the dependency took the most; its own cause is followed: keystone was blocked (75 of 80 ms)
    assert.equal(n.cause.component, 'dependency');
    assert.equal(n.cause.via?.service, 'keystone');
    assert.equal(n.cause.via?.component, 'blocked');
  });

  test("one request id over a whole tree (Glance echoes its caller's): each call finds the request it reached, by connection and time", () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const conn = { local: '127.0.0.1:9292', remote: '127.0.0.1:40002' };
    const rid = 'req-nova';
    e.onEvents([
      // two calls on one kept-alive connection, answered with the caller's id both times
      server('glance', 30, now + 11, 60, { ...conn, path: '/v2/images/abc', request_id: rid, cpu_ms: 5, runq_ms: 0 }),
      client('nova-api', 40, now + 10, 62, { remote: conn.local, local: conn.remote, path: '/v2/images/abc', request_id: rid }),
      server('glance', 30, now + 81, 20, { ...conn, path: '/v2/schemas/image', request_id: rid, cpu_ms: 5, runq_ms: 0 }),
      client('nova-api', 40, now + 80, 22, { remote: conn.local, local: conn.remote, path: '/v2/schemas/image', request_id: rid }),
      server('nova-api', 40, now, 120, { path: '/v2.1/servers', method: 'POST', request_id: rid, status: 202, cpu_ms: 10, runq_ms: 0 }),
    ]);
    now += 2000;
    e.tick();
    const nova = [...e.requests.values()].find((r) => r.service === 'nova-api') as Explained;
    const reached = nova.calls.map((c) => e.requests.get(c.child as string)?.path);
    assert.deepEqual(reached, ['/v2/images/abc', '/v2/schemas/image']);
    // asked by the id, the tree is the caller's: the first to begin of those answering with it
    const t = e.tree(rid) as Explained & { children: Explained[] };
    assert.equal(t.service, 'nova-api');
    assert.deepEqual(
      t.children.map((c) => c.path),
      ['/v2/images/abc', '/v2/schemas/image'],
    );
  });

  test('one statement run again and again is an N+1 finding and the cause names it; pool pings are not', () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const evs: TraceEvent[] = [];
    for (let i = 0; i < 12; i++) evs.push(sql('neutron', 10, now + 1 + i * 5, 4, `SELECT * FROM ports WHERE id = ${i}`));
    for (let i = 0; i < 30; i++) evs.push(sql('neutron', 11, now + 1 + i * 2, 0.1, 'SELECT 1', 11));
    evs.push(server('neutron', 10, now, 100, { request_id: 'req-a', cpu_ms: 10, runq_ms: 0 }));
    evs.push(server('neutron', 11, now, 100, { request_id: 'req-b', tid: 11, cpu_ms: 10, runq_ms: 0 }));
    e.onEvents(evs);
    now += 2000;
    e.tick();
    const a = e.requests.get('req-a') as Explained;
    assert.equal(a.sql.repeated?.count, 12);
    assert.equal(a.cause.component, 'sql');
    assert.match(a.cause.detail, /the same statement 12×/);
    const f = [...e.findings.values()];
    assert.equal(f.length, 1);
    assert.equal(f[0]?.kind, 'n_plus_one');
    assert.deepEqual(a.findings, [f[0]?.key]);
    assert.equal((e.requests.get('req-b') as Explained).findings.length, 0);
  });

  test('a route whose p95 moves beyond its baseline is a finding naming the component that grew; it closes when the route recovers', () => {
    let now = 10_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const step = (ms: number, sqlMs: number) => {
      const t = now;
      e.onEvents([
        sql('keystone', 20, t + 1, sqlMs, 'SELECT * FROM user WHERE id = 1'),
        server('keystone', 20, t, ms, { path: '/v3/users', cpu_ms: 10, runq_ms: 0 }),
      ]);
      now += 500;
      e.tick();
    };
    for (let i = 0; i < 120; i++) step(20, 5); // 60 s of a healthy route
    assert.equal([...e.findings.values()].filter((f) => f.open).length, 0, 'no finding on a healthy route');
    for (let i = 0; i < 20; i++) step(220, 205); // the statement became slow
    const open = [...e.findings.values()].filter((f) => f.open);
    const route = open.find((f) => f.kind === 'route_regression');
    assert.ok(route, JSON.stringify(open));
    assert.equal(route.moved?.component, 'sql');
    assert.ok(open.some((f) => f.kind === 'slow_sql' && f.subject === 'SELECT * FROM user WHERE id = ?'));
    assert.ok(route.evidence.length > 0, 'slow requests are its evidence');
    for (let i = 0; i < 60; i++) step(20, 5);
    assert.equal([...e.findings.values()].filter((f) => f.open).length, 0, 'closed after recovery');
  });

  test("on an eventlet thread whose greenlet switches are followed, a greenthread's SQL is its own, not the open request's", () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const q = (ts: number, greenlet: number): TraceEvent => {
      const ev = sql('neutron', 10, ts, 2, 'SELECT ports.id FROM ports WHERE ports.id = 1');
      (ev.data as { greenlet?: number }).greenlet = greenlet;
      return ev;
    };
    e.onEvents([
      // the request's greenlet (0xa0) runs 2 statements; a greenthread it spawned (0xb0) 3, on the same thread
      q(now + 10, 0xa0),
      q(now + 20, 0xb0),
      q(now + 30, 0xb0),
      q(now + 40, 0xa0),
      q(now + 50, 0xb0),
      // a process where no switch was seen: every statement on the thread is the request's
      sql('keystone', 20, now + 10, 2, 'SELECT 1 FROM users'),
      sql('keystone', 20, now + 20, 2, 'SELECT 2 FROM users'),
      server('neutron', 10, now, 100, { request_id: 'g', greenlet: 0xa0, cpu_ms: 10, runq_ms: 0 }),
      server('keystone', 20, now, 100, { path: '/v3/auth/tokens', request_id: 'k', cpu_ms: 10, runq_ms: 0 }),
    ]);
    now += 2000;
    e.tick();
    assert.equal(e.requests.get('g')?.sql.count, 2);
    assert.equal(e.requests.get('k')?.sql.count, 2);
  });

  test('requests that overlap on one thread (an eventlet hub) say so', () => {
    let now = 1_000_000;
    const e = new PerfEngine(OPTS, () => now);
    e.onEvents([server('neutron', 10, now, 100, { request_id: 'a' }), server('neutron', 10, now + 50, 100, { request_id: 'b' })]);
    now += 3000;
    e.tick();
    assert.equal((e.requests.get('a') as Explained).shared_thread, true);
    assert.equal(e.stats().shared_thread, 2);
  });

  test('a worker pool busy all the time, with requests starting the moment a worker frees up, is saturated; spare time closes it', () => {
    let now = 50_000_000;
    const e = new PerfEngine(OPTS, () => now);
    // one uwsgi worker serving back to back: 100 ms each, for 25 s
    let t = now;
    for (let i = 0; i < 250; i++) {
      e.onEvents([server('keystone', 20, t, 99.5, { path: '/v3/auth/tokens', request_id: `q${i}`, cpu_ms: 90, runq_ms: 0 })]);
      t += 100;
      if (t > now + 250) {
        now += 250;
        e.tick();
      }
    }
    while (now < t + 2000) {
      now += 250;
      e.tick();
    }
    const f = [...e.findings.values()].find((x) => x.kind === 'pool_saturated');
    assert.ok(f, JSON.stringify([...e.findings.values()]));
    assert.equal(f.service, 'keystone');
    assert.match(f.detail, /1 worker was busy \d+%/);
    // then one request a second: the worker waits for work, not work for the worker
    for (let i = 0; i < 30; i++) {
      e.onEvents([server('keystone', 20, now, 100, { path: '/v3/auth/tokens', request_id: `r${i}`, cpu_ms: 90, runq_ms: 0 })]);
      now += 1000;
      for (let k = 0; k < 4; k++) e.tick();
    }
    assert.equal(f.open, false);
  });
  test("an eventlet server's new connections waiting between accept and read: its greenthread pool is saturated; prompt reads close it", () => {
    let now = 60_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const accept = (ts: number, port: number): TraceEvent =>
      ({
        ...base('neutron-server', 30, 30, ts),
        type: 'net.accept',
        data: { fd: 9, family: 'inet', remote: `127.0.0.1:${port}`, local: '127.0.0.1:9696', result: 9 },
      }) as TraceEvent;
    // four greenthreads on one thread, each request 400 ms; connections wait 300 ms for one
    const burst = (from: number, n: number, wait: number, port0: number) => {
      for (let i = 0; i < n; i++) {
        const at = from + i * 100;
        e.onEvents([
          accept(at, port0 + i),
          server('neutron-server', 30, at + wait, 400, { path: '/v2.0/networks', remote: `127.0.0.1:${port0 + i}`, local: '127.0.0.1:9696' }),
        ]);
      }
    };
    let port = 40000;
    while (now < 60_000_000 + 20_000) {
      burst(now, 10, 300, port);
      port += 10;
      now += 1000;
      for (let k = 0; k < 4; k++) e.tick();
    }
    const f = [...e.findings.values()].find((x) => x.kind === 'pool_saturated');
    assert.ok(f, JSON.stringify([...e.findings.values()].map((x) => x.kind)));
    assert.match(f.detail, /^neutron-server: \d+ of \d+ new connections .* waited after their accept for a free greenthread \(median 300 ms/);
    const r = e.slow({ minMs: 0, limit: 5 })[0] as Explained;
    assert.equal(r.queued_ms, 300);
    // then connections read at once
    const until = now + 30_000;
    while (now < until) {
      burst(now, 10, 1, port);
      port += 10;
      now += 1000;
      for (let k = 0; k < 4; k++) e.tick();
    }
    assert.equal(f.open, false);
  });

  test("/proc's stat and syscall lines: state, the call by name, its descriptor; a comm with ') ' in it", () => {
    const stat = '4242 (neutron-server: ) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 50 10 0 0 20 0 3 0';
    const s = parseThreadSample(4242, 4242, 5, stat, '1 0x2 0x7f00 0x1000 0x0 0x0 0x0 0x7ffd 0x7f11\n') as ThreadSample;
    assert.equal(s.state, 'S');
    if (process.arch === 'x64') {
      assert.equal(s.syscall, 'write');
      assert.equal(s.fd, 2);
      assert.equal(s.loopWait, false);
      assert.equal((parseThreadSample(1, 1, 5, stat, '232 0x5 0x7f 0x400 0x0 0 0 0x1 0x2') as ThreadSample).loopWait, true);
    }
    assert.equal((parseThreadSample(1, 1, 5, '1 (x) R 1', 'running\n') as ThreadSample).syscall, 'running');
    assert.equal(parseThreadSample(1, 1, 5, 'garbage', '1 0x2'), undefined);
    assert.equal(parseThreadSample(1, 1, 5, '1 (x) S 1', 'bogus'), undefined);
  });

  test('a greenthreaded worker asleep outside its hub while requests wait: hub_blocked, and the cause names the call and the file', () => {
    let now = 70_000_000;
    const e = new PerfEngine(OPTS, () => now);
    const sample = (ts: number, syscall: string, state = 'S', fd?: number, target?: string): ThreadSample => ({
      pid: 10,
      tid: 10,
      ts,
      state,
      nr: syscall === 'epoll_wait' ? 232 : 1,
      syscall,
      loopWait: syscall === 'epoll_wait',
      ...(fd !== undefined ? { fd } : {}),
      ...(target ? { target } : {}),
    });
    // healthy: its SQL answers are waited for in epoll (the hub), never in the read
    for (let i = 0; i < 8; i++) {
      const t = now + i * 300;
      e.onThreadSample(sample(t + 40, 'epoll_wait'));
      e.onEvents([
        sql('neutron', 10, t + 20, 50, 'SELECT ports.id FROM ports'),
        server('neutron', 10, t, 100, { request_id: `h${i}`, cpu_ms: 20, runq_ms: 0 }),
      ]);
    }
    now += 4000;
    e.tick();
    assert.equal(e.greenthreaded('neutron'), true);
    assert.equal([...e.findings.values()].filter((f) => f.kind === 'hub_blocked').length, 0);
    // the log pipe full: the hub sleeps in write(2) on it for a second while a request is open
    const t0 = now;
    for (let k = 0; k <= 4; k++) e.onThreadSample(sample(t0 + 100 + k * 250, 'write', 'S', 2, 'pipe:[777]'));
    e.onEvents([server('neutron', 10, t0, 1300, { request_id: 'slow', cpu_ms: 20, runq_ms: 0 })]);
    now += 3000;
    e.tick();
    // the request the client sent during the block: read late, quick once read
    e.onThreadSample(sample(t0 + 1400, 'epoll_wait'));
    e.onEvents([server('neutron', 10, t0 + 1360, 30, { request_id: 'queued', cpu_ms: 5, runq_ms: 0 })]);
    now += 3000;
    e.tick();
    const q = e.requests.get('queued') as Explained;
    assert.equal(q.cause.component, 'hub');
    assert.ok((q.hub_blocked?.queued_ms ?? 0) > 1000, JSON.stringify(q.hub_blocked));
    assert.match(q.cause.detail, /before the worker could read it/);
    const r = e.requests.get('slow') as Explained;
    assert.equal(r.cause.component, 'hub');
    assert.match(r.cause.detail, /write\(2\) on pipe:\[777\]/);
    assert.equal(r.hub_blocked?.samples, 5);
    const f = [...e.findings.values()].find((x) => x.kind === 'hub_blocked');
    assert.ok(f?.open);
    assert.equal(f.subject, 'write pipe:[777]');
    // a thread per request (its SQL read in recvfrom) is never judged by its hub
    const k = new PerfEngine(OPTS, () => now);
    for (let i = 0; i < 8; i++) {
      const t = now + i * 300;
      k.onThreadSample({ ...sample(t + 40, 'recvfrom'), pid: 20, tid: 20, nr: 45 });
      k.onEvents([
        sql('keystone', 20, t + 20, 50, 'SELECT token.id FROM token'),
        server('keystone', 20, t, 100, { request_id: `k${i}`, cpu_ms: 20, runq_ms: 0 }),
      ]);
    }
    now += 4000;
    k.tick();
    assert.equal(k.greenthreaded('keystone'), false);
    // and the findings close once the hub is free again
    for (let i = 0; i < 40; i++) {
      now += 500;
      e.tick();
    }
    assert.equal(f.open, false);
  });
});
