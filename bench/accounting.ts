// npm run bench -- accounting [--parts cost,guests,scale] [--json]
//
// Resource accounting beside a real Ceilometer, on the same guests in the
// same run (docs/benchmarks.md has the method and the figures):
//
// cost    the tap counter's cost per packet: the TC program run by
//         BPF_PROG_TEST_RUN on a frame per traffic class, in interleaved
//         rounds, beside a floor (a program that bumps one counter).
// guests  two libvirt/QEMU (TCG) guests defined as Nova defines them, traffic
//         and disk I/O, our agent and two ceilometer-polling agents (libvirt
//         pollsters; every 10 s, and at the default 300 s) publishing through
//         a real ceilometer-agent-notification. Ground truth when the guests
//         are frozen at the end: the taps' device counters, the scheduler's
//         per-thread CPU, QEMU's block statistics, VmRSS. Also: a guest that
//         lives 20 s, and our agent SIGKILLed and restarted mid-traffic.
//         Cost: CPU of our agent and of Ceilometer's agents over the run.
// scale   1,000 taps, each claimed by a domain (libvirt status files written
//         for 1,000 idle processes): our agent's CPU per second and RSS.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AcctClass } from '../src/accounting/abi.js';
import { AccountingKernel } from '../src/accounting/kernel.js';
import { BpfObject } from '../src/ebpf/index.js';
import { objectPath } from '../src/paths.js';
import { AgentProcess, until } from '../test/helpers/agent.js';
import { RabbitAndCeilometer } from '../test/helpers/ceilometer.js';
import { pinDir } from '../test/helpers/kernel.js';
import { blkstat, type GuestSpec, LibvirtLab, schedCpu, tapName, uuid4, virsh } from '../test/helpers/libvirt.js';
import { ipv4Packet, ipv6Packet } from '../test/helpers/packets.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stderr.write(`accounting: ${m}\n`);
const HZ = 100;

/**
 * CPU seconds of a process tree: the process with the children it reaped
 * (cutime, cstime), and its live descendants. Ceilometer's agents are a
 * cotyledon master and forked workers that rename themselves.
 */
function treeCpu(pid: number | undefined): number {
  if (!pid) return 0;
  let ticks = 0;
  const walk = (p: number, reaped: boolean): void => {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0);
      for (const t of readdirSync(`/proc/${p}/task`))
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) walk(Number(c), true);
    } catch {}
  };
  walk(pid, true);
  return ticks / HZ;
}
const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const errPct = (got: number | undefined, truth: number): number =>
  got === undefined ? 100 : truth === 0 ? (got === 0 ? 0 : 100) : (Math.abs(got - truth) / truth) * 100;

