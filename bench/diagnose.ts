// npm run bench -- diagnose [--rounds N] [--requests N] [--traced N] [--fault-seconds S]
//
// "Why is this slow?" measured on the real testbed: Keystone (uwsgi) and
// Neutron (eventlet, ML2/OVN on a real OVN NB) on a private MariaDB, the
// agent tracing them, nothing added to the services.
//
// 1. Against OSProfiler (python3-osprofiler, trace_sqlalchemy = True, its
//    sqlalchemy driver storing spans in MariaDB): requests carrying
//    OSProfiler's trace headers (made by OSProfiler's own client API) —
//    Keystone token validations, Neutron port reads and port creates (Neutron
//    validates every token with Keystone: no cache). Per request and service,
//    our SQL statement count against OSProfiler's `db` spans (its own INSERTs
//    into the osprofiler database, which we see too, are left out by the
//    database the connection logged into) → sql_count_agreement; the
//    difference in DB time → db_time_error_ms (median |ours − theirs|;
//    OSProfiler's spans have ms resolution).
// 2. Cost, interleaved rounds (rotated order) of trace-overhead's Keystone
//    request mix: no agent; no agent with OSProfiler's headers on every
//    request; the agent with tracing only (performance off); the agent with
//    the performance module → rps each, with ratios and 95% intervals.
// 3. Injected faults, each in its own window, on a steady workload (an HTTP
//    client reading Neutron ports with fresh validations: the `openstack`
//    client takes ~2 s a call here, too slow to fill a window), after a
//    learned baseline and a healthy window: slow SQL (a proxy in front of
//    MariaDB adds 40 ms to every answer to Neutron), a slow dependency (a
//    proxy in front of Keystone adds 600 ms), CPU starvation (Neutron's
//    worker pinned to CPU 0 with three busy loops), a lock held in the
//    database (LOCK TABLES ports WRITE 700 ms of every 900). Affected
//    requests: those of the window the client itself measured slower than the
//    healthy window's p99; diagnosis_accuracy: the share of them whose
//    explanation (`why`) names the injected cause; false_findings: findings
//    raised in the healthy window; time_to_finding_s: fault start to the
//    first finding of its kind.
// 4. stitched_share: `openstack port create` and `openstack server create`
//    requests explained end to end — a port create: Neutron, the Keystone
//    validation it caused, the OVN NB transaction; a server create (Glance,
//    nova-api, placement, nova-conductor and nova-scheduler on a private
//    RabbitMQ started for this part only): nova-api, the Glance and Neutron
//    requests it caused, each with its own Keystone validation, and over
//    RabbitMQ its cast handled by the conductor, the conductor's call handled
//    by the scheduler, and the scheduler's placement query.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fingerprint } from '../src/analytics/sql.js';
import { packageRoot } from '../src/paths.js';
import { RabbitAndCeilometer } from '../test/helpers/ceilometer.js';
import { OpenStack } from '../test/helpers/openstack.js';
import { OvnStack } from '../test/helpers/ovn.js';
import { DelayProxy, HttpDelayProxy } from '../test/helpers/proxy.js';
import { agentApi, ratioCI, startAgent } from './trace-overhead.js';

const run = promisify(execFile);
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? Number.NaN : s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
};
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const PY = '/usr/bin/python3';
const PROFILER_KEY = 'stackbpf-bench-profiler';

interface Explained {
  key: string;
  service: string;
  method: string;
  route: string;
  duration_ms: number;
  sql: { count: number; total_ms: number; statements?: { fingerprint: string; count: number; total_ms: number }[] };
  calls: { kind: string; peer: string; peer_service?: string; route?: string; child?: string }[];
  cause: { component: string; subject?: string };
  children: Explained[];
}

/** OSProfiler's trace headers, one fresh base id per request (its own client API). */
async function traceHeaders(n: number): Promise<{ base_id: string; headers: Record<string, string> }[]> {
  const { stdout } = await run(PY, [join(packageRoot, 'bench', 'py', 'osprofiler_headers.py'), PROFILER_KEY, String(n)], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout);
}

