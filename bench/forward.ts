// Forwarding from the upstream namespace to a VM through the node, on the
// lab, for three paths with the same generator and receiver (IPv6: the
// documentation range 2001:db8::/32 is the only one with room for 100,000
// destinations):
//   xdp          stackbpf's XDP fast path (IP forwarding off on the node)
//   kernel       ovn-bgp-agent's layout: one `ip rule to X lookup T` per exposed
//                address, a route per address in table T, forwarding on
//   kernel_best  one rule for the whole range, every address a route in one table
// at 1, 1,000, 10,000 and 100,000 exposures, with destinations spread
// uniformly (the worst case) and Zipf-distributed (s = 1 and s = 0.8: a few
// addresses take most packets), --dists choosing which. --family 4 runs the
// same with IPv4 destinations from 198.18.0.0/15.
//
// Generator: BPF_PROG_RUN live frames (bench/trafgen-child.ts) out of the
// upstream veth, pinned to CPU 0. Receiver: an XDP program on the VM's veth
// that counts and drops, and in the paced latency run only keeps a latency
// histogram (reading the clock is costly on this VM). The node's provider NIC
// runs threaded NAPI pinned to CPU 1; the VM's veth is not threaded, so the
// receiver runs as softirq right behind the forwarding on CPU 1 (no thread
// to wake per batch); the generator has CPU 0 (only two CPUs here).
// throughput: packets received per second, median of `rounds` windows;
// cpu: CPU time of the node's forwarding NAPI thread per packet received;
// latency: p50/p99 one-way, from a separate paced run at `latency-pps`.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { BpfObject, Link, macOf, sumPerCpu, u32, u64 } from '../src/ebpf/index.js';
import { Dataplane } from '../src/dataplane/dataplane.js';
import { localAddresses } from '../src/dataplane/l2.js';
import { Reconciler } from '../src/dataplane/reconciler.js';
import { labDown, labPinDir, labUp, type LabState } from '../src/lab/lab.js';
import { objectPath, packageRoot } from '../src/paths.js';
import { pinDir, skipKernel } from '../test/helpers/kernel.js';

const run = promisify(execFile);
const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
// Test traffic stays in the documentation ranges (../shared/TESTBED.md): IPv6 2001:db8::/32 is the
// only one with room for 100,000 destinations. Destination i is 2001:db8:100::<i as the last 32 bits>.
const PREFIX = '2001:db8:100::';
const addrOf = (i: number): string => `2001:db8:100::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`;
/**
 * IPv4 (--family 4), ovn-bgp-agent's main case, where the kernel walks the rule list twice per
 * packet: destinations from RFC 2544's benchmarking range 198.18.0.0/15 (131,071 addresses from
 * 198.18.0.1; ../shared/TESTBED.md allows it inside the lab's namespaces).
 */
const V4_RANGE = '198.18.0.0/15';
const addr4Of = (i: number): string => {
  const j = i + 1;
  return `198.${18 + (j >>> 16)}.${(j >>> 8) & 255}.${j & 255}`;
};
const MAX_V4 = 131071;

/** Destination distributions: uniform (the worst case) and Zipf by rank (a few take most packets). */
const DISTS: Record<string, number> = { uniform: 0, zipf1: 1, 'zipf0.8': 0.8 };