async function costPart(rounds: number, repeat: number): Promise<Record<string, unknown>> {
  const pins = pinDir();
  const k = await AccountingKernel.open({ pinRoot: pins.dir });
  const floorObj = BpfObject.open(objectPath('test/maps'));
  await floorObj.load();
  try {
    // the rules an operator would have: the default tenant and local-segment prefixes
    const rules = [
      ...['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7', '192.0.2.0/24'].map((prefix) => ({
        prefix,
        klass: AcctClass.east_west,
      })),
      ...['169.254.169.254/32', 'fe80::/10', 'ff00::/8', '224.0.0.0/4', '255.255.255.255/32'].map((prefix) => ({ prefix, klass: AcctClass.node })),
    ];
    k.setRules(rules);
    const ref = k.tapRef('lo', undefined);
    k.attachTap('lo', undefined, ref);
    const frames: Record<string, Buffer> = {
      v4_east_west: ipv4Packet({ src: '192.0.2.10', dst: '192.0.2.11', payload: Buffer.alloc(1000) }),
      v4_north_south: ipv4Packet({ src: '192.0.2.10', dst: '203.0.113.9', payload: Buffer.alloc(1000) }),
      v6_north_south: ipv6Packet({ src: '2001:db8::10', dst: '2001:db8:2::9' }),
    };
    const prog = k.object.program('acct_tap_out');
    const floor = floorObj.program('tc_count');
    const runs: Record<string, number[]> = { floor: [] };
    for (const n of Object.keys(frames)) runs[n] = [];
    for (let r = 0; r < rounds; r++) {
      runs.floor!.push(floor.testRun({ data: frames.v4_east_west, repeat }).durationNs);
      for (const [n, f] of Object.entries(frames)) runs[n]!.push(prog.testRun({ data: f, repeat }).durationNs);
    }
    const out: Record<string, unknown> = { rules: rules.length, rounds, repeat };
    for (const [n, xs] of Object.entries(runs)) out[`tap_${n}_ns`] = { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
    out.tap_ns = median(runs.v4_north_south as number[]);
    out.tap_floor_ns = median(runs.floor as number[]);
    k.detachTap(ref);
    return out;
  } finally {
    floorObj.close();
    k.close();
    pins.remove();
  }
}

async function guestsPart(duration: number): Promise<Record<string, unknown>> {
  const lab = await LibvirtLab.start();
  const pins = pinDir();
  const work = mkdtempSync(join(tmpdir(), 'stackbpf-bench-accounting-'));
  let ceilo: RabbitAndCeilometer | undefined;
  const agent = new AgentProcess(join(work, 'api.sock'), work);
  const udp: ReturnType<typeof spawn>[] = [];
  try {
    ceilo = await RabbitAndCeilometer.start();
    await ceilo.startNotification();
    const config = {
      pin_root: pins.dir,
      state_dir: join(work, 'state'),
      accounting: {
        enabled: true,
        tap_namespaces: [lab.ns],
        east_west: ['192.0.2.0/24'],
        services: false,
        publish: { transport_url: ceilo.transportUrl, interval_seconds: 60 },
      },
    };
    await agent.start(config);
    const mk = (n: number, over: Partial<GuestSpec>): GuestSpec => ({
      name: `instance-${(0x7d000000 + n * 0x1000 + Math.floor(Math.random() * 0xfff)).toString(16)}`,
      uuid: uuid4(),
      displayName: `bench-${n}`,
      projectId: 'e930ad51b074439598614bde8d369d66',
      userId: 'd58e19adcf0048e6aa350521a944472d',
      portId: uuid4(),
      mac: `fa:16:3e:00:02:${n.toString(16).padStart(2, '0')}`,
      ip: `192.0.2.${30 + n}/24`,
      gw: '192.0.2.1',
      ...over,
    });
    const A = mk(1, { ping: ['192.0.2.32', '198.51.100.1', '169.254.169.254'], disk: true, size: 1400 });
    const B = mk(2, { ping: ['192.0.2.31'], size: 1000 });
    const C = mk(3, { ping: ['192.0.2.1', '198.51.100.1'], size: 1400, pause: 0.5 });
    for (const g of [A, B]) lab.addTap(g.portId);
    await sleep(1500);
    const pidA = lab.startGuest({ ...A, tapReady: true });
    const pidB = lab.startGuest({ ...B, tapReady: true });
    const poll10 = ceilo.startPolling(10, 'poll10');
    const poll300 = ceilo.startPolling(300, 'poll300');
    await sleep(3000);
    const t0 = Date.now();
    const agentPids = [agent.pid as number];
    const cpu0 = {
      agent: treeCpu(agentPids[0]),
      p10: treeCpu(poll10.pid),
      p300: treeCpu(poll300.pid),
      notif: treeCpu(ceilo.notificationPid),
    };
    // traffic into A from the host side: UDP to a closed port (the guest answers with ICMP), bounded;
    // it stops 5 s before the guests are frozen (frames sent to a frozen guest are dropped by its tap)
    udp.push(
      spawn('ip', [
        'netns',
        'exec',
        lab.ns,
        '/usr/bin/python3',
        '-c',
        `import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nend=time.time()+${duration - 5}\nn=0\nwhile time.time()<end and n<${duration * 400}:\n  s.sendto(b'x'*1200,('192.0.2.31',9)); n+=1; time.sleep(0.0025)\n`,
      ]),
    );
    // a guest that lives 20 s
    await sleep(5000);
    log('short-lived guest');
    lab.addTap(C.portId);
    await sleep(1500);
    lab.startGuest({ ...C, tapReady: true });
    await sleep(20_000);
    lab.destroyGuest(C.name);
    const tapC = lab.tapCounters(tapName(C.portId));
    // our agent killed mid-traffic and restarted
    log('restart');
    let agentCpuBeforeKill = treeCpu(agentPids[0]) - cpu0.agent;
    await agent.stop('SIGKILL');
    await sleep(5000);
    await agent.start(config, 'agent-restarted');
    const agentPid2 = agent.pid as number;
    const cpuAgent2 = treeCpu(agentPid2);
    const remaining = duration * 1000 - (Date.now() - t0);
    if (remaining > 0) await sleep(remaining);
    // freeze; wait for a Ceilometer poll after the freeze and two of our readings
    log('freeze and compare');
    virsh('suspend', A.name);
    virsh('suspend', B.name);
    const frozenAt = Date.now();
    await sleep(1500);
    const wall = (Date.now() - t0) / 1000;
    agentCpuBeforeKill += treeCpu(agentPid2) - cpuAgent2;
    const cost = {
      agent_cpu_pct: round((agentCpuBeforeKill / wall) * 100, 3), // with its virsh children (the balloon figures)
      ceilometer_cpu_pct: round(((treeCpu(poll10.pid) - cpu0.p10) / wall) * 100, 3),
      ceilometer_300s_cpu_pct: round(((treeCpu(poll300.pid) - cpu0.p300) / wall) * 100, 3),
      ceilometer_notification_cpu_pct: round(((treeCpu(ceilo.notificationPid) - cpu0.notif) / wall) * 100, 3),
    };
    const truth = {
      tapA: lab.tapCounters(tapName(A.portId)),
      tapB: lab.tapCounters(tapName(B.portId)),
      cpuA: schedCpu(pidA),
      cpuB: schedCpu(pidB),
      rssA: rssMb(pidA),
      blkA: blkstat(A.name),
    };
    await until(
      'a Ceilometer poll after the freeze',
      () => ceilo!.samples().some((s) => s.resource_metadata.instance_host === 'poll10' && Date.parse(`${s.timestamp}Z`) > frozenAt + 500),
      30_000,
      500,
    );
    // two of our readings after the truth was read
    const n0 = (await agent.api('GET', '/v1/status')).json.accounting.readings as number;
    await until('two readings after the truth', async () => (await agent.api('GET', '/v1/status')).json.accounting.readings >= n0 + 2, 10_000, 200);
    const since = t0 - 600_000;
    const rows = (await agent.api('GET', `/v1/usage?since=${since}`)).json as { resource_id: string; meter: string; volume: number }[];
    const ours = (res: string, m: string) => rows.find((r) => r.resource_id === res && r.meter === m)?.volume;
    const samples = ceilo.samples();
    const theirs = (host: string, res: string, m: string): number | undefined =>
      samples.filter((s) => s.resource_metadata.instance_host === host && s.resource_id === res && s.name === m).at(-1)?.volume;
    const iface = (g: GuestSpec) => `${g.name}-${g.uuid}-${tapName(g.portId)}`;
    const checks: [string, string, number][] = [];
    for (const [g, tap] of [
      [A, truth.tapA],
      [B, truth.tapB],
    ] as const) {
      checks.push(
        [iface(g), 'network.incoming.bytes', tap.txBytes],
        [iface(g), 'network.outgoing.bytes', tap.rxBytes],
        [iface(g), 'network.incoming.packets', tap.txPackets],
        [iface(g), 'network.outgoing.packets', tap.rxPackets],
      );
    }
    checks.push(
      [A.uuid, 'cpu', truth.cpuA],
      [B.uuid, 'cpu', truth.cpuB],
      [`${A.uuid}-vda`, 'disk.device.read.bytes', truth.blkA.rd_bytes as number],
      [`${A.uuid}-vda`, 'disk.device.write.bytes', truth.blkA.wr_bytes as number],
      [A.uuid, 'memory.resident', truth.rssA],
    );
    // The CPU truth: the scheduler's figure of every live thread (ns) leaves out the threads that
    // exited (QEMU's worker threads come and go); /proc/PID/stat's utime + stime is the whole thread
    // group's runtime, exited threads included, in 10 ms ticks. Ours must lie between the first (read
    // before ours) and the second (read after ours) plus two ticks: outside it, the distance is the error.
    const groupNs = (pid: number): number => {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1e9) / HZ;
    };
    const after = { [A.uuid]: groupNs(pidA) + 2e7, [B.uuid]: groupNs(pidB) + 2e7 };
    const errOurs = (res: string, m: string, o: number | undefined, t: number): number => {
      const hi = m === 'cpu' ? after[res] : undefined;
      if (o === undefined || hi === undefined) return errPct(o, t);
      if (o >= t && o <= hi) return 0;
      return (Math.min(Math.abs(o - t), Math.abs(o - hi)) / t) * 100;
    };
    const per: Record<string, { truth: number; ours?: number; ceilometer?: number; ceilometer_300s?: number }> = {};
    let maxOurs = 0;
    let maxTheirs = 0;
    let maxTheirs300 = 0;
    let restartErr = 0;
    for (const [res, m, t] of checks) {
      const o = ours(res, m);
      const c10 = theirs('poll10', res, m);
      const c300 = theirs('poll300', res, m);
      per[`${res === A.uuid || res.startsWith(A.name) || res.startsWith(A.uuid) ? 'A' : 'B'} ${m}`] = {
        truth: t,
        ...(m === 'cpu' ? { truth_with_exited_threads_max: round(after[res] as number, 0) } : {}),
        ...(o !== undefined ? { ours: o } : {}),
        ...(c10 !== undefined ? { ceilometer: c10 } : {}),
        ...(c300 !== undefined ? { ceilometer_300s: c300 } : {}),
      };
      maxOurs = Math.max(maxOurs, errOurs(res, m, o, t));
      maxTheirs = Math.max(maxTheirs, errPct(c10, t));
      maxTheirs300 = Math.max(maxTheirs300, errPct(c300, t));
      if (m.startsWith('network.') || m.startsWith('disk.') || m === 'cpu') restartErr = Math.max(restartErr, errOurs(res, m, o, t));
    }
    // negative deltas in our stored 1-second series, every meter of A and B
    let negative = 0;
    for (const [res, m] of checks) {
      const series = (await agent.api('GET', `/v1/usage/series?resource=${encodeURIComponent(res)}&meter=${m}&since=${since}`)).json as { volume: number }[];
      if (m === 'memory.resident') continue;
      for (let i = 1; i < series.length; i++) if ((series[i] as { volume: number }).volume < (series[i - 1] as { volume: number }).volume) negative++;
    }
    const st = (await agent.api('GET', '/v1/status')).json.accounting;
    // the short-lived guest
    const rowsC = (await agent.api('GET', `/v1/usage?since=${since}&instance=${C.uuid}`)).json as { resource_id: string; meter: string; volume: number }[];
    const oursC = (m: string) => rowsC.find((r) => r.resource_id === iface(C) && r.meter === m)?.volume ?? 0;
    const truthC = tapC.rxBytes + tapC.txBytes;
    const theirsC = (host: string) => (theirs(host, iface(C), 'network.outgoing.bytes') ?? 0) + (theirs(host, iface(C), 'network.incoming.bytes') ?? 0);
    const pct = (x: number) => round((x / truthC) * 100, 2);
    poll10.kill('SIGTERM');
    poll300.kill('SIGTERM');
    return {
      duration_s: round(wall, 1),
      resolution_s: 1,
      ceilometer_resolution_s: 10,
      ceilometer_default_resolution_s: 300,
      max_error_pct: round(maxOurs, 3),
      ceilometer_max_error_pct: round(maxTheirs, 3),
      ceilometer_300s_max_error_pct: round(maxTheirs300, 3),
      short_lived_bytes_pct: pct(oursC('network.outgoing.bytes') + oursC('network.incoming.bytes')),
      ceilometer_short_lived_bytes_pct: pct(theirsC('poll10')),
      ceilometer_300s_short_lived_bytes_pct: pct(theirsC('poll300')),
      restart_error_pct: round(restartErr, 3),
      negative_deltas: negative,
      regressions: st.regressions,
      ...(st.lastRegression ? { last_regression: st.lastRegression } : {}),
      ...cost,
      per_meter: per,
    };
  } finally {
    for (const p of udp) p.kill('SIGKILL');
    await agent.stop();
    await ceilo?.stop();
    await lab.stop();
    pins.remove();
    rmSync(work, { recursive: true, force: true });
  }
}