/** OSProfiler's report of each trace: per project, db spans and their ms. */
async function profilerReports(conn: string, ids: string[]): Promise<Record<string, Record<string, { db: number; db_ms: number; statements: string[] }>>> {
  const p = execFile(PY, [join(packageRoot, 'bench', 'py', 'osprofiler_report.py'), conn], { maxBuffer: 1 << 26, timeout: 300_000 });
  let out = '';
  let err = '';
  p.stdout?.on('data', (c) => (out += c));
  p.stderr?.on('data', (c) => (err += c));
  p.stdin?.end(`${ids.join('\n')}\n`);
  const code = await new Promise<number>((r) => p.on('exit', (c) => r(c ?? 1)));
  if (code !== 0) throw new Error(`osprofiler_report.py: ${err.slice(-2000)}`);
  return JSON.parse(out);
}

/** trace-overhead's Keystone request mix; `headers()` may add OSProfiler's to each request. */
async function keystoneRps(os: OpenStack, token: string, n: number, headers?: () => Record<string, string>): Promise<number> {
  const mix = ['/auth/tokens', '/projects', '/users', '/domains'];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const path = mix[i % mix.length] as string;
    const h: Record<string, string> = { 'x-auth-token': token, ...(path === '/auth/tokens' ? { 'x-subject-token': token } : {}), ...(headers?.() ?? {}) };
    const res = await fetch(`${os.keystoneUrl}${path}`, { headers: h });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`keystone ${path}: ${res.status}`);
  }
  return (n * 1000) / (performance.now() - t0);
}

