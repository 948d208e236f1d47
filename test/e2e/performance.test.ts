// End to end, "why is this slow?" on real services with no instrumentation in
// them: Keystone (uwsgi), Neutron (eventlet, ML2/OVN on a real OVN NB
// database), Glance (eventlet), nova-api and placement (uwsgi), nova-conductor
// and nova-scheduler (eventlet) on a private RabbitMQ, all on a private
// MariaDB, driven by the `openstack` client (a port create; a server create
// across four services over HTTP and on over RabbitMQ: nova-api casts to the
// conductor, which calls the scheduler, which asks placement) and a steady API
// workload; the agent traces them and explains every request.
// A real Prometheus scrapes the durations. Faults are injected one at a time
// — a slow dependency (a delay in front of Keystone, as Neutron's
// keystonemiddleware sees it), Keystone's one worker saturated, a lock held in
// the database, Neutron's log pipe stalled (its eventlet hub blocks in write),
// CPU starvation of Neutron's worker — and each must raise its finding and be
// named as the cause by `why`; a healthy window raises none.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';
import { RabbitAndCeilometer } from '../helpers/ceilometer.js';
import { OpenStack, skipMariadb, skipNova, skipNovaRpc, skipOpenStack } from '../helpers/openstack.js';
import { OvnStack, skipOvn } from '../helpers/ovn.js';
import { freePort } from '../helpers/ovsdb.js';
import { Prometheus, skipPrometheus } from '../helpers/prometheus.js';
import { HttpDelayProxy } from '../helpers/proxy.js';

const run = promisify(execFile);
const cli = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const skip = skipKernel || skipOvn || skipOpenStack || skipMariadb || skipNova || skipNovaRpc || skipPrometheus;
if (skip && !skipKernel) process.stdout.write(`# SKIP performance e2e: ${skip}\n`);

interface Explained {
  key: string;
  request_id?: string;
  service: string;
  pid: number;
  method: string;
  route: string;
  status: number | null;
  duration_ms: number;
  sql: { count: number; total_ms: number; slowest?: { fingerprint: string; ms: number } };
  calls: { kind: string; peer: string; peer_service?: string; method: string; route?: string; child?: string; ms: number; cast?: true }[];
  cpu_ms?: number;
  runq_ms?: number;
  blocked_ms?: number;
  cause: { component: string; detail: string; ms: number; subject?: string; via?: { component: string; service: string; ms: number; usual_ms?: number } };
  findings: string[];
  children: Explained[];
}