async function scalePart(taps: number, seconds: number): Promise<Record<string, unknown>> {
  const ns = `sbsc${process.pid.toString(16)}`;
  const pins = pinDir();
  const work = mkdtempSync(join(tmpdir(), 'stackbpf-bench-scale-'));
  const dir = join(work, 'libvirt');
  mkdirSync(dir);
  const agent = new AgentProcess(join(work, 'api.sock'), work);
  const fixture = readFileSync(join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'libvirt-status.xml'), 'utf8');
  let sleeper: ReturnType<typeof spawn> | undefined;
  const idle: number[] = [];
  try {
    execFileSync('ip', ['netns', 'add', ns]);
    const names = Array.from({ length: taps }, (_, i) => `tap${i.toString(16).padStart(8, '0')}-00`);
    const batch = names.map((n) => `tuntap add dev ${n} mode tap\nlink set ${n} up`).join('\n');
    writeFileSync(join(work, 'batch'), `${batch}\n`);
    execFileSync('ip', ['-n', ns, '-batch', join(work, 'batch')]);
    // one idle process per "instance", in the taps' namespace: the domain's qemu as the status file names it
    sleeper = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', `for i in $(seq ${taps}); do sleep ${seconds + 120} & echo $!; done; wait`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    sleeper.stdout?.on('data', (c) => (out += c));
    await until('the idle processes', () => out.trim().split('\n').length >= taps, 60_000, 100);
    const pids = out.trim().split('\n').map(Number);
    idle.push(...pids);
    writeFileSync(join(work, 'disk.raw'), Buffer.alloc(4096));
    names.forEach((tap, i) => {
      const uuid = `${(0x10000000 + i).toString(16)}-0000-4000-8000-000000000000`;
      const x = fixture
        .replace(/pid='\d+'/, `pid='${pids[i]}'`)
        .replace(/<vcpu id='0' pid='\d+'\/>/, '')
        .replace(/399d2f82-7730-4d3c-ad3b-da05b7f58fa2/g, uuid)
        .replace(/instance-0000000a/g, `instance-${(0x100000 + i).toString(16)}`)
        .replace(/tapa1b2c3d4-e5/g, tap)
        .replace(/<source file='[^']*\.raw'/, `<source file='${join(work, 'disk.raw')}'`);
      writeFileSync(join(dir, `instance-${(0x100000 + i).toString(16)}.xml`), x);
    });
    await agent.start({
      pin_root: pins.dir,
      state_dir: join(work, 'state'),
      accounting: { enabled: true, libvirt_dir: dir, tap_namespaces: [ns], services: false },
    });
    await until('every instance accounted', async () => (await agent.api('GET', '/v1/status')).json.accounting.instances >= taps, 180_000, 1000);
    await sleep(3000);
    const pid = agent.pid as number;
    const c0 = treeCpu(pid);
    const readings: number[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < seconds * 1000) {
      await sleep(1000);
      readings.push((await agent.api('GET', '/v1/status')).json.accounting.lastReadingMs);
    }
    const wall = (Date.now() - t0) / 1000;
    const st = (await agent.api('GET', '/v1/status')).json.accounting;
    return {
      scale_taps: taps,
      scale_instances: st.instances,
      scale_taps_counted: st.taps,
      scale_cpu_ms_per_s: round(((treeCpu(pid) - c0) / wall) * 1000, 1),
      scale_reading_ms: { median: round(median(readings), 1), max: round(Math.max(...readings), 1) },
      scale_rss_mb: round(rssMb(pid), 1),
    };
  } finally {
    await agent.stop();
    sleeper?.kill('SIGKILL');
    for (const pid of idle) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    spawnSync('ip', ['netns', 'del', ns]);
    pins.remove();
    rmSync(work, { recursive: true, force: true });
  }
}

export const bench = {
  summary: 'accounting beside a real Ceilometer on libvirt guests: accuracy, resolution, a 20 s guest, restart, cost; per-packet cost; 1,000 taps',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: {
        parts: { type: 'string', default: 'cost,guests,scale' },
        rounds: { type: 'string', default: '7' },
        repeat: { type: 'string', default: '1000000' },
        duration: { type: 'string', default: '60' },
        taps: { type: 'string', default: '1000' },
        'scale-seconds': { type: 'string', default: '30' },
      },
    });
    const parts = (values.parts as string).split(',');
    const out: Record<string, unknown> = {};
    if (parts.includes('cost')) {
      log('per-packet cost');
      Object.assign(out, await costPart(Number(values.rounds), Number(values.repeat)));
    }
    if (parts.includes('guests')) {
      log('guests beside Ceilometer');
      Object.assign(out, await guestsPart(Number(values.duration)));
    }
    if (parts.includes('scale')) {
      log(`${values.taps} taps`);
      Object.assign(out, await scalePart(Number(values.taps), Number(values['scale-seconds'])));
    }
    return out;
  },
};
