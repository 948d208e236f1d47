// Convergence: how fast an OVN NB change reaches the BPF maps (and the BGP
// peer), how long a full resync of `ports` ports takes, and the agent's
// memory with them.
//
// Setup: the lab (upstream FRR peer + node namespace), a real ovsdb-server
// with the OVN NB schema filled with `ports` VM ports on one provider network
// (IPv6 addresses from 2001:db8::/32, bound to this node through
// options:requested-chassis, `up` written directly since no ovn-controller
// binds them here), and the real agent (NB mode) in a process of its own
// (bench/convergence-agent.ts), so its memory is its own; the harness reads
// the pinned maps directly, so it sees an entry the moment the kernel has it.
//   full_sync_ms     agent start → every port's address in the exact map (cold: connect, full
//                    dump, compute, map writes); route_full_ms: → the peer's kernel has them all
//   full_resync_ms   a forced full resync (new connection, full dump, recompute, diff, reconcile
//                    with nothing to change) while `ports` are installed
//   p50_ms, p99_ms   one NB transaction (a port created, or deleted) → its map entry written
//                    (or removed), as seen by a worker thread polling the pinned map with its
//                    own fd (so the agent's thread being busy cannot hide or delay it);
//                    `changes` of them, one at a time, alternating; add_ and delete_ split them
//                    (a delete waits for the BGP withdrawal first, by design)
//   peer_p50_ms, peer_p99_ms   the same for the first `peer-changes` creations → route in the
//                    peer's kernel (polled every 5 ms)
//   agent_rss_mb     resident memory of the agent, a process of its own (bench/convergence-agent.ts),
//                    after all of it; agent_peak_rss_mb its peak (VmHWM), with V8's breakdown;
//                    harness_rss_mb the benchmark's own process (NB writer, observer thread)
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { type ChildProcess, fork } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { BpfMap, parseIPv6 } from '../src/ebpf/index.js';
import { labAgentConfig } from '../src/cli/lab-cmd.js';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { labDown, labUp } from '../src/lab/lab.js';
import { OvsdbClient } from '../src/ovn/ovsdb.js';
import { pinDir, skipKernel, unique } from '../test/helpers/kernel.js';
import { NB_SCHEMA, OvsdbServer, skipOvsdb } from '../test/helpers/ovsdb.js';

const run = promisify(execFile);
const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) * 100) / 100;
};
const addrOf = (i: number): string => `2001:db8:1:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`;
const macOf = (i: number): string =>
  `fa:16:3e:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, pollMs = 1): Promise<number> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms`);
    await sleep(pollMs);
  }
  return performance.now() - t0;
}

const CHASSIS = 'bench-node';

function portRow(i: number): Record<string, unknown> {
  return { name: `bp-${i}`, addresses: ['set', [`${macOf(i)} ${addrOf(i)}`]], options: ['map', [['requested-chassis', CHASSIS]]], up: true };
}