async function sh(args: string[], input?: string): Promise<string> {
  if (input === undefined) return (await run(args[0] as string, args.slice(1), { timeout: 600_000, maxBuffer: 64 << 20 })).stdout;
  return new Promise((resolve, reject) => {
    const p = spawn(args[0] as string, args.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')}: ${err.trim()}`))));
    p.stdin.end(input);
  });
}

/** Kernel threads `napi/<ifname>-<id>` (threaded NAPI), pid and comm. */
function napiThreads(ifnames: string[]): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let comm = '';
    try {
      comm = readFileSync(`/proc/${d}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    if (ifnames.some((i) => comm.startsWith(`napi/${i}-`))) out.push({ pid: Number(d), comm });
  }
  return out;
}
const cpuNs = (pid: number): number => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);

/** A path left out with --paths: its figures are null in the result. */
const NOT_RUN: PathResult = { pps: 0, windows: [], cpuNsPerPkt: null, p50Us: null, p99Us: null, offeredPps: 0 };

interface PathResult {
  pps: number;
  windows: number[];
  cpuNsPerPkt: number | null;
  p50Us: number | null;
  p99Us: number | null;
  offeredPps: number;
}

class Rig {
  sink!: BpfObject;
  constructor(
    readonly lab: LabState,
    readonly opts: { seconds: number; rounds: number; latencyPps: number },
  ) {}

  get vm() {
    return this.lab.vms[0]!;
  }

  async setup(): Promise<void> {
    const { lab, vm } = this;
    this.sink = BpfObject.open(objectPath('test/trafgen'));
    this.sink.setAutoload('xdp_gen', false);
    await this.sink.load();
    // the lab's xdp_pass on the VM's eth0 becomes the counting sink
    const link = Link.fromPin(`${labPinDir(lab.name)}/${vm.ns}/xdp`);
    link.update(this.sink.program('xdp_sink').fd);
    link.close();
    // GRO gives the provider veth a NAPI instance even without XDP (the kernel paths)
    await sh(['ip', 'netns', 'exec', lab.node.ns, 'ethtool', '-K', lab.node.provider, 'gro', 'on']);
    for (const [ns, dev] of [[lab.node.ns, lab.node.provider]] as const) {
      await sh(['ip', 'netns', 'exec', ns, 'sh', '-c', `echo 1 > /sys/class/net/${dev}/threaded`]);
    }
    await sh(['ip', '-6', '-n', lab.node.ns, 'neigh', 'replace', 'fe80::2', 'lladdr', vm.mac, 'dev', vm.tap, 'nud', 'permanent']);
    await sh(['ip', '-4', '-n', lab.node.ns, 'neigh', 'replace', vm.ipv4, 'lladdr', vm.mac, 'dev', vm.tap, 'nud', 'permanent']);
  }

  /**
   * The generator has CPU 0; the node's forwarding thread has CPU 1, where
   * the VM's receiver also runs (as softirq). With the receiver a thread of
   * its own on CPU 1 every batch woke it; on CPU 0 it starved under the
   * generator and the forwarded packets died in its full ring.
   */
  private async pin(): Promise<void> {
    for (const t of napiThreads([this.lab.node.provider, 'eth0'])) await sh(['taskset', '-pc', '1', String(t.pid)]);
  }

  received(): number {
    return Number(sumPerCpu(this.sink.map('received').perCpu(u32, u64).lookup(0) ?? [0n]));
  }

  /** The sink reads the clock only in the paced latency run: in the throughput windows it only counts. */
  private sinkLatency(on: boolean): void {
    const v = Buffer.alloc(4);
    v.writeUInt32LE(on ? 1 : 0);
    this.sink.writeGlobal('sink_latency', v);
  }

  private resetLatency(): void {
    const m = this.sink.map('latency').perCpu(u32, u64);
    const zeros = Array.from({ length: (m.lookup(0) ?? []).length }, () => 0n);
    const keys = Array.from({ length: 8192 }, (_, i) => [i, zeros] as [number, bigint[]]);
    m.updateBatch(keys);
  }

  private latencyPercentiles(): { p50: number | null; p99: number | null } {
    const hist = this.sink
      .map('latency')
      .perCpu(u32, u64)
      .dump()
      .sort((a, b) => a[0] - b[0])
      .map(([, v]) => Number(sumPerCpu(v)));
    const total = hist.reduce((a, b) => a + b, 0);
    if (total === 0) return { p50: null, p99: null };
    const at = (q: number): number => {
      let acc = 0;
      for (let i = 0; i < hist.length; i++) {
        acc += hist[i] as number;
        if (acc >= q * total) return ((i + 0.5) * 256) / 1000;
      }
      return (hist.length * 256) / 1000;
    };
    return { p50: Number(at(0.5).toFixed(2)), p99: Number(at(0.99).toFixed(2)) };
  }

  /** IPv4 destinations when the run is IPv4 (else IPv6 ones from PREFIX) */
  dsts4: string[] | undefined;

  /** a file listing the IPv4 destinations (too many for an argument) */
  dsts4File = '';

  private generate(count: number, seconds: number, pps = 0, zipf = 0): Promise<number> {
    const { lab } = this;
    const v4 = this.dsts4 !== undefined;
    const args = [
      '-c',
      '0',
      process.execPath,
      `${packageRoot}/dist/bench/trafgen-child.js`,
      lab.upstream.ns,
      lab.upstream.ifname,
      this.upMac,
      this.provMac,
      v4 ? lab.upstream.client4 : lab.upstream.client6,
      v4 ? `@${this.dsts4File}` : PREFIX,
      String(count),
      String(seconds),
      String(pps),
      String(zipf),
    ];
    return sh(['taskset', ...args]).then((out) => (JSON.parse(out.trim().split('\n').pop() as string) as { sent: number }).sent);
  }

  upMac = '';
  provMac = '';

  async measure(count: number, napiOf: string, zipf = 0): Promise<PathResult> {
    if (this.dsts4) writeFileSync(this.dsts4File, `${this.dsts4.slice(0, count).join('\n')}\n`);
    await this.pin();
    const windows: number[] = [];
    const cpu: number[] = [];
    let offered = 0;
    for (let r = 0; r < this.opts.rounds; r++) {
      const threads = napiThreads([napiOf]);
      const c0 = threads.reduce((a, t) => a + cpuNs(t.pid), 0);
      const n0 = this.received();
      const t0 = process.hrtime.bigint();
      const sent = await this.generate(count, this.opts.seconds, 0, zipf);
      await new Promise((res) => setTimeout(res, 50)); // let queues drain into the sink
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      const got = this.received() - n0;
      const c1 = threads.reduce((a, t) => a + cpuNs(t.pid), 0);
      windows.push(got / this.opts.seconds);
      offered = Math.max(offered, sent / dt);
      if (threads.length && got > 0) cpu.push((c1 - c0) / got);
    }
    this.resetLatency();
    this.sinkLatency(true);
    try {
      await this.generate(count, Math.max(1, this.opts.seconds / 2), this.opts.latencyPps, zipf);
      await new Promise((res) => setTimeout(res, 50));
    } finally {
      this.sinkLatency(false);
    }
    const lat = this.latencyPercentiles();
    return {
      pps: Math.round(median(windows)),
      windows: windows.map(Math.round),
      cpuNsPerPkt: cpu.length ? Math.round(median(cpu)) : null,
      p50Us: lat.p50,
      p99Us: lat.p99,
      offeredPps: Math.round(offered),
    };
  }
}

export const bench = {
  summary: 'forwarding rate, CPU and latency: XDP path vs ovn-bgp-agent ip rules vs one rule, 1 to 100,000 exposures',
  async run(args: string[]) {
    const { values } = parseArgs({
      args,
      options: {
        sizes: { type: 'string', default: '1,1000,10000,100000' },
        seconds: { type: 'string', default: '2' },
        rounds: { type: 'string', default: '3' },
        'latency-pps': { type: 'string', default: '1000' },
        paths: { type: 'string', default: 'xdp,kernel,kernel_best' },
        family: { type: 'string', default: '6' },
        dists: { type: 'string', default: 'uniform,zipf1,zipf0.8' },
      },
    });
    const dists = values.dists.split(',');
    for (const d of dists) if (!(d in DISTS)) throw new Error(`--dists: unknown distribution ${JSON.stringify(d)} (${Object.keys(DISTS).join(', ')})`);
    if (values.family !== '4' && values.family !== '6') throw new Error(`--family: 4 or 6, not ${JSON.stringify(values.family)}`);
    const v4 = values.family === '4';
    const paths = new Set(values.paths.split(','));
    for (const p of paths)
      if (!['xdp', 'kernel', 'kernel_best'].includes(p)) throw new Error(`--paths: unknown path ${JSON.stringify(p)} (xdp, kernel, kernel_best)`);
    if (skipKernel) throw new Error(`forward needs the kernel: ${skipKernel}`);
    const sizes = values.sizes.split(',').map(Number);
    const lab = await labUp({ name: `fwd-${process.pid.toString(36)}`, vms: [0] });
    const tooMany = v4 ? sizes.find((n) => n > MAX_V4) : undefined;
    if (tooMany !== undefined) {
      await labDown(lab.name);
      throw new Error(`--family 4: ${tooMany} exposures asked, ${V4_RANGE} holds ${MAX_V4}`);
    }
    const dsts4 = v4 ? Array.from({ length: Math.max(...sizes) }, (_, i) => addr4Of(i)) : undefined;
    const tmp = mkdtempSync(join(tmpdir(), 'stackbpf-forward-'));
    const pins = pinDir();
    const result: Record<string, unknown> = {};
    try {
      const rig = new Rig(lab, { seconds: Number(values.seconds), rounds: Number(values.rounds), latencyPps: Number(values['latency-pps']) });
      rig.dsts4 = dsts4;
      rig.dsts4File = join(tmp, 'dsts4');
      await rig.setup();
      rig.upMac = macOf(lab.upstream.ifname, lab.upstream.ns);
      rig.provMac = macOf(lab.node.provider, lab.node.ns);
      const node = lab.node.ns;
      const vm = rig.vm;
      const sysctl = (kv: string) => sh(['ip', 'netns', 'exec', node, 'sysctl', '-qw', kv]);
      // each distribution in turn on the same installed path; the first is the headline figure
      const byDist = new Map<PathResult, Record<string, PathResult>>();
      const measureAll = async (n: number): Promise<PathResult> => {
        const all: Record<string, PathResult> = {};
        for (const d of dists) all[d] = await rig.measure(n, lab.node.provider, DISTS[d] as number);
        const first = all[dists[0] as string] as PathResult;
        byDist.set(first, all);
        return first;
      };
      for (const n of sizes) {
        const addrs = dsts4 ? dsts4.slice(0, n) : Array.from({ length: n }, (_, i) => addrOf(i));
        // 1. the XDP path, forwarding off
        let xdp = NOT_RUN;
        if (paths.has('xdp')) {
          log(`forward ${n}: xdp path (installing ${n} exposures)`);
          const dp = await Dataplane.open({ pinRoot: `${pins.dir}/${n}`, netns: node, maxExposures: Math.max(1024, n) });
          try {
            dp.attachIngress(lab.node.provider, 'native');
            dp.setLocalAddresses(localAddresses([lab.node.provider], node)); // as the agent does
            new Reconciler(dp).apply(addrs.map((a) => ({ prefix: a, target: vm.tap, mac: vm.mac, owner: 'bench' })));
            xdp = await measureAll(n);
          } finally {
            dp.destroy();
          }
          log(`forward ${n}: xdp ${xdp.pps} pps, ${xdp.cpuNsPerPkt} ns/pkt, p99 ${xdp.p99Us} us`);
        }

        // 2. and 3. the kernel: forwarding on
        // IPv6 routes go via a static link-local neighbour; IPv4 ones via the VM's address, static too
        const routes = (table: string) =>
          addrs.map((a) =>
            v4 ? `route add ${a}/32 via ${vm.ipv4} dev ${vm.tap} onlink table ${table}` : `route add ${a}/128 via fe80::2 dev ${vm.tap} table ${table}`,
          );
        const fam = v4 ? '-4' : '-6';
        const forwarding = (): string[] =>
          v4
            ? ['net.ipv4.conf.all.forwarding', `net.ipv4.conf.${lab.node.provider}.forwarding`]
            : ['net.ipv6.conf.all.forwarding', `net.ipv6.conf.${lab.node.provider}.forwarding`];
        for (const k of forwarding()) await sysctl(`${k}=1`);
        const last = n === sizes[sizes.length - 1];
        const kernelPath = async (label: string, rules: string[], table: string, cleanup = true): Promise<PathResult> => {
          log(`forward ${n}: ${label} (installing)`);
          const t0 = Date.now();
          await sh(['ip', fam, '-n', node, '-batch', '-'], `${[...rules.map((r) => `rule add ${r}`), ...routes(table)].join('\n')}\n`);
          log(`forward ${n}: ${label} installed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          try {
            return await measureAll(n);
          } finally {
            // remove exactly what was added (the local, main and default rules stay); rule
            // insertion and deletion are O(n) each in the kernel, so the last, largest set is
            // left for the namespace's deletion
            if (cleanup) {
              await sh(['ip', fam, '-n', node, '-batch', '-'], `${rules.map((r) => `rule del ${r}`).join('\n')}\n`);
              await sh(['ip', fam, '-n', node, 'route', 'flush', 'table', table]);
            }
          }
        };
        let best = NOT_RUN;
        if (paths.has('kernel_best')) {
          // IPv4's destinations are three /24s: the one rule matches everything (misses fall through to main)
          best = await kernelPath('one rule', [v4 ? `to ${V4_RANGE} lookup 201 priority 1000` : `to ${PREFIX}/96 lookup 201 priority 1000`], '201');
          log(`forward ${n}: kernel_best ${best.pps} pps, p99 ${best.p99Us} us`);
        }
        let kernel = NOT_RUN;
        if (paths.has('kernel')) {
          kernel = await kernelPath(
            'ovn-bgp-agent layout',
            addrs.map((a) => `to ${a}/${v4 ? 32 : 128} lookup 200 priority 1000`),
            '200',
            !last,
          );
          log(`forward ${n}: kernel ${kernel.pps} pps, p99 ${kernel.p99Us} us`);
        }
        for (const k of forwarding()) await sysctl(`${k}=0`);

        const pps = (p: string, r: PathResult): number | null => (paths.has(p) ? r.pps : null);
        const both = (p: string): boolean => paths.has('xdp') && paths.has(p);
        result[String(n)] = {
          xdp_pps: pps('xdp', xdp),
          kernel_pps: pps('kernel', kernel),
          kernel_best_pps: pps('kernel_best', best),
          ratio: both('kernel') && kernel.pps > 0 ? Number((xdp.pps / kernel.pps).toFixed(1)) : null,
          ratio_best: both('kernel_best') && best.pps > 0 ? Number((xdp.pps / best.pps).toFixed(2)) : null,
          xdp_cpu_ns_per_pkt: xdp.cpuNsPerPkt,
          kernel_cpu_ns_per_pkt: kernel.cpuNsPerPkt,
          kernel_best_cpu_ns_per_pkt: best.cpuNsPerPkt,
          xdp_p50_us: xdp.p50Us,
          xdp_p99_us: xdp.p99Us,
          kernel_p50_us: kernel.p50Us,
          kernel_p99_us: kernel.p99Us,
          kernel_best_p99_us: best.p99Us,
          offered_pps: Math.max(xdp.offeredPps, kernel.offeredPps, best.offeredPps),
          windows: { xdp: xdp.windows, kernel: kernel.windows, kernel_best: best.windows },
          dist: dists[0],
          // every distribution measured, per path: pps, p99
          by_dist: Object.fromEntries(
            (
              [
                ['xdp', xdp],
                ['kernel', kernel],
                ['kernel_best', best],
              ] as const
            )
              .filter(([p]) => paths.has(p))
              .map(([p, r]) => [
                p,
                Object.fromEntries(Object.entries(byDist.get(r) ?? {}).map(([d, x]) => [d, { pps: x.pps, p99_us: x.p99Us, windows: x.windows }])),
              ]),
          ),
        };
      }
      rig.sink.close();
    } finally {
      await labDown(lab.name);
      pins.remove();
      rmSync(tmp, { recursive: true, force: true });
    }
    result.family = v4 ? 4 : 6;
    return result;
  },
};
