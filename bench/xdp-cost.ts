// ns per packet of the XDP router through BPF_PROG_TEST_RUN with 1, 1,000
// and 100,000 exposures: a hit on one hot destination, a miss, and hits
// spread uniformly (random order) over every installed destination; the
// same for IPv6 /128 exposures (hit6_ns, miss6_ns, spread_hit6_ns).
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
          object: objectPath('test/dataplane_bench'),
          maxExposures: Math.max(1024, n),
        });
        try {
          const t = dp.tables;
          dp.inNetns(() => t.ports.update(0, ifindexOf('xc0', ns.name)));
          const value = (id: number) => ({ id, dmac: '02:00:00:00:00:10', smac: '02:00:00:00:00:20', vlan: 0, port: 0, flags: 0 });
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
          const time = (prog: string, data = pkt) => median(Array.from({ length: rounds }, () => obj.program(prog).testRun({ data, repeat }).durationNs));
          const measure = (list: string[], six = false) => {
            setAddrs(list, six);
            const full = time(six ? 'xdp_bench6' : 'xdp_bench', six ? pkt6 : pkt);
            const base = time(six ? 'xdp_bench6_base' : 'xdp_bench_base', six ? pkt6 : pkt);
            return { full, base };
          };
          const empty = time('xdp_empty');
          const r = rng(n);
          const shuffled = entries.map(([a]) => a);
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [shuffled[i], shuffled[j]] = [shuffled[j] as string, shuffled[i] as string];
          }
          const hit = measure([addrOf(Math.floor(n / 2))]);
          const miss = measure(['192.0.2.99']);
          const spread = measure(shuffled);
          const shuffled6 = shuffled.map((a) => {
            const [, b, c, d] = a.split('.').map(Number) as [number, number, number, number];
            return addr6Of(((b - 18) << 16) | (c << 8) | d);
          });
          const hit6 = measure([addr6Of(Math.floor(n / 2))], true);
          const miss6 = measure(['2001:db8:200::99'], true);
          const spread6 = measure(shuffled6, true);
          const v = dp.verdicts();
          // a figure for a hit is only a figure if the hits were forwarded
          const want = 4 * rounds * repeat;
          if (Number(v.redirect.packets) !== want)
            throw new Error(
              `xdp-cost ${n}: ${v.redirect.packets} of ${want} hits redirected (verdicts: ${Object.entries(v)
                .filter(([, c]) => c.packets > 0n)
                .map(([k, c]) => `${k} ${c.packets}`)
                .join(', ')}): the benchmark packets no longer pass the router's checks`,
            );
          const cost = (m: { full: number; base: number }) => Math.max(0, m.full - m.base) + empty;
          out[String(n)] = {
            hit_ns: cost(hit),
            miss_ns: cost(miss),
            spread_hit_ns: cost(spread),
            hit6_ns: cost(hit6),
            miss6_ns: cost(miss6),
            spread_hit6_ns: cost(spread6),
            harness_ns: empty,
            raw: { hit, miss, spread, hit6, miss6, spread6 },
            redirected: Number(v.redirect.packets),
          };
          process.stderr.write(
            `xdp-cost ${n}: hit ${cost(hit)} ns, miss ${cost(miss)} ns, spread hit ${cost(spread)} ns; IPv6 ${cost(hit6)} / ${cost(miss6)} / ${cost(spread6)} ns (harness ${empty} ns)\n`,
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