export const bench = {
  summary: 'OVN NB change → BPF map (and → BGP peer) latency, full resync and RSS with N ports',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: { ports: { type: 'string', default: '10000' }, changes: { type: 'string', default: '200' }, 'peer-changes': { type: 'string', default: '20' } },
    });
    const ports = Number(values.ports);
    const changes = Number(values.changes);
    const peerChanges = Number(values['peer-changes']);
    if (skipKernel) throw new Error(`convergence needs the kernel: ${skipKernel}`);
    if (skipOvsdb) throw new Error(`convergence needs OVSDB: ${skipOvsdb}`);

    const lab = await labUp({ name: unique('conv', 20).toLowerCase(), vms: [] });
    const pins = pinDir();
    const work = mkdtempSync(join(tmpdir(), 'stackbpf-conv-'));
    const srv = await OvsdbServer.start({ schema: NB_SCHEMA });
    const writer = new OvsdbClient({
      remote: srv.unix,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'] } },
      log: createLogger({ level: 'error' }),
    }).start();
    let child: ChildProcess | undefined;
    let seq = 0;
    const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
    /** one request to the agent process */
    const ask = (op: string, extra: Record<string, unknown> = {}): Promise<any> =>
      new Promise((resolve, reject) => {
        const id = ++seq;
        pending.set(id, { resolve, reject });
        child?.send({ id, op, ...extra });
      });
    let watcher: Worker | undefined;
    try {
      await run('ip', ['-n', lab.node.ns, 'link', 'add', 'br-ex', 'type', 'veth', 'peer', 'name', 'br-ex-p']);
      await run('ip', ['-n', lab.node.ns, 'link', 'set', 'br-ex', 'up']);
      await writer.waitSynced();
      // the provider network and `ports` VM ports, in batches
      await writer.transact([
        {
          op: 'insert',
          table: 'Logical_Switch_Port',
          row: { name: 'provnet', type: 'localnet', addresses: 'unknown', options: ['map', [['network_name', 'physnet1']]] },
          'uuid-name': 'ln',
        },
        { op: 'insert', table: 'Logical_Switch', row: { name: 'neutron-bench', ports: ['named-uuid', 'ln'] } },
      ]);
      const fill0 = performance.now();
      const batch = 1000;
      for (let b = 0; b < ports; b += batch) {
        const ops: unknown[] = [];
        const refs: unknown[] = [];
        for (let i = b; i < Math.min(ports, b + batch); i++) {
          ops.push({ op: 'insert', table: 'Logical_Switch_Port', row: portRow(i), 'uuid-name': `p${i}` });
          refs.push(['named-uuid', `p${i}`]);
        }
        ops.push({ op: 'mutate', table: 'Logical_Switch', where: [['name', '==', 'neutron-bench']], mutations: [['ports', 'insert', ['set', refs]]] });
        await writer.transact(ops);
      }
      log(`NB filled with ${ports} ports in ${Math.round(performance.now() - fill0)} ms`);

      // validated here, sent to the agent process as it is
      const rawConfig = {
        ...labAgentConfig(lab, pins.dir),
        state_dir: join(work, 'state'),
        dataplane: { provider_interfaces: [lab.node.provider], max_exposures: Math.max(131072, ports * 2) },
        ovn: { mode: 'nb', connection: srv.unix, chassis: CHASSIS, bridge_mappings: 'physnet1:br-ex', resync_seconds: 0 },
        exposures: [],
      };
      parseConfig(rawConfig);
      // BENCH_AGENT_NODE_FLAGS: V8/Node flags for the agent process (e.g. to compare heap settings)
      const execArgv = (process.env.BENCH_AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean);
      child = fork(new URL('./convergence-agent.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
      const c = child;
      c.on('message', (m: { id?: number; ok?: unknown; error?: string }) => {
        const p = m.id !== undefined ? pending.get(m.id) : undefined;
        if (!p) return;
        pending.delete(m.id as number);
        m.error ? p.reject(new Error(`agent: ${m.error}`)) : p.resolve(m.ok);
      });
      c.on('exit', (code) => {
        for (const p of pending.values()) p.reject(new Error(`the agent process exited (${code})`));
        pending.clear();
      });
      await new Promise((resolve) => c.once('message', resolve)); // ready
      const t0 = performance.now();
      await ask('start', { config: rawConfig });
      const v6 = BpfMap.fromPin(`${pins.dir}/dataplane/maps/exp_v6`);
      const has = (i: number): boolean => v6.lookup(parseIPv6(addrOf(i))) !== undefined;
      watcher = new Worker(new URL('./map-watch-worker.js', import.meta.url), { workerData: { path: `${pins.dir}/dataplane/maps/exp_v6` } });
      const w = watcher;
      await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      const seen = (addr: string, present: boolean): Promise<number> =>
        new Promise((resolve, reject) => {
          w.once('message', (m: { at?: number; error?: string }) => (m.error ? reject(new Error(m.error)) : resolve(m.at as number)));
          w.postMessage({ addr, present, timeoutMs: 30_000 });
        });
      const wall = (): number => performance.timeOrigin + performance.now();
      await waitFor(() => has(0) && has(ports - 1), 120_000);
      const fullSyncMs = performance.now() - t0;
      log(`full sync: ${ports} ports in the maps after ${Math.round(fullSyncMs)} ms`);
      const peerHas = async (addr: string): Promise<boolean> =>
        (await run('ip', ['-n', lab.upstream.ns, '-6', 'route', 'show', `${addr}/128`])).stdout.trim() !== '';
      const routeFullMs = (await waitFor(() => peerHas(addrOf(ports - 1)), 300_000, 50)) + fullSyncMs;
      log(`the peer has the last route after ${Math.round(routeFullMs)} ms`);
      await ask('reconcile');

      // forced full resync: new connection, full dump, recompute, reconcile with nothing to change
      const resyncs: number[] = [];
      for (let r = 0; r < 3; r++) resyncs.push((await ask('resync')).ms as number);
      const fullResyncMs = pct(resyncs, 50);
      log(`full resync (median of 3): ${Math.round(fullResyncMs)} ms`);

      // one change at a time: create a port (→ entry written), delete it (→ entry removed)
      const lat: number[] = [];
      const latAdd: number[] = [];
      const latDel: number[] = [];
      const peer: number[] = [];
      for (let c = 0; c < changes; c++) {
        const i = ports + c;
        const appears = seen(addrOf(i), true);
        const c0 = wall();
        await writer.transact([
          { op: 'insert', table: 'Logical_Switch_Port', row: portRow(i), 'uuid-name': 'np' },
          { op: 'mutate', table: 'Logical_Switch', where: [['name', '==', 'neutron-bench']], mutations: [['ports', 'insert', ['named-uuid', 'np']]] },
        ]);
        const add = (await appears) - c0;
        lat.push(add);
        latAdd.push(add);
        if (c < peerChanges) peer.push((await waitFor(() => peerHas(addrOf(i)), 30_000, 5)) + add);
        await ask('reconcile');
        const uuid = (await ask('uuid', { name: `bp-${i}` })).uuid as string;
        const disappears = seen(addrOf(i), false);
        const d0 = wall();
        await writer.transact([
          { op: 'mutate', table: 'Logical_Switch', where: [['name', '==', 'neutron-bench']], mutations: [['ports', 'delete', ['uuid', uuid]]] },
          { op: 'delete', table: 'Logical_Switch_Port', where: [['name', '==', `bp-${i}`]] },
        ]);
        const del = (await disappears) - d0;
        lat.push(del);
        latDel.push(del);
        await ask('reconcile');
        if ((c + 1) % 50 === 0) log(`changes: ${c + 1}/${changes}, p99 so far ${pct(lat, 99)} ms`);
      }
      const mem = await ask('memory');
      const harnessRss = Math.round((process.memoryUsage().rss / 1048576) * 10) / 10;
      v6.close();
      return {
        ports,
        p50_ms: pct(lat, 50),
        p99_ms: pct(lat, 99),
        add_p50_ms: pct(latAdd, 50),
        add_p99_ms: pct(latAdd, 99),
        delete_p50_ms: pct(latDel, 50),
        delete_p99_ms: pct(latDel, 99),
        peer_p50_ms: pct(peer, 50),
        peer_p99_ms: pct(peer, 99),
        full_sync_ms: Math.round(fullSyncMs),
        route_full_ms: Math.round(routeFullMs),
        full_resync_ms: Math.round(fullResyncMs),
        recompute_ms: mem.recompute_ms,
        agent_rss_mb: mem.rss_mb,
        agent_peak_rss_mb: mem.peak_rss_mb,
        agent_memory: mem,
        harness_rss_mb: harnessRss,
        changes: lat.length,
      };
    } finally {
      await watcher?.terminate();
      if (child && child.exitCode === null) {
        await Promise.race([ask('stop').catch(() => undefined), sleep(10_000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await writer.stop();
      await srv.stop();
      // the agent leaves its data plane attached on stop: detach it with the pins and the lab
      pins.remove();
      await labDown(lab.name);
      rmSync(work, { recursive: true, force: true });
    }
  },
};