export const bench = {
  summary: "why-is-this-slow on real Keystone/Neutron: SQL counts and DB time against OSProfiler, each one's cost, injected faults, stitching",
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: { rounds: { type: 'string' }, requests: { type: 'string' }, traced: { type: 'string' }, 'fault-seconds': { type: 'string' } },
      strict: true,
    });
    const rounds = Number(values.rounds ?? 3);
    const requests = Number(values.requests ?? 200);
    const traced = Number(values.traced ?? 20);
    const faultMs = Number(values['fault-seconds'] ?? 25) * 1000;
    const work = mkdtempSync(join(tmpdir(), 'sbb-diagnose-'));
    const ns = `sbbdiag${process.pid % 100000}`;
    let ovn: OvnStack | undefined;
    let os: OpenStack | undefined;
    let rabbit: RabbitAndCeilometer | undefined;
    const ksProxy = await HttpDelayProxy.start(() => os?.keystonePort ?? 0);
    const dbProxy = await DelayProxy.start(() => os?.mariadbPort ?? 0);
    let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
    const result: Record<string, unknown> = {};
    try {
      log('starting OVN, Keystone and Neutron on MariaDB, OSProfiler configured in both');
      await run('ip', ['netns', 'add', ns]);
      ovn = await OvnStack.start(ns);
      os = await OpenStack.start({ db: 'mariadb', endpointUrl: `http://127.0.0.1:${ksProxy.port}/v3`, profilerKey: PROFILER_KEY });
      await os.startNeutron({
        nbConnection: ovn.sock('nb'),
        sbConnection: ovn.sock('sb'),
        mariadb: true,
        dbPort: dbProxy.port,
        authUrl: `http://127.0.0.1:${ksProxy.port}/v3`,
        tokenCache: false,
        logPipe: true,
      });
      const o = os;
      const token = await o.authToken();
      const network = (await o.neutronApi('POST', '/networks', { network: { name: 'bench-net' } })).network.id as string;
      const ports: string[] = [];
      for (let i = 0; i < 3; i++) ports.push((await o.neutronApi('POST', '/ports', { port: { network_id: network, name: `bench-${i}` } })).port.id);

      // ---- 2. cost: interleaved rounds ----------------------------------------------------------
      log(`cost: ${rounds} rounds of ${requests} Keystone requests in four settings`);
      type Mode = 'none' | 'osprofiler' | 'tracer' | 'stackbpf';
      const modes: Mode[] = ['none', 'osprofiler', 'tracer', 'stackbpf'];
      const rps: Record<Mode, number[]> = { none: [], osprofiler: [], tracer: [], stackbpf: [] };
      await keystoneRps(o, token, 40);
      // --rounds 0 skips this part
      for (let r = 0; r < rounds; r++) {
        const order = [...modes.slice(r % 4), ...modes.slice(0, r % 4)];
        for (const mode of order) {
          const a =
            mode === 'tracer' || mode === 'stackbpf'
              ? await startAgent(work, { pin_root: `/sys/fs/bpf/sbb-diag-${process.pid}`, performance: { enabled: mode === 'stackbpf' } })
              : undefined;
          try {
            const pool = mode === 'osprofiler' ? await traceHeaders(requests + 20) : [];
            let i = 0;
            const h = mode === 'osprofiler' ? () => (pool[i++] as { headers: Record<string, string> }).headers : undefined;
            await sleep(1500);
            await keystoneRps(o, token, 20, h);
            rps[mode].push(await keystoneRps(o, token, requests, h));
          } finally {
            await a?.stop();
          }
        }
        log(`  round ${r + 1}: ${modes.map((m) => `${m} ${r3(rps[m].at(-1) as number)}`).join(', ')} rps`);
      }
      if (rounds > 0) {
        result.keystone_rps = Object.fromEntries(modes.map((m) => [m, r3(median(rps[m]))]));
        result.keystone_rps_spread = Object.fromEntries(modes.map((m) => [m, [r3(Math.min(...rps[m])), r3(Math.max(...rps[m]))]]));
        result.osprofiler_cost = ratioCI(rps.osprofiler, rps.none);
        result.stackbpf_cost = ratioCI(rps.stackbpf, rps.none);
        result.tracer_cost = ratioCI(rps.tracer, rps.none);
        result.module_overhead = ratioCI(rps.stackbpf, rps.tracer);
      }

      // ---- the agent for the rest -----------------------------------------------------------------
      agent = await startAgent(work, {
        pin_root: `/sys/fs/bpf/sbb-diag-${process.pid}`,
        performance: { settle_ms: 1000, baseline: { learn_seconds: 300, recent_seconds: 5, min_samples: 4 } },
      });
      const api = (path: string): Promise<any> => agentApi((agent as { socket: string }).socket, 'GET', path);
      await sleep(2000);

      // ---- 1. against OSProfiler ------------------------------------------------------------------
      log(`OSProfiler: ${traced} requests of each kind with its trace headers`);
      const hs = await traceHeaders(3 * traced);
      const sent: { base: string; rid: string; kind: string }[] = [];
      for (let i = 0; i < 3 * traced; i++) {
        const t = hs[i] as { base_id: string; headers: Record<string, string> };
        const kind = i % 3 === 0 ? 'keystone GET /v3/auth/tokens' : i % 3 === 1 ? 'neutron GET /v2.0/ports/{port_id}' : 'neutron POST /v2.0/ports';
        const res =
          i % 3 === 0
            ? await fetch(`${o.keystoneUrl}/auth/tokens`, { headers: { 'x-auth-token': token, 'x-subject-token': token, ...t.headers } })
            : i % 3 === 1
              ? await fetch(`${o.neutronUrl}/v2.0/ports/${ports[i % ports.length]}`, { headers: { 'x-auth-token': token, ...t.headers } })
              : await fetch(`${o.neutronUrl}/v2.0/ports`, {
                  method: 'POST',
                  headers: { 'x-auth-token': token, 'content-type': 'application/json', ...t.headers },
                  body: JSON.stringify({ port: { network_id: network, name: `traced-${i}` } }),
                });
        await res.arrayBuffer();
        const rid = res.headers.get('x-openstack-request-id');
        if (res.ok && rid) sent.push({ base: t.base_id, rid, kind });
      }
      await sleep(3000);
      const reports = await profilerReports(
        o.profilerUrl(),
        sent.map((s) => s.base),
      );
      const pairs: { kind: string; service: string; ours: number; theirs: number; oursMs: number; theirsMs: number }[] = [];
      // like for like: OSProfiler records what SQLAlchemy runs through a cursor. What the DB-API
      // driver sends itself — commit() and rollback() (COMMIT, ROLLBACK on the wire), a new
      // connection's SET autocommit / SET NAMES — reaches the wire, where we see it, but no cursor;
      // and OSProfiler's own span writes (two INSERTs into its `data` table per span, on the same
      // thread) are the instrument's, not the request's
      const instrumentOnly = (fp: string) =>
        /^(COMMIT|ROLLBACK|SET autocommit = \?|SET names \w+)$/i.test(fp) || /^INSERT INTO data \(timestamp, base_id, parent_id, trace_id\b/.test(fp);
      const own = (e: Explained) => {
        let count = 0;
        let ms = 0;
        for (const st of e.sql.statements ?? [])
          if (!instrumentOnly(st.fingerprint)) {
            count += st.count;
            ms += st.total_ms;
          }
        return { count, ms };
      };
      const projects: Record<string, string[]> = {};
      /** per kind and fingerprint: ours − OSProfiler's, summed over the requests that disagree */
      const diff = new Map<string, number>();
      for (const s of sent) {
        const tree = (await api(`/v1/requests/${s.rid}`)) as Explained | { statusCode: number };
        const rep = reports[s.base] ?? {};
        if (!('key' in tree)) continue;
        projects[s.kind] = [...new Set([...(projects[s.kind] ?? []), ...Object.keys(rep)])];
        const mine = own(tree);
        const project = tree.service === 'keystone' ? 'keystone' : 'neutron';
        pairs.push({
          kind: s.kind,
          service: tree.service,
          ours: mine.count,
          theirs: rep[project]?.db ?? 0,
          oursMs: mine.ms,
          theirsMs: rep[project]?.db_ms ?? 0,
        });
        // where the two differ: the statements one saw and the other did not (by fingerprint)
        if (mine.count !== (rep[project]?.db ?? 0)) {
          const bag = new Map<string, number>();
          for (const st of tree.sql.statements ?? []) if (!instrumentOnly(st.fingerprint)) bag.set(st.fingerprint, (bag.get(st.fingerprint) ?? 0) + st.count);
          for (const st of rep[project]?.statements ?? []) {
            const f = fingerprint(st);
            const k = [...bag.keys()].find((x) => x.slice(0, 120) === f.slice(0, 120)) ?? f;
            bag.set(k, (bag.get(k) ?? 0) - 1);
          }
          for (const [f, n] of bag) {
            const key = `${s.kind}: ${f.slice(0, 160)}`;
            if (n !== 0) diff.set(key, (diff.get(key) ?? 0) + n);
          }
        }
        // the Keystone validation Neutron made for it, in the same OSProfiler trace when Neutron passed the headers on
        const k = tree.children.find((c) => c.service === 'keystone');
        if (k && rep.keystone) {
          const kk = own(k);
          pairs.push({
            kind: `${s.kind} → keystone`,
            service: 'keystone',
            ours: kk.count,
            theirs: rep.keystone.db,
            oursMs: kk.ms,
            theirsMs: rep.keystone.db_ms,
          });
        }
      }
      const agree = pairs.filter((p) => p.ours === p.theirs).length;
      result.osprofiler_compared = pairs.length;
      result.osprofiler_projects = projects;
      result.sql_count_differences = Object.fromEntries([...diff].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 12));
      result.osprofiler_requests_sent = sent.length;
      result.sql_count_agreement = pairs.length ? r3(agree / pairs.length) : null;
      result.db_time_error_ms = pairs.length ? r3(median(pairs.map((p) => Math.abs(p.oursMs - p.theirsMs)))) : null;
      result.sql_count_disagreements = pairs
        .filter((p) => p.ours !== p.theirs)
        .slice(0, 10)
        .map((p) => ({ kind: p.kind, ours: p.ours, osprofiler: p.theirs }));
      result.sql_per_kind = Object.fromEntries(
        [...new Set(pairs.map((p) => p.kind))].map((k) => {
          const ps = pairs.filter((p) => p.kind === k);
          return [
            k,
            {
              n: ps.length,
              ours_median: median(ps.map((p) => p.ours)),
              osprofiler_median: median(ps.map((p) => p.theirs)),
              db_ms_ours: r3(median(ps.map((p) => p.oursMs))),
              db_ms_osprofiler: median(ps.map((p) => p.theirsMs)),
            },
          ];
        }),
      );

      // ---- 3. faults on a steady workload ---------------------------------------------------------
      type Sample = { at: number; ms: number; rid: string };
      const samples: Sample[] = [];
      let on = true;
      const load = (async () => {
        let i = 0;
        while (on) {
          const t0 = performance.now();
          const at = Date.now();
          try {
            const res = await fetch(`${o.neutronUrl}/v2.0/ports/${ports[i++ % ports.length]}`, { headers: { 'x-auth-token': token } });
            await res.arrayBuffer();
            const rid = res.headers.get('x-openstack-request-id');
            if (rid) samples.push({ at, ms: performance.now() - t0, rid });
          } catch {
            /* counted as missing */
          }
          await sleep(50);
        }
      })();
      const findings = async (): Promise<{ kind: string; first_seen: number; open: boolean; subject: string }[]> => api('/v1/requests/findings');
      log('faults: learning a baseline (30 s), then a healthy window (20 s)');
      await sleep(30_000);
      const healthyFrom = Date.now();
      await sleep(20_000);
      const healthy = samples.filter((s) => s.at >= healthyFrom).map((s) => s.ms);
      const healthyP99 = quantile(healthy, 0.99);
      const falseFindings = (await findings()).filter((f) => f.first_seen >= healthyFrom);
      result.false_findings = falseFindings.length;
      result.healthy_window = { requests: healthy.length, p50_ms: r3(median(healthy)), p99_ms: r3(healthyP99) };

      /** a proxy holds every answer back `ms`, until the fault ends */
      const hold = (p: DelayProxy | HttpDelayProxy, ms: number) => async () => {
        p.delayMs = ms;
        return async () => {
          p.delayMs = 0;
        };
      };
      const worker = async (): Promise<number> =>
        ((await api('/v1/requests?service=neutron-server&min_ms=0&limit=1&since=30s')) as { pid: number }[])[0]?.pid ?? 0;
      const faults: { name: string; kind: string; component: string; subject?: RegExp; start(): Promise<() => Promise<void>> }[] = [
        { name: 'slow_sql', kind: 'slow_sql', component: 'sql', start: hold(dbProxy, 40) },
        { name: 'slow_dependency', kind: 'slow_dependency', component: 'dependency', start: hold(ksProxy, 600) },
        {
          name: 'cpu_starvation',
          kind: 'cpu_starvation',
          component: 'cpu_wait',
          async start() {
            const pid = await worker();
            const mask = (await run('taskset', ['-p', String(pid)])).stdout.trim().split(/\s+/).at(-1) as string;
            await run('taskset', ['-a', '-p', '-c', '0', String(pid)]);
            const hogs = Array.from({ length: 3 }, () =>
              execFile('taskset', ['-c', '0', PY, '-c', `import time\nend=time.time()+${faultMs / 1000 + 30}\nwhile time.time()<end: pass`]),
            );
            return async () => {
              for (const h of hogs) h.kill('SIGKILL');
              await run('taskset', ['-a', '-p', mask, String(pid)]).catch(() => undefined);
            };
          },
        },
        {
          // Neutron's log reader stalls 2.5 s of every 3, its one-page pipe full: the hub blocks in write(2)
          name: 'blocked_hub',
          kind: 'hub_blocked',
          component: 'hub',
          subject: /neutron-log\.fifo/,
          async start() {
            let on = true;
            const loop = (async () => {
              while (on) {
                o.stallNeutronLog(true);
                await sleep(2500);
                o.stallNeutronLog(false);
                await sleep(500);
              }
            })();
            return async () => {
              on = false;
              await loop;
              o.stallNeutronLog(false);
            };
          },
        },
        {
          name: 'db_lock',
          kind: 'slow_sql',
          component: 'sql',
          subject: /\bports\b/,
          async start() {
            const lock = execFile('mariadb', [`--socket=${join(o.dir, 'mariadb', 'sock')}`, 'neutron']);
            lock.stdin?.write('LOCK TABLES ports WRITE; DO SLEEP(0.7); UNLOCK TABLES; DO SLEEP(0.2);\n'.repeat(Math.ceil(faultMs / 900) + 30));
            return async () => {
              lock.kill('SIGKILL');
            };
          },
        },
      ];
      const perFault: Record<string, unknown> = {};
      let right = 0;
      let affectedAll = 0;
      let rightNamed = 0;
      let affectedNamed = 0;
      const ttf: number[] = [];
      for (const f of faults) {
        log(`fault ${f.name} (${faultMs / 1000} s)`);
        const t0 = Date.now();
        const stop = await f.start();
        let first: number | undefined;
        const end = t0 + faultMs;
        while (Date.now() < end) {
          await sleep(250);
          if (first === undefined) {
            const hit = (await findings()).find((x) => x.kind === f.kind && x.first_seen >= t0 && x.open);
            if (hit) first = hit.first_seen;
          }
        }
        await stop();
        await sleep(3000); // the last requests of the window explained
        const affected = samples.filter((s) => s.at >= t0 && s.at < end && s.ms > healthyP99);
        let ok = 0;
        const causes: Record<string, number> = {};
        // what the client measured, by the cause named: a fault's own victims against the route's natural tail
        const clientMs: Record<string, number[]> = {};
        for (const s of affected) {
          const e = (await api(`/v1/requests/${s.rid}`)) as Explained | { statusCode: number };
          const c = 'key' in e ? e.cause : undefined;
          const name = c ? c.component : 'unexplained';
          causes[name] = (causes[name] ?? 0) + 1;
          (clientMs[name] ??= []).push(s.ms);
          if (c && c.component === f.component && (!f.subject || f.subject.test(String(c.subject)))) ok++;
        }
        right += ok;
        affectedAll += affected.length;
        // the four faults the issue names (the blocked hub is one we added)
        if (f.name !== 'blocked_hub') {
          rightNamed += ok;
          affectedNamed += affected.length;
        }
        if (first !== undefined) ttf.push((first - t0) / 1000);
        perFault[f.name] = {
          affected: affected.length,
          diagnosis_accuracy: affected.length ? r3(ok / affected.length) : null,
          causes,
          client_ms_median_by_cause: Object.fromEntries(Object.entries(clientMs).map(([k, v]) => [k, r3(median(v))])),
          time_to_finding_s: first !== undefined ? r3((first - t0) / 1000) : null,
        };
        log(`  ${JSON.stringify(perFault[f.name])}`);
        log('  recovering (20 s)');
        await sleep(20_000);
      }
      on = false;
      await load;
      result.faults = perFault;
      result.diagnosis_accuracy = affectedAll ? r3(right / affectedAll) : null;
      result.diagnosis_accuracy_issue_faults = affectedNamed ? r3(rightNamed / affectedNamed) : null;
      result.time_to_finding_s = ttf.length === faults.length ? r3(Math.max(...ttf)) : null;

      // ---- 4. stitching ---------------------------------------------------------------------------
      const creates = 10;
      log(`stitching: ${creates} × openstack port create`);
      const since = Date.now();
      for (let i = 0; i < creates; i++) await o.openstack(['port', 'create', '-f', 'json', '--network', network, `stitch-${i}`]);
      await sleep(3000);
      const posts = ((await api(`/v1/requests?service=neutron-server&min_ms=0&limit=1000&since=${since}`)) as Explained[]).filter(
        (r) => r.method === 'POST' && r.route === '/v2.0/ports',
      );
      let stitched = 0;
      for (const p of posts) {
        const t = (await api(`/v1/requests/${p.key}`)) as Explained;
        const k = t.children.some((c) => c.service === 'keystone' && c.route === '/v3/auth/tokens');
        const nb = t.calls.some((c) => c.kind === 'ovsdb' && c.peer === 'OVN_Northbound');
        if (k && nb) stitched++;
      }
      result.port_creates = { sent: creates, explained: posts.length, stitched };
      // server creates: Glance and nova-api join only now, so the figures above are the same two services'
      log('stitching: starting RabbitMQ, Glance, nova-api, placement, nova-conductor and nova-scheduler');
      rabbit = await RabbitAndCeilometer.start();
      await o.startGlance({ authUrl: `http://127.0.0.1:${ksProxy.port}/v3`, tokenCache: false });
      await o.startNova({ authUrl: `http://127.0.0.1:${ksProxy.port}/v3`, tokenCache: false, transportUrl: rabbit.transportUrl });
      await o.startPlacement({ authUrl: `http://127.0.0.1:${ksProxy.port}/v3`, tokenCache: false });
      const broker = rabbit;
      await o.startNovaServices(() => broker.queues());
      const image = join(work, 'bench-image.raw');
      writeFileSync(image, Buffer.alloc(1 << 20, 1));
      await o.openstack(['subnet', 'create', '-f', 'json', '--network', network, '--subnet-range', '192.0.2.0/24', 'bench-subnet']);
      await o.openstack(['flavor', 'create', '-f', 'json', '--ram', '64', '--disk', '1', '--vcpus', '1', 'bench-flavor']);
      await o.openstack(['image', 'create', '-f', 'json', '--disk-format', 'raw', '--container-format', 'bare', '--file', image, 'bench-image']);
      log(`stitching: ${creates} × openstack server create`);
      const since2 = Date.now();
      for (let i = 0; i < creates; i++)
        await o.openstack(['server', 'create', '-f', 'json', '--flavor', 'bench-flavor', '--image', 'bench-image', '--network', network, `stitch-vm-${i}`]);
      let servers: Explained[] = [];
      const validated = (x: Explained) => x.children.some((c) => c.service === 'keystone' && c.route === '/v3/auth/tokens');
      const endToEnd = (t: Explained): boolean => {
        // the image lookup (glanceclient's version discovery, GET /, needs no token)
        const glance = t.children.filter((c) => c.service === 'glance' && c.route !== '/');
        const neutron = t.children.filter((c) => c.service === 'neutron-server');
        const conductor = t.children.find((c) => c.service === 'nova-conductor' && c.method === 'CAST');
        const scheduler = conductor?.children.find((c) => c.service === 'nova-scheduler' && c.method === 'CALL');
        const placement = scheduler?.children.find((c) => c.service === 'placement' && c.route === '/allocation_candidates');
        return glance.length > 0 && neutron.length > 0 && [...glance, ...neutron].every(validated) && placement !== undefined;
      };
      // a cast is explained once its greenthread has been quiet for settle_ms: wait for the trees (≤ 60 s)
      let stitchedServers = 0;
      for (let waited = 0; waited < 60_000; waited += 2000) {
        await sleep(2000);
        servers = ((await api(`/v1/requests?service=nova-api&min_ms=0&limit=1000&since=${since2}`)) as Explained[]).filter(
          (r) => r.method === 'POST' && r.route === '/v2.1/servers',
        );
        stitchedServers = 0;
        for (const p of servers) if (endToEnd((await api(`/v1/requests/${p.key}`)) as Explained)) stitchedServers++;
        if (servers.length === creates && stitchedServers === servers.length) break;
      }
      result.server_creates = { sent: creates, explained: servers.length, stitched: stitchedServers };
      result.stitched_share = r3((stitched + stitchedServers) / (2 * creates));
      result.agent_status = (await api('/v1/status')).performance;
      return result;
    } finally {
      await agent?.stop();
      await os?.stop();
      await rabbit?.stop();
      await ksProxy.stop();
      await dbProxy.stop();
      await ovn?.stop();
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      rmSync(`/sys/fs/bpf/sbb-diag-${process.pid}`, { recursive: true, force: true });
      rmSync(work, { recursive: true, force: true });
    }
  },
};
