// npm run bench -- trace-overhead [--rounds N] [--requests N] [--loops N]
//
// What full tracing costs the node, with and without the agent, in one
// invocation, runs interleaved (untraced, traced, traced, untraced, ...):
// - Keystone (Debian package, uwsgi, on MariaDB) API throughput over a
//   fixed request mix (token validation, project/user/domain listings),
//   sequential requests → traced_rps, untraced_rps, ratio;
// - a syscall-heavy workload outside the monitored set (grep -r over
//   /usr/lib/python3/dist-packages, ~26,000 files, 370 MB: openat, fstat,
//   read, close, getdents over every file, page cache warm)
//   → workload_ratio (traced time / untraced time), and the same
//   workload as a monitored service (every open an event, stored) →
//   workload_ratio_monitored;
// - the added cost per syscall for an unmonitored process on a hooked
//   syscall (read: entry and exit hooks) and an unhooked one (getppid),
//   from C loops (min of several runs each side) → hooked_unmonitored_ns,
//   unhooked_ns; and the same read loop with empty programs on the same two
//   hooks (no agent) → empty_hook_ns, the kernel's dispatch cost there, which
//   no program can go below.
// "Traced" is the real agent process (`stackbpf agent`, tracing and
// storage on, defaults otherwise).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { request } from 'node:http';
import { stringify } from 'yaml';
import { BpfObject } from '../src/ebpf/index.js';
import { objectPath, packageRoot } from '../src/paths.js';
import { OpenStack } from '../test/helpers/openstack.js';

const run = promisify(execFile);
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

export async function buildSysloop(dir: string): Promise<string> {
  const out = join(dir, 'sysloop');
  await run('cc', ['-O2', '-o', out, join(packageRoot, 'bench', 'c', 'sysloop.c')]);
  return out;
}

/** A request to an agent's API socket; the answer parsed as JSON when it is JSON. */
export function agentApi(socket: string, method: string, path: string, body?: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method, headers: { 'content-type': 'application/json' } }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(t));
        } catch {
          resolve(t);
        }
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const apiGet = (socket: string, path: string): Promise<any> => agentApi(socket, 'GET', path);

