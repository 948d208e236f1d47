// The forward benchmark's traffic generator, run as its own process (pinned
// to one CPU with taskset): BPF_PROG_RUN live frames of xdp_gen out of an
// interface inside a namespace, flat out or at a fixed rate, for N seconds.
// Prints {"sent": N} when done.
import { performance } from 'node:perf_hooks';
import { BpfObject, ifindexOf, ipv4, parseIPv6, TEST_RUN_XDP_LIVE_FRAMES, u32, withNetns } from '../src/ebpf/index.js';
import { readFileSync } from 'node:fs';
import { objectPath } from '../src/paths.js';
import { rng } from '../test/helpers/dpfuzz.js';
import { zipfIndexes } from './zipf.js';

// IPv6 (srcIp an IPv6 address): dsts is an address whose first 96 bits every destination shares
// (its last 32 bits are the index 0..count-1). IPv4: dsts lists the destinations, comma-separated,
// or @FILE names a file that does (one per line). zipf: 0 walks the destinations uniformly,
// s > 0 draws them Zipf(s) by rank (bench/zipf.ts).
const [netns, ifname, srcMac, dstMac, srcIp, dstsArg, count, seconds, rate, zipfArg] = process.argv.slice(2) as string[];
const dsts = (dstsArg as string).startsWith('@')
  ? readFileSync((dstsArg as string).slice(1), 'utf8')
      .trim()
      .split('\n')
      .join(',')
  : (dstsArg as string);
const v4 = !(srcIp as string).includes(':');
const ipv4Bytes = (a: string): Buffer => Buffer.from(a.split('.').map(Number));
const macBytes = (m: string): Buffer => Buffer.from((m as string).split(':').map((x) => parseInt(x, 16)));

const obj = BpfObject.open(objectPath('test/trafgen'));
obj.setConstant('src_mac', macBytes(srcMac as string));
obj.setConstant('dst_mac', macBytes(dstMac as string));
if (v4) {
  obj.setConstant('family', Buffer.from([4]));
  obj.setConstant('src_ip4', ipv4Bytes(srcIp as string));
} else {
  obj.setConstant('src_ip6', parseIPv6(srcIp as string));
  obj.setConstant('dst_prefix', parseIPv6(dsts as string).subarray(0, 12));
}
obj.setAutoload('xdp_sink', false);
await obj.load();
if (v4) {
  const list = (dsts as string).split(',');
  if (list.length !== Number(count)) throw new Error(`trafgen: ${list.length} IPv4 destinations listed, count says ${count}`);
  obj
    .map('dsts4')
    .typed(u32, ipv4)
    .updateBatch(list.map((a, i) => [i, a] as [number, string]));
}
const n = Buffer.alloc(4);
n.writeUInt32LE(Number(count));
obj.writeGlobal('dst_count', n);
const zipfS = Number(zipfArg ?? 0);
if (zipfS > 0) {
  const draws = zipfIndexes(Number(count), zipfS, 262144, rng(Number(count)));
  const m = obj.map('sched').typed(u32, u32);
  const batch = Array.from(draws, (d, i) => [i, d] as [number, number]);
  for (let i = 0; i < batch.length; i += 16384) m.updateBatch(batch.slice(i, i + 16384));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(draws.length);
  obj.writeGlobal('sched_len', len);
}
const prog = obj.program('xdp_gen');
const frame = Buffer.alloc(70);
const ifindex = ifindexOf(ifname as string, netns);
const ctx = Buffer.alloc(24);
ctx.writeUInt32LE(frame.length, 4); // data_end
ctx.writeUInt32LE(ifindex, 12); // ingress_ifindex
const end = Date.now() + Number(seconds) * 1000;
const pps = Number(rate ?? 0);
let sent = 0;
withNetns(netns, () => {
  if (pps > 0) {
    // paced: one batch per millisecond, sleeping (not spinning) in between so
    // whatever shares this CPU gets the rest of it
    const perMs = Math.max(1, Math.round(pps / 1000));
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    let next = performance.now();
    while (Date.now() < end) {
      prog.testRun({ data: frame, ctx, repeat: perMs, flags: TEST_RUN_XDP_LIVE_FRAMES, batchSize: Math.min(64, perMs) });
      sent += perMs;
      next += 1;
      const wait = next - performance.now();
      if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
    }
  } else {
    while (Date.now() < end) {
      prog.testRun({ data: frame, ctx, repeat: 262144, flags: TEST_RUN_XDP_LIVE_FRAMES, batchSize: 64 });
      sent += 262144;
    }
  }
});
obj.close();
process.stdout.write(`${JSON.stringify({ sent })}\n`);