describe('e2e: requests explained on real Keystone, Neutron (OVN), Glance and nova-api on MariaDB, checked by a real Prometheus', {
  skip,
  timeout: 900_000,
}, () => {
  const ns = unique('sbperf', 15);
  let ovn: OvnStack;
  let os: OpenStack;
  let rabbit: RabbitAndCeilometer;
  let proxy: HttpDelayProxy;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let agent: AgentProcess;
  let prom: Prometheus;
  let agentPort = 0;
  // an OTLP/HTTP receiver: what the OpenTelemetry SDK's exporter sends (JSON)
  let otlp: Server;
  const otlpBodies: unknown[] = [];
  let network = '';
  const ports: string[] = [];
  const api = async (path: string) => (await agent.api('GET', path)).json;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'stackbpf-perf-e2e-'));
    pins = pinDir();
    await run('ip', ['netns', 'add', ns]);
    ovn = await OvnStack.start(ns);
    // the catalog names a proxy in front of Keystone: Neutron's keystonemiddleware validates through it
    let target = 0;
    proxy = await HttpDelayProxy.start(() => target);
    os = await OpenStack.start({ db: 'mariadb', endpointUrl: `http://127.0.0.1:${proxy.port}/v3` });
    target = os.keystonePort;
    await os.startNeutron({
      nbConnection: ovn.sock('nb'),
      sbConnection: ovn.sock('sb'),
      mariadb: true,
      authUrl: `http://127.0.0.1:${proxy.port}/v3`,
      tokenCache: false,
      logPipe: true,
      // a small greenthread pool, so a burst of slow requests fills it (the pool test)
      poolSize: 4,
    });
    // Glance and nova-api validate tokens through the same proxy, every time
    await os.startGlance({ authUrl: `http://127.0.0.1:${proxy.port}/v3`, tokenCache: false });
    rabbit = await RabbitAndCeilometer.start();
    await os.startNova({ authUrl: `http://127.0.0.1:${proxy.port}/v3`, tokenCache: false, transportUrl: rabbit.transportUrl });
    await os.startPlacement({ authUrl: `http://127.0.0.1:${proxy.port}/v3`, tokenCache: false });
    const token = randomBytes(24).toString('hex');
    const tokens = join(work, 'tokens.yaml');
    writeFileSync(
      tokens,
      stringify({ tokens: [{ name: 'e2e', scopes: ['status', 'read', 'admin'], sha256: createHash('sha256').update(token).digest('hex') }] }),
    );
    chmodSync(tokens, 0o600);
    writeFileSync(join(work, 'token'), token, { mode: 0o600 });
    const otlpPort = await freePort();
    otlp = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (req.url === '/v1/metrics' && req.method === 'POST') otlpBodies.push(JSON.parse(body));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => otlp.listen(otlpPort, '127.0.0.1', r));
    const port = await freePort();
    agentPort = port;
    agent = new AgentProcess(join(work, 'api.sock'), work);
    await agent.start(
      {
        state_dir: join(work, 'state'),
        pin_root: pins.dir,
        trace: { enabled: true },
        storage: { enabled: true },
        performance: {
          settle_ms: 1000,
          baseline: { learn_seconds: 300, recent_seconds: 5, min_samples: 4 },
          otlp: { endpoint: `http://127.0.0.1:${otlpPort}/v1/metrics`, interval_seconds: 1 },
        },
      },
      'agent',
      { port, token, tokensFile: tokens },
    );
    prom = await Prometheus.start(join(work, 'prom'), `127.0.0.1:${port}`, join(work, 'token'));
    // the services were running before the agent: their pooled connections are adopted; let it settle
    let traced: Record<string, number> = {};
    await until('the agent to trace keystone, neutron-server, glance and nova-api', async () => {
      traced = (await api('/v1/status')).trace.services;
      return traced.keystone >= 1 && traced['neutron-server'] >= 1 && traced.glance >= 1 && traced['nova-api'] >= 1;
    }).catch((err: Error) => {
      throw new Error(`${err.message}: traced ${JSON.stringify(traced)}`);
    });
    // the RPC services connect to RabbitMQ after the agent: the kernel sees each connection open
    // with AMQP's protocol header (the private broker is not on AMQP's port, which adoption goes by)
    await os.startNovaServices(() => rabbit.queues());
  });

  after(async () => {
    await new Promise((r) => (otlp ? otlp.close(r) : r(undefined)));
    await prom?.stop();
    await agent?.stop();
    await os?.stop();
    await rabbit?.stop();
    await proxy?.stop();
    await ovn?.stop();
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the openstack client: route templates of the real APIs, and a port create explained across neutron, keystone and OVN NB', async () => {
    network = JSON.parse(await os.openstack(['network', 'create', '-f', 'json', 'perf-net'])).id;
    for (let i = 0; i < 3; i++) ports.push(JSON.parse(await os.openstack(['port', 'create', '-f', 'json', '--network', network, `perf-port-${i}`])).id);
    await os.openstack(['port', 'show', '-f', 'json', ports[0] as string]);
    await os.openstack(['port', 'list', '-f', 'json']);
    let top: { service: string; route: string }[] = [];
    await until(
      'the port creates explained',
      async () => {
        top = await api('/v1/requests/top?window=600');
        return top.some((r) => r.service === 'neutron-server' && r.route === 'GET /v2.0/ports');
      },
      30_000,
      500,
    );
    const routes = top.map((r) => `${r.service} ${r.route}`);
    for (const want of [
      'neutron-server POST /v2.0/networks',
      'neutron-server POST /v2.0/ports',
      'neutron-server GET /v2.0/networks/{network_id}',
      'neutron-server GET /v2.0/ports/{port_id}',
      'neutron-server GET /v2.0/ports',
      'keystone POST /v3/auth/tokens',
      'keystone GET /v3/auth/tokens',
    ])
      assert.ok(routes.includes(want), `${want} in ${JSON.stringify(routes)}`);
    // never one route per object
    assert.ok(!routes.some((r) => /[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-/.test(r)), JSON.stringify(routes));
    // Neutron's and Glance's greenlet library is probed: their requests' SQL is their greenlet's
    const libs = (await api('/v1/status')).trace.greenlet as { path: string; error?: string }[];
    assert.ok(
      libs.some((l) => /\/greenlet\/_greenlet[^/]*\.so$/.test(l.path) && !l.error),
      JSON.stringify(libs),
    );

    // a port create: neutron → keystone (token validation, through the proxy) with keystone's own SQL, and OVN NB
    const creates = ((await api('/v1/requests?min_ms=0&limit=1000&since=10m&service=neutron-server')) as Explained[]).filter(
      (r) => r.method === 'POST' && r.route === '/v2.0/ports',
    );
    assert.equal(creates.length, 3);
    let stitched = 0;
    for (const c of creates) {
      const t = (await api(`/v1/requests/${c.key}`)) as Explained;
      const services = new Set<string>([t.service]);
      const walk = (x: Explained) => {
        services.add(x.service);
        for (const k of x.children) walk(k);
      };
      walk(t);
      const ovsdb = t.calls.filter((x) => x.kind === 'ovsdb');
      for (const x of ovsdb) services.add(x.peer_service as string);
      if (services.has('keystone') && services.has('ovsdb-server')) stitched++;
      assert.ok(t.sql.count > 10, `neutron's own SQL: ${t.sql.count}`);
      const k = t.children.find((x) => x.service === 'keystone');
      assert.ok(k, `the token validation is stitched: ${JSON.stringify(t.calls)}`);
      assert.equal(k.route, '/v3/auth/tokens');
      assert.equal(k.method, 'GET');
      assert.ok(k.sql.count > 0, "keystone's SQL is in its own request");
      assert.ok(
        ovsdb.some((x) => x.peer === 'OVN_Northbound' && /Logical_Switch_Port/.test(String(x.route))),
        `the OVN NB transaction that wrote the port: ${JSON.stringify(t.calls)}`,
      );
      assert.ok(t.cpu_ms !== undefined && t.cpu_ms > 0 && t.runq_ms !== undefined && t.blocked_ms !== undefined);
    }
    assert.equal(stitched, 3, 'every port create crosses neutron, keystone and OVN NB');
    // the CLI draws the same tree
    const { stdout } = await run(process.execPath, [cli, 'why', (creates[0] as Explained).key, '--api', `127.0.0.1:${agentPort}`], {
      env: { ...process.env, STACKBPF_TOKEN_FILE: join(work, 'token') },
    });
    assert.match(stdout, /neutron-server POST \/v2\.0\/ports/);
    assert.match(stdout, /keystone GET \/v3\/auth\/tokens/);
    assert.match(stdout, /ovsdb-server transact/);
    assert.match(stdout, /cause: /);
  });

  test('the openstack client: a server create explained across nova-api, glance, neutron and keystone', async () => {
    const image = join(work, 'perf-image.raw');
    writeFileSync(image, randomBytes(1 << 20));
    // Nova boots only on a network with a subnet (a documentation range)
    await os.openstack(['subnet', 'create', '-f', 'json', '--network', network, '--subnet-range', '192.0.2.0/24', 'perf-subnet']);
    await os.openstack(['flavor', 'create', '-f', 'json', '--ram', '64', '--disk', '1', '--vcpus', '1', 'perf-flavor']);
    await os.openstack(['image', 'create', '-f', 'json', '--disk-format', 'raw', '--container-format', 'bare', '--file', image, 'perf-image']);
    for (let i = 0; i < 3; i++)
      await os.openstack(['server', 'create', '-f', 'json', '--flavor', 'perf-flavor', '--image', 'perf-image', '--network', network, `perf-vm-${i}`]);
    let creates: Explained[] = [];
    await until(
      'the server creates explained',
      async () => {
        creates = ((await api('/v1/requests?min_ms=0&limit=1000&since=10m&service=nova-api')) as Explained[]).filter(
          (r) => r.method === 'POST' && r.route === '/v2.1/servers',
        );
        return creates.length === 3;
      },
      30_000,
      500,
    );
    const routes = ((await api('/v1/requests/top?window=600')) as { service: string; route: string }[]).map((r) => `${r.service} ${r.route}`);
    for (const want of ['nova-api POST /v2.1/servers', 'nova-api GET /v2.1/flavors/{flavor_id}', 'glance GET /v2/images/{image_id}'])
      assert.ok(routes.includes(want), `${want} in ${JSON.stringify(routes)}`);
    let stitched = 0;
    for (const c of creates) {
      assert.equal(c.status, 202);
      const t = (await api(`/v1/requests/${c.key}`)) as Explained;
      const services = new Set<string>();
      const walk = (x: Explained) => {
        services.add(x.service);
        for (const k of x.children) walk(k);
      };
      walk(t);
      if (['nova-api', 'glance', 'neutron-server', 'keystone'].every((s) => services.has(s))) stitched++;
      assert.ok(t.sql.count > 0, `nova-api's own SQL: ${t.sql.count}`);
      // (glanceclient asks for the versions first: GET /, which needs no token)
      const g = t.children.find((x) => x.service === 'glance' && x.route === '/v2/images/{image_id}');
      assert.ok(g, `nova-api's image lookup is stitched: ${JSON.stringify(t.calls)}`);
      assert.ok(
        g.children.some((x) => x.service === 'keystone' && x.route === '/v3/auth/tokens'),
        `glance's token validation hangs under glance's request: ${JSON.stringify({ route: g.route, calls: g.calls, children: g.children.map((x) => `${x.service} ${x.method} ${x.route}`) })}`,
      );
      const n = t.children.filter((x) => x.service === 'neutron-server');
      assert.ok(
        n.some((x) => x.route === '/v2.0/networks'),
        `nova-api's network checks are stitched: ${JSON.stringify(n.map((x) => x.route))}`,
      );
      assert.ok(
        n.every((x) => x.children.some((k) => k.service === 'keystone')),
        "each neutron request's token validation hangs under it",
      );
    }
    assert.equal(stitched, 3, 'every server create crosses nova-api, glance, neutron and keystone');
  });

  test('the server creates followed over RabbitMQ: nova-api casts to nova-conductor, which calls nova-scheduler, which asks placement', async () => {
    // the scheduler finds no compute node in placement: it answers NoValidHost, the conductor puts the server in ERROR
    await until(
      'the three servers in ERROR',
      async () => {
        const list = JSON.parse(await os.openstack(['server', 'list', '-f', 'json'])) as { Name: string; Status: string }[];
        return list.filter((x) => x.Name.startsWith('perf-vm-') && x.Status === 'ERROR').length === 3;
      },
      120_000,
      1000,
    );
    const creates = ((await api('/v1/requests?min_ms=0&limit=1000&since=10m&service=nova-api')) as Explained[]).filter(
      (r) => r.method === 'POST' && r.route === '/v2.1/servers',
    );
    assert.equal(creates.length, 3);
    const trees: Explained[] = [];
    await until(
      "each create's cast explained in the conductor, with the scheduler's call under it",
      async () => {
        trees.length = 0;
        for (const c of creates) trees.push((await api(`/v1/requests/${c.key}`)) as Explained);
        return trees.every((t) => t.children.some((k) => k.service === 'nova-conductor' && k.children.some((x) => x.service === 'nova-scheduler')));
      },
      60_000,
      1000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(trees.map((t) => t.calls.filter((c) => c.kind === 'amqp')))}`);
    });
    for (const t of trees) {
      const cast = t.calls.find((c) => c.kind === 'amqp');
      assert.deepEqual(
        { method: cast?.method, route: cast?.route, peer: cast?.peer_service, cast: cast?.cast },
        { method: 'CAST', route: 'conductor schedule_and_build_instances', peer: 'nova-conductor', cast: true },
      );
      const conductor = t.children.find((k) => k.service === 'nova-conductor') as Explained & { children: Explained[] };
      assert.equal(conductor.method, 'CAST');
      assert.ok(conductor.sql.count > 0, "the conductor's own SQL (the build request, the instance in ERROR)");
      const call = conductor.calls.find((c) => c.kind === 'amqp' && c.method === 'CALL');
      assert.equal(call?.route, 'scheduler select_destinations');
      assert.ok((call?.ms ?? 0) > 0, 'a call is timed from its publish to its reply');
      const scheduler = conductor.children.find((k) => k.service === 'nova-scheduler') as Explained & { children: Explained[] };
      assert.equal(scheduler.method, 'CALL');
      assert.equal(scheduler.route, 'scheduler select_destinations');
      assert.equal(scheduler.status, 500, 'NoValidHost came back as a remote exception');
      assert.ok(scheduler.duration_ms <= (call?.ms ?? 0), 'the handling lies within the call');
      const placement = scheduler.children.find((k) => k.service === 'placement' && k.route === '/allocation_candidates');
      assert.ok(placement, `the scheduler's placement query is stitched: ${JSON.stringify(scheduler.calls)}`);
    }
    // the client side as a duration per topic and method, the server side per service
    const metrics = (await agent.api('GET', '/metrics')).text;
    assert.match(
      metrics,
      /rpc_client_duration_seconds_count\{[^}]*service="nova-conductor"[^}]*rpc_system="oslo_messaging"[^}]*rpc_service="scheduler"[^}]*rpc_method="select_destinations"[^}]*\} [1-9]/,
    );
    assert.match(
      metrics,
      /rpc_server_duration_seconds_count\{[^}]*service="nova-scheduler"[^}]*rpc_method="select_destinations"[^}]*rpc_kind="call"[^}]*\} [1-9]/,
    );
    const status = (await api('/v1/status')).trace;
    assert.equal(status.sessions.amqp.desyncs, 0, 'no frame stream lost step');
    assert.equal(status.sessions.amqp.ids_missing, 0);
    assert.ok(status.keyScan.scans > 0, 'the big messages were scanned past their capture in the kernel');
  });

  test('a real Prometheus scrapes the durations in OpenTelemetry names and buckets; the SDK exports them as OTLP', async () => {
    const q = (x: string) => prom.query(x);
    await until(
      'Prometheus to have the port creates',
      async () =>
        (
          await q('sum(http_server_request_duration_seconds_count{service="neutron-server",http_route="/v2.0/ports",http_request_method="POST"})').catch(
            () => [],
          )
        ).length > 0,
      60_000,
      500,
    );
    const [n] = await q(
      'sum(http_server_request_duration_seconds_count{service="neutron-server",http_route="/v2.0/ports",http_request_method="POST",http_response_status_code="201"})',
    );
    assert.equal(Number(n?.value[1]), 3);
    const [p50] = await q(
      'histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{service="keystone",http_route="/v3/auth/tokens"}))',
    );
    assert.ok(Number(p50?.value[1]) > 0 && Number(p50?.value[1]) < 10, JSON.stringify(p50));
    const db = await q('sum by (db_operation_name) (db_client_operation_duration_seconds_count{service="neutron-server"})');
    assert.ok(
      db.some((x) => x.metric.db_operation_name === 'SELECT' && Number(x.value[1]) > 10),
      JSON.stringify(db),
    );
    assert.ok(
      db.some((x) => x.metric.db_operation_name === 'INSERT'),
      JSON.stringify(db),
    );
    const rpc = await q('sum by (rpc_service, rpc_method) (rpc_client_duration_seconds_count{service="neutron-server",rpc_system="ovsdb"})');
    assert.ok(
      rpc.some((x) => x.metric.rpc_service === 'OVN_Northbound' && x.metric.rpc_method === 'transact' && Number(x.value[1]) >= 3),
      JSON.stringify(rpc),
    );
    const client = await q('sum by (server_address) (http_client_request_duration_seconds_count{service="neutron-server"})');
    assert.ok(
      client.some((x) => x.metric.server_address === `127.0.0.1:${proxy.port}`),
      JSON.stringify(client),
    );
    // the same histogram exported as OTLP by the OpenTelemetry SDK: names, buckets and attributes of its conventions
    type Point = {
      attributes: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
      count: string | number;
      explicitBounds: number[];
    };
    type Metric = { name: string; unit: string; histogram?: { dataPoints: Point[] } };
    const metrics = (): Metric[] =>
      (otlpBodies as { resourceMetrics: { scopeMetrics: { metrics: Metric[] }[] }[] }[]).flatMap((b) =>
        b.resourceMetrics.flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics)),
      );
    const attr = (p: Point, k: string) => {
      const v = p.attributes.find((a) => a.key === k)?.value;
      return v?.stringValue ?? (v?.intValue !== undefined ? String(v.intValue) : undefined);
    };
    await until(
      'an OTLP export with the port creates',
      () =>
        metrics().some(
          (m) =>
            m.name === 'http.server.request.duration' &&
            m.histogram?.dataPoints.some((p) => attr(p, 'http.route') === '/v2.0/ports' && attr(p, 'http.request.method') === 'POST'),
        ),
      30_000,
      500,
    );
    const last = metrics()
      .filter((m) => m.name === 'http.server.request.duration')
      .at(-1) as Metric;
    assert.equal(last.unit, 's');
    const posts = last.histogram?.dataPoints.find(
      (p) => attr(p, 'http.route') === '/v2.0/ports' && attr(p, 'http.request.method') === 'POST' && attr(p, 'http.response.status_code') === '201',
    ) as Point;
    assert.equal(Number(posts.count), 3, 'cumulative: the three port creates');
    assert.equal(attr(posts, 'openstack.service'), 'neutron-server');
    assert.deepEqual(posts.explicitBounds, [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]);
    assert.ok(metrics().some((m) => m.name === 'db.client.operation.duration'));
    assert.ok(metrics().some((m) => m.name === 'http.client.request.duration'));
    assert.ok((await api('/v1/status')).performance.otlp.exported > 0);
    // the API's slowest fingerprints agree with what Prometheus counted
    // (Neutron's SQL goes on — its periodic tasks — so Prometheus's count is awaited until its next scrapes reach the API's)
    const fps = (await api('/v1/requests/sql?service=neutron-server&limit=500')) as { count: number }[];
    const total = fps.reduce((x, f) => x + f.count, 0);
    let scraped = 0;
    await until(
      `Prometheus's count of Neutron's statements to reach the API's ${total}`,
      async () => {
        const [sum] = await q('sum(db_client_operation_duration_seconds_count{service="neutron-server"})');
        scraped = Number(sum?.value[1]);
        return total <= scraped;
      },
      30_000,
      1000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: Prometheus has ${scraped}`);
    });
  });

  // ---- faults, each in its own window, on a steady workload --------------------------------------

  /** GET /v2.0/ports/{id} in a loop; every request has Keystone validate its token (no cache). */
  let stopLoad: (() => Promise<void>) | undefined;
  /** what the load's client measured: Neutron's request id, when it was sent, its latency */
  const clientSeen: { rid: string; at: number; ms: number }[] = [];
  const startLoad = () => {
    let on = true;
    const loop = (async () => {
      let i = 0;
      while (on) {
        const at = Date.now();
        const res = await fetch(`${os.neutronUrl}/v2.0/ports/${ports[i++ % ports.length]}`, { headers: { 'x-auth-token': await os.authToken() } }).catch(
          () => undefined,
        );
        await res?.arrayBuffer();
        const rid = res?.headers.get('x-openstack-request-id');
        if (rid) clientSeen.push({ rid, at, ms: Date.now() - at });
        if (clientSeen.length > 20_000) clientSeen.splice(0, 10_000);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    stopLoad = async () => {
      on = false;
      await loop;
    };
  };
  const ROUTE = 'GET /v2.0/ports/{port_id}';
  type Finding = { key: string; kind: string; service: string; subject: string; open: boolean; first_seen: number; moved?: { component: string } };
  const findings = async (): Promise<Finding[]> => api('/v1/requests/findings');
  const waitFinding = async (pred: (f: Finding) => boolean, what: string): Promise<Finding> => {
    let hit: Finding | undefined;
    try {
      await until(
        what,
        async () => {
          hit = (await findings()).find((f) => f.open && pred(f));
          return hit !== undefined;
        },
        60_000,
        500,
      );
    } catch (err) {
      const all = (await api('/v1/requests?min_ms=0&limit=30&since=30s')) as Explained[];
      const recent = all.map((r) => [r.service, r.route, r.duration_ms, r.cause.component, r.cause.ms]);
      if (process.env.STACKBPF_TEST_DEBUG) process.stderr.write(`slowest: ${JSON.stringify(await api(`/v1/requests/${all[0]?.key}`))}\n`);
      throw new Error(
        `${(err as Error).message}\nfindings: ${JSON.stringify(await findings())}\nrecent: ${JSON.stringify(recent)}\nstatus: ${JSON.stringify((await api('/v1/status')).performance)}`,
      );
    }
    return hit as Finding;
  };
  /** the explained requests of the route since t, slowest first */
  const affected = async (since: number): Promise<Explained[]> =>
    ((await api(`/v1/requests?service=neutron-server&min_ms=0&limit=2000&since=${since}`)) as Explained[]).filter((r) => `${r.method} ${r.route}` === ROUTE);
  /** at least 8 affected requests of the window (or what 30 s gave) */
  const collect = async (since: number, pred: (r: Explained) => boolean): Promise<Explained[]> => {
    let got: Explained[] = [];
    await until('requests the fault slowed', async () => (got = (await affected(since)).filter(pred)).length >= 8, 30_000, 500).catch(() => undefined);
    return got;
  };
  const settleClosed = async () => {
    await until('the findings to close', async () => (await findings()).every((f) => !f.open || f.kind === 'n_plus_one'), 60_000, 500).catch(
      async (err: Error) => {
        const open = (await findings()).filter((f) => f.open && f.kind !== 'n_plus_one');
        throw new Error(`${err.message}: still open ${JSON.stringify(open.map((f) => [f.kind, f.service, f.subject]))}`);
      },
    );
  };

  test('a healthy workload learns the baselines and raises no finding', async () => {
    startLoad();
    // learn, then watch a healthy window
    await new Promise((r) => setTimeout(r, 25_000));
    const before = Date.now();
    await new Promise((r) => setTimeout(r, 15_000));
    const raised = (await findings()).filter((f) => f.kind !== 'n_plus_one' && (f.open || f.first_seen >= before));
    assert.deepEqual(raised, [], 'no finding on a healthy run');
    assert.ok((await affected(before)).length >= 20, 'the workload ran');
  });

  test("Keystone's one uwsgi worker saturated by four clients at once: pool_saturated", async () => {
    const token = await os.authToken();
    let on = true;
    const flood = Array.from({ length: 4 }, async () => {
      while (on) {
        const r = await fetch(`${os.keystoneUrl}/auth/tokens`, { headers: { 'x-auth-token': token, 'x-subject-token': token } }).catch(() => undefined);
        await r?.arrayBuffer();
      }
    });
    try {
      const f = await waitFinding((x) => x.kind === 'pool_saturated' && x.service === 'keystone', 'a pool_saturated finding');
      assert.match((f as Finding & { detail: string }).detail, /^keystone: its 1 worker was busy \d+%/);
    } finally {
      on = false;
      await Promise.all(flood);
    }
    await settleClosed();
  });

  test("Neutron's greenthread pool (4) filled by twelve clients while Keystone answers it 300 ms late: pool_saturated, and why shows the wait", async () => {
    const t0 = Date.now();
    const token = await os.authToken();
    proxy.delayMs = 300;
    let on = true;
    // a new connection per request (no keep-alive): eventlet accepts it, then waits for a greenthread
    const get = () =>
      new Promise<void>((resolve) => {
        // the steady workload's route: its own requests close the route's finding afterwards
        const req = httpRequest(`${os.neutronUrl}/v2.0/ports/${ports[0]}`, { agent: false, headers: { 'x-auth-token': token } }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        });
        req.on('error', () => resolve());
        req.end();
      });
    const flood = Array.from({ length: 12 }, async () => {
      while (on) await get();
    });
    try {
      const f = await waitFinding((x) => x.kind === 'pool_saturated' && x.service === 'neutron-server', 'a pool_saturated finding for neutron-server');
      assert.match(
        (f as Finding & { detail: string }).detail,
        /^neutron-server: \d+ of \d+ new connections .* waited after their accept for a free greenthread/,
      );
      // the requests that waited, as `why` shows them (more are explained as the flood goes on)
      let waited: (Explained & { queued_ms?: number })[] = [];
      await until(
        'requests that say how long they waited for a greenthread',
        async () => {
          waited = ((await api(`/v1/requests?service=neutron-server&min_ms=0&limit=2000&since=${t0}`)) as (Explained & { queued_ms?: number })[]).filter(
            (x) => x.route === '/v2.0/ports/{port_id}' && x.queued_ms !== undefined,
          );
          return waited.length >= 5;
        },
        20_000,
        500,
      ).catch(() => undefined);
      assert.ok(waited.length >= 5, `${waited.length} requests say how long they waited for a greenthread`);
      assert.ok(
        waited.every((x) => (x.queued_ms as number) >= 20),
        JSON.stringify(waited.map((x) => x.queued_ms)),
      );
    } finally {
      on = false;
      await Promise.all(flood);
      proxy.delayMs = 0;
    }
    await settleClosed();
  });

  test('a slow dependency: Keystone answers Neutron 600 ms late — slow_dependency, and why names the dependency', async () => {
    const t0 = Date.now();
    proxy.delayMs = 600;
    try {
      const f = await waitFinding((x) => x.kind === 'slow_dependency' && x.service === 'neutron-server', 'a slow_dependency finding');
      assert.equal(f.subject, `127.0.0.1:${proxy.port}`);
      const r = await waitFinding((x) => x.kind === 'route_regression' && x.subject === ROUTE, 'the route regression');
      assert.equal(r.moved?.component, 'dependency');
      const slow = await collect(t0, (x) => x.duration_ms > 600);
      assert.ok(slow.length >= 5, `${slow.length} slow requests`);
      const right = slow.filter((x) => x.cause.component === 'dependency' && x.cause.subject === `127.0.0.1:${proxy.port}`);
      assert.ok(
        right.length >= 0.9 * slow.length,
        `why names the dependency for ${right.length} of ${slow.length}: ${JSON.stringify(slow.map((x) => x.cause))}`,
      );
    } finally {
      proxy.delayMs = 0;
    }
    await settleClosed();
  });

  test('a lock held in the database: slow_sql on the statement that waits, and why names it', async () => {
    const t0 = Date.now();
    // a session that holds a write lock on the ports table 700 ms out of every 900
    const lock = execFile('mariadb', [`--socket=${join(os.dir, 'mariadb', 'sock')}`, 'neutron'], { timeout: 120_000 });
    lock.stdin?.write(`${'LOCK TABLES ports WRITE; DO SLEEP(0.7); UNLOCK TABLES; DO SLEEP(0.2);\n'.repeat(60)}`);
    try {
      const f = await waitFinding((x) => x.kind === 'slow_sql' && x.service === 'neutron-server' && /\bports\b/.test(x.subject), 'a slow_sql finding');
      assert.match(f.subject, /^SELECT ports\./);
      const r = await waitFinding((x) => x.kind === 'route_regression' && x.subject === ROUTE, 'the route regression');
      assert.equal(r.moved?.component, 'sql');
      const slow = await collect(t0, (x) => (x.sql.slowest?.ms ?? 0) > 300);
      assert.ok(slow.length >= 5, `${slow.length} requests waited on the lock`);
      const right = slow.filter((x) => x.cause.component === 'sql' && /\bports\b/.test(String(x.cause.subject)));
      assert.ok(
        right.length >= 0.9 * slow.length,
        `why names the statement for ${right.length} of ${slow.length}: ${JSON.stringify(slow.map((x) => x.cause))}`,
      );
    } finally {
      lock.kill('SIGKILL');
    }
    await settleClosed();
  });

  test("a blocked eventlet hub: Neutron's log pipe stalls — hub_blocked, and why names the write on the pipe", async () => {
    const t0 = Date.now();
    let on = true;
    // the log reader stops 2.5 s of every 3 (the one-page pipe full): Neutron's next log write blocks
    const stalls = (async () => {
      while (on) {
        os.stallNeutronLog(true);
        await new Promise((r) => setTimeout(r, 2500));
        os.stallNeutronLog(false);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    let f: Finding;
    try {
      f = await waitFinding((x) => x.kind === 'hub_blocked' && x.service === 'neutron-server', 'a hub_blocked finding');
      // enough requests held up to judge (one per stall at most: the client is sequential; a fixed
      // 8 s gave CI only 2 once)
      await until('four requests held up by the hub', async () => clientSeen.filter((x) => x.at >= t0 && x.ms > 1000).length >= 4, 30_000, 500).catch(
        () => undefined,
      );
    } finally {
      on = false;
      await stalls;
      os.stallNeutronLog(false);
    }
    const t1 = Date.now();
    // the hub asleep writing to the log's FIFO, named by its path
    assert.match(f.subject, /^writev? \/.*\/neutron-log\.fifo$/);
    // the oracle is the client's clock: a request held up by the hub may have spent the block
    // unread in its socket, which its own duration on the server does not hold
    await new Promise((r) => setTimeout(r, 4000)); // the last of them explained (settle_ms)
    const slow = clientSeen.filter((x) => x.at >= t0 && x.at < t1 && x.ms > 1000);
    assert.ok(slow.length >= 3, `${slow.length} requests held up by the hub`);
    const why = await Promise.all(slow.map(async (x) => (await agent.api('GET', `/v1/requests/${x.rid}`)).json as Explained));
    const right = why.filter((x) => x.cause?.component === 'hub' && /neutron-log\.fifo/.test(x.cause.detail));
    assert.ok(
      right.length >= 0.8 * slow.length,
      `why names the blocked hub for ${right.length} of ${slow.length}: ${JSON.stringify(why.map((x, i) => [slow[i]?.ms, x.duration_ms, x.cause]))}`,
    );
    await settleClosed();
  });

  test("CPU starvation of Neutron's worker: cpu_starvation, and why names the wait for a CPU", async () => {
    const t0 = Date.now();
    const worker = (await affected(t0 - 60_000))[0]?.pid as number;
    assert.ok(worker > 0);
    const mask = (await run('taskset', ['-p', String(worker)])).stdout.trim().split(/\s+/).at(-1) as string;
    // the worker and five busy loops share CPU 0: the worker gets a sixth of it, so a request waits
    // about five times its CPU time (with three, a request of 30 ms on CPU waited under 100 ms: CI
    // saw 4 such requests in 30 s, too few to judge)
    await run('taskset', ['-a', '-p', '-c', '0', String(worker)]);
    const hogs = Array.from({ length: 5 }, () =>
      execFile('taskset', ['-c', '0', '/usr/bin/python3', '-c', 'import time\nend=time.time()+90\nwhile time.time()<end: pass'], { timeout: 120_000 }),
    );
    try {
      const f = await waitFinding((x) => x.kind === 'cpu_starvation' && x.service === 'neutron-server', 'a cpu_starvation finding');
      assert.equal(f.subject, ROUTE);
      const slow = await collect(t0, (x) => (x.runq_ms ?? 0) > 100);
      assert.ok(slow.length >= 5, `${slow.length} requests waited for a CPU`);
      const right = slow.filter((x) => x.cause.component === 'cpu_wait');
      // with two CPUs the hogs take one from everything else too: a request whose wait on Keystone
      // grew more than its run-queue wait, with Keystone's own request beyond its usual (the tree
      // says so through `via`), is named rightly — CI saw 3 of 8 such
      const callee = slow.filter(
        (x) => x.cause.component === 'dependency' && x.cause.via !== undefined && x.cause.via.ms >= 2 * (x.cause.via.usual_ms ?? Number.POSITIVE_INFINITY),
      );
      assert.ok(right.length >= 3, `${right.length} requests named the CPU wait`);
      assert.ok(
        right.length >= 0.8 * (slow.length - callee.length),
        `why names the CPU wait for ${right.length} of ${slow.length} (${callee.length} named a slow Keystone): ${JSON.stringify(slow.map((x) => [x.duration_ms, x.cause]))}`,
      );
    } finally {
      for (const h of hogs) h.kill('SIGKILL');
      await run('taskset', ['-a', '-p', mask, String(worker)]).catch(() => undefined);
      await stopLoad?.();
    }
  });
});