/** The real agent process with tracing and storage on. */
export async function startAgent(work: string, extra: Record<string, unknown> = {}): Promise<{ child: ChildProcess; socket: string; stop(): Promise<void> }> {
  const socket = join(work, `api-${Date.now()}.sock`);
  const file = join(work, 'agent.yaml');
  writeFileSync(file, stringify({ state_dir: join(work, 'state'), api: { listen: `unix:${socket}` }, ...extra }));
  const child = spawn(process.execPath, [cli, 'agent', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (c) => (err += c));
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      await apiGet(socket, '/v1/status');
      break;
    } catch {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`the agent did not start: ${err.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    child,
    socket,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function keystoneRps(os: OpenStack, token: string, n: number): Promise<number> {
  const mix: { path: string; headers: Record<string, string> }[] = [
    { path: '/auth/tokens', headers: { 'x-auth-token': token, 'x-subject-token': token } },
    { path: '/projects', headers: { 'x-auth-token': token } },
    { path: '/users', headers: { 'x-auth-token': token } },
    { path: '/domains', headers: { 'x-auth-token': token } },
  ];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const m = mix[i % mix.length] as (typeof mix)[number];
    const res = await fetch(`${os.keystoneUrl}${m.path}`, { headers: m.headers });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`keystone ${m.path}: ${res.status}`);
  }
  return (n * 1000) / (performance.now() - t0);
}

/** grep -r for a string no file holds: reads the whole tree. */
async function workload(tree: string, needle: string): Promise<number> {
  const t0 = performance.now();
  await run('/bin/sh', ['-c', `grep -rF ${needle} ${tree} > /dev/null; exit 0`], { maxBuffer: 1 << 20 });
  return performance.now() - t0;
}

async function minLoop(sysloop: string, mode: string, loops: number, n: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < loops; i++) xs.push(Number((await run(sysloop, [mode, String(n)])).stdout));
  return Math.min(...xs);
}

export const bench = {
  summary: 'cost of full tracing: Keystone API throughput, a syscall-heavy workload, per-syscall cost for unmonitored processes',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({ args, options: { rounds: { type: 'string' }, requests: { type: 'string' }, loops: { type: 'string' } }, strict: true });
    const rounds = Number(values.rounds ?? 4);
    const requests = Number(values.requests ?? 300);
    const loops = Number(values.loops ?? 7);
    const work = mkdtempSync(join(tmpdir(), 'sbb-trace-'));
    const tree = '/usr/lib/python3/dist-packages';
    const marker = 'sbb-monitored-workload';
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: bench-workload\n    cmdline: "${marker}"\n`);
    const sysloop = await buildSysloop(work);
    log('starting keystone on mariadb');
    const os = await OpenStack.start({ db: 'mariadb' });
    const res: Record<
      'traced' | 'untraced',
      { rps: number[]; workload: number[]; monitored: number[]; getppid: number[]; read: number[]; floorRead: number[] }
    > = {
      traced: { rps: [], workload: [], monitored: [], getppid: [], read: [], floorRead: [] },
      untraced: { rps: [], workload: [], monitored: [], getppid: [], read: [], floorRead: [] },
    };
    const floorObj = BpfObject.open(objectPath('test/trace_floor'));
    await floorObj.load();
    let events = 0;
    let lost = 0;
    try {
      const token = await os.authToken();
      await keystoneRps(os, token, 40); // warm caches
      await workload(tree, 'sbb-no-such-string');
      for (let r = 0; r < rounds; r++) {
        const order: ('traced' | 'untraced')[] = r % 2 ? ['traced', 'untraced'] : ['untraced', 'traced'];
        for (const mode of order) {
          const agent = mode === 'traced' ? await startAgent(work, { trace: { rules_file: join(work, 'rules.yaml') } }) : undefined;
          try {
            const x = res[mode];
            await new Promise((r) => setTimeout(r, 2000)); // let the agent settle after start
            await keystoneRps(os, token, 20); // and warm Keystone again
            x.rps.push(await keystoneRps(os, token, requests));
            x.workload.push(await workload(tree, 'sbb-no-such-string'));
            // the same workload as a monitored service: its argv carries the marker the rules match
            x.monitored.push(await workload(tree, marker));
            x.getppid.push(await minLoop(sysloop, 'getppid', loops, 1_000_000));
            x.read.push(await minLoop(sysloop, 'read', loops, 1_000_000));
            if (!agent) {
              const links = [
                floorObj.program('floor_read_enter').attachTracepoint('syscalls', 'sys_enter_read'),
                floorObj.program('floor_read_exit').attachTracepoint('syscalls', 'sys_exit_read'),
              ];
              try {
                x.floorRead.push(await minLoop(sysloop, 'read', loops, 1_000_000));
              } finally {
                for (const l of links) l.close();
              }
            }
            if (agent) {
              const st = await apiGet(agent.socket, '/v1/status');
              events += Object.values(st.trace.events as Record<string, number>).reduce((a, b) => a + b, 0);
              lost += Object.values(st.trace.lost as Record<string, number>).reduce((a, b) => a + b, 0);
            }
            log(
              `round ${r + 1}/${rounds} ${mode.padEnd(8)} keystone ${x.rps.at(-1)?.toFixed(1)} req/s, grep ${x.workload.at(-1)?.toFixed(0)} ms, grep monitored ${x.monitored.at(-1)?.toFixed(0)} ms, getppid ${x.getppid.at(-1)} ns, read ${x.read.at(-1)} ns`,
            );
          } finally {
            await agent?.stop();
          }
        }
      }
    } finally {
      floorObj.close();
      await os.stop();
      rmSync(work, { recursive: true, force: true });
    }
    const t = res.traced;
    const u = res.untraced;
    const round2 = (x: number): number => Math.round(x * 100) / 100;
    return {
      traced_rps: round2(median(t.rps)),
      untraced_rps: round2(median(u.rps)),
      ratio: Math.round((median(t.rps) / median(u.rps)) * 1000) / 1000,
      workload_ratio: Math.round((median(t.workload) / median(u.workload)) * 1000) / 1000,
      workload_ratio_monitored: Math.round((median(t.monitored) / median(u.monitored)) * 1000) / 1000,
      hooked_unmonitored_ns: round2(median(t.read) - median(u.read)),
      unhooked_ns: round2(median(t.getppid) - median(u.getppid)),
      empty_hook_ns: round2(median(u.floorRead) - median(u.read)),
      baseline_getppid_ns: round2(median(u.getppid)),
      baseline_read_ns: round2(median(u.read)),
      workload_ms: { traced: t.workload.map(Math.round), untraced: u.workload.map(Math.round) },
      rps: { traced: t.rps.map(round2), untraced: u.rps.map(round2) },
      rounds,
      requests_per_round: requests,
      traced_events: events,
      traced_lost: lost,
    };
  },
};
