// ns per packet of the XDP router through BPF_PROG_TEST_RUN with 1, 1,000
// and 100,000 exposures: a hit on one hot destination, a miss, hits spread
// uniformly (random order) over every installed destination, and hits with
// Zipf-distributed destinations (s = 1 and s = 0.8); the same for IPv6 /128
// exposures. Rounds are interleaved over the cases; each figure is the
// median of the rounds, with its range.
//
// BPF_PROG_TEST_RUN repeats a program on one buffer and the router changes
// it (TTL), so the figures come from bpf/test/dataplane_bench.bpf.c: a
// wrapper restores the TTL and sets the destination, then runs the real
// ingress code. Reported: wrapper+router - wrapper alone + an empty program
// (the harness), i.e. the router's cost plus the harness, as an empty
// program measures it; the raw figures are reported too.
import { parseArgs } from 'node:util';
import { formatIPv6, ifindexOf, ipv4, ipv6, parseIPv6, u32 } from '../src/ebpf/index.js';
import { Dataplane } from '../src/dataplane/dataplane.js';
import { objectPath } from '../src/paths.js';
import { rng } from '../test/helpers/dpfuzz.js';
import { topShare, zipfIndexes } from './zipf.js';
import { nodeNamespace, pinDir, skipKernel } from '../test/helpers/kernel.js';
import { ipv4Packet, ipv6Packet } from '../test/helpers/packets.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function addrOf(i: number): string {
  // map keys and BPF_PROG_TEST_RUN packets only, never sent on any network:
  // the documentation ranges hold 768 IPv4 addresses, so 198.18.0.0/15
  // (RFC 2544's benchmarking range, 131,072 addresses) is used
  return `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

function addr6Of(i: number): string {
  const b = parseIPv6('2001:db8:100::');
  b.writeUInt32BE(i, 12);
  return formatIPv6(b);
}

export const bench = {
  summary: 'ns per packet of the XDP router (BPF_PROG_TEST_RUN) with 1, 1,000 and 100,000 exposures',
  async run(args: string[]) {
    const { values } = parseArgs({
      args,
      options: {
        sizes: { type: 'string', default: '1,1000,100000' },
        repeat: { type: 'string', default: '2000000' },
        rounds: { type: 'string', default: '5' },
        object: { type: 'string' },
      },
    });
    if (skipKernel) throw new Error(`xdp-cost needs the kernel: ${skipKernel}`);
    const sizes = values.sizes.split(',').map(Number);
    const repeat = Number(values.repeat);
    const rounds = Number(values.rounds);
    const ns = await nodeNamespace([['xc0', 'xc0p']]);
    const pins = pinDir();
    const out: Record<string, unknown> = {};
    try {
      for (const n of sizes) {
        const dp = await Dataplane.open({
          pinRoot: `${pins.dir}/${n}`,
          netns: ns.name,
          object: values.object ?? objectPath('test/dataplane_bench'),
          maxExposures: Math.max(1024, n),
        });
        try {
          const t = dp.tables;
          dp.inNetns(() => t.ports.update(0, ifindexOf('xc0', ns.name)));
          // the VM's MAC is the frame's own destination MAC: the wrapper restores TTL and address but
          // not the MACs, so a rewritten frame still passes the link-layer check next time
          const value = (id: number) => ({ id, dmac: '02:00:00:00:00:02', smac: '02:00:00:00:00:20', vlan: 0, port: 0, flags: 0 });
          const entries = Array.from({ length: n }, (_, i) => [addrOf(i), value(i)] as [string, ReturnType<typeof value>]);
          t.portInfo.update(0, { smac: '02:00:00:00:00:20', mtu: 0 });
          const entries6 = Array.from({ length: n }, (_, i) => [addr6Of(i), value(n + i)] as [string, ReturnType<typeof value>]);
          for (let i = 0; i < entries.length; i += 10000) dp.exact4.updateBatch(entries.slice(i, i + 10000));
          for (let i = 0; i < entries6.length; i += 10000) dp.exact6.updateBatch(entries6.slice(i, i + 10000));
          for (const [f, t] of [
            ['IPv4', dp.exact4],
            ['IPv6', dp.exact6],
          ] as const)
            if (t.spillCount) process.stderr.write(`xdp-cost ${n}: ${t.spillCount} ${f} entries spilled to the hash map\n`);
          const obj = dp.object;
          const addrs4 = obj.map('bench_addrs').typed(u32, ipv4);
          const addrs6 = obj.map('bench_addrs6').typed(u32, ipv6);
          const setAddrs = (list: string[], six: boolean) => {
            const addrs = six ? addrs6 : addrs4;
            const batch = list.map((a, i) => [i, a] as [number, string]);
            for (let i = 0; i < batch.length; i += 10000) addrs.updateBatch(batch.slice(i, i + 10000));
            const u32le = (v: number) => {
              const b = Buffer.alloc(4);
              b.writeUInt32LE(v, 0);
              return b;
            };
            obj.writeGlobal('bench_count', u32le(list.length));
            obj.writeGlobal('bench_cursor', u32le(0));
          };
          const pkt = ipv4Packet({ src: '192.0.2.1', dst: '198.18.0.0' });
          const pkt6 = ipv6Packet({ src: '2001:db8::1', dst: '2001:db8:100::' });
          // as on a node: the link-layer destination checked against the ingress interface's MAC
          // (BPF_PROG_TEST_RUN's ingress is loopback, ifindex 1)
          let l2 = false;
          try {
            dp.setLocalAddresses([{ ifindex: 1, vid: 0, mac: [...pkt.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':') }]);
            l2 = true;
          } catch {
            process.stderr.write(`xdp-cost ${n}: this object has no l2_local map (an older build): the L2 check is not measured\n`);
          }
          const r = rng(n);
          const shuffled = entries.map(([a]) => a);
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [shuffled[i], shuffled[j]] = [shuffled[j] as string, shuffled[i] as string];
          }
          const to6 = (a: string): string => {
            const [, b, c, d] = a.split('.').map(Number) as [number, number, number, number];
            return addr6Of(((b - 18) << 16) | (c << 8) | d);
          };
          // Zipf destinations: 131,072 draws (the harness's table) over the n exposures
          const zipf = (s: number): string[] =>
            Array.from(zipfIndexes(n, s, Math.min(131072, Math.max(n, 16384)), rng(n + Math.round(s * 10))), (i) => addrOf(i));
          const zipf1 = zipf(1);
          const zipf08 = zipf(0.8);
          const cases: Record<string, { list: string[]; six: boolean; hits: boolean }> = {
            hit: { list: [addrOf(Math.floor(n / 2))], six: false, hits: true },
            miss: { list: ['192.0.2.99'], six: false, hits: false },
            spread_hit: { list: shuffled, six: false, hits: true },
            zipf1_hit: { list: zipf1, six: false, hits: true },
            zipf08_hit: { list: zipf08, six: false, hits: true },
            hit6: { list: [addr6Of(Math.floor(n / 2))], six: true, hits: true },
            miss6: { list: ['2001:db8:200::99'], six: true, hits: false },
            spread_hit6: { list: shuffled.map(to6), six: true, hits: true },
            zipf1_hit6: { list: zipf1.map(to6), six: true, hits: true },
            zipf08_hit6: { list: zipf08.map(to6), six: true, hits: true },
          };
          // rounds interleaved: each round measures every case (router, then harness alone, then
          // an empty program), so what ran before weighs on all of them alike; median and range
          const per: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
          const raw: Record<string, { full: number[]; base: number[] }> = Object.fromEntries(Object.keys(cases).map((k) => [k, { full: [], base: [] }]));
          const empties: number[] = [];
          for (let round = 0; round < rounds; round++) {
            for (const [name, c] of Object.entries(cases)) {
              setAddrs(c.list, c.six);
              const data = c.six ? pkt6 : pkt;
              const full = obj.program(c.six ? 'xdp_bench6' : 'xdp_bench').testRun({ data, repeat }).durationNs;
              const base = obj.program(c.six ? 'xdp_bench6_base' : 'xdp_bench_base').testRun({ data, repeat }).durationNs;
              const empty = obj.program('xdp_empty').testRun({ data: pkt, repeat }).durationNs;
              empties.push(empty);
              raw[name]?.full.push(full);
              raw[name]?.base.push(base);
              per[name]?.push(Math.max(0, full - base) + empty);
            }
          }
          const empty = median(empties);
          const v = dp.verdicts();
          // a figure for a hit is only a figure if the hits were forwarded
          const want = Object.values(cases).filter((c) => c.hits).length * rounds * repeat;
          if (Number(v.redirect.packets) !== want)
            throw new Error(
              `xdp-cost ${n}: ${v.redirect.packets} of ${want} hits redirected (verdicts: ${Object.entries(v)
                .filter(([, c]) => c.packets > 0n)
                .map(([k, c]) => `${k} ${c.packets}`)
                .join(', ')}): the benchmark packets no longer pass the router's checks`,
            );
          const res: Record<string, unknown> = {};
          const range: Record<string, [number, number]> = {};
          for (const [name, xs] of Object.entries(per)) {
            res[`${name}_ns`] = median(xs);
            range[name] = [Math.min(...xs), Math.max(...xs)];
          }
          out[String(n)] = {
            ...res,
            harness_ns: empty,
            range,
            zipf1_top1pct_share: Number(topShare(zipfIndexes(n, 1, 131072, rng(7)), Math.max(1, Math.floor(n / 100))).toFixed(3)),
            l2_check: l2,
            raw: Object.fromEntries(Object.entries(raw).map(([k, x]) => [k, { full: median(x.full), base: median(x.base) }])),
            redirected: Number(v.redirect.packets),
          };
          const f = (k: string) => `${res[`${k}_ns`]} [${range[k]?.join('-')}]`;
          process.stderr.write(
            `xdp-cost ${n}: IPv4 hit ${f('hit')}, miss ${f('miss')}, uniform ${f('spread_hit')}, zipf1 ${f('zipf1_hit')}, zipf0.8 ${f('zipf08_hit')} ns; IPv6 ${f('hit6')} / ${f('miss6')} / ${f('spread_hit6')} / ${f('zipf1_hit6')} / ${f('zipf08_hit6')} ns (harness ${empty} ns)\n`,
          );
        } finally {
          dp.destroy();
        }
      }
    } finally {
      pins.remove();
      await ns.delete();
    }
    return out;
  },
};
