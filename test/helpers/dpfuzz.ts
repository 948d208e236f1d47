// Differential fuzzing of xdp_ingress against the TypeScript reference model:
// random tables installed in the real maps and mirrored in the model, random
// and mutated packets through BPF_PROG_TEST_RUN, every verdict and every
// output byte compared, and the counters compared per batch.
import { formatIPv6, parseIPv6 } from '../../src/ebpf/index.js';
import { ipChecksum } from './packets.js';
import { FIXTURE_WORLD, rfcFixtures } from './dpfixtures.js';
import { DpConfigFlag, DpReason, type DpReasonName, type ExposureValue } from '../../src/dataplane/abi.js';
import type { Dataplane } from '../../src/dataplane/dataplane.js';
import { emptyTables, forward, type ModelTables } from '../../src/dataplane/model.js';

/** mulberry32: small, fast, seeded. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type R = () => number;
const int = (r: R, n: number): number => Math.floor(r() * n);
const pick = <T>(r: R, xs: readonly T[]): T => xs[int(r, xs.length)] as T;
const randMac = (r: R): string => Array.from({ length: 6 }, (_, i) => (i === 0 ? 2 : int(r, 256)).toString(16).padStart(2, '0')).join(':');
const v4 = (r: R, base: string): string => `${base}.${int(r, 256)}`;
const v6bytes = (r: R, prefix: string, fixed: number): Buffer => {
  const b = parseIPv6(prefix);
  for (let i = fixed; i < 16; i++) b[i] = int(r, 256);
  return b;
};

export interface FuzzWorld {
  tables: ModelTables;
  exposedV4: string[];
  exposedV6: string[];
  /** exposure ids 0..exposures-1 and block rules 0..blockRules-1 are in use */
  exposures: number;
  blockRules: number;
  /** the MAC frames are mostly sent to (l2_local of the test-run ingress, untagged and on VLAN localVid) */
  localMac: string;
  localVid: number;
  /** the RFC fixtures' frames, sent (and mutated) now and then */
  seeds: Buffer[];
}

/** Fill the real maps and the model with the same random tables. */
export function installWorld(dp: Dataplane, r: R, portIfindexes: number[]): FuzzWorld {
  const t = dp.tables;
  const m = emptyTables();
  let id = 0;
  // a port's source MAC is its interface's: one per port, as the reconciler writes them
  const portMacs = Array.from({ length: 256 }, () => randMac(r));
  const value = (): ExposureValue => {
    const port = r() < 0.9 ? int(r, portIfindexes.length) : 200; // slot 200: never filled
    return { dmac: randMac(r), smac: portMacs[port] as string, vlan: pick(r, [0, 0, 1, 100, 4094, int(r, 4095)]), port, id: id++, flags: 0 };
  };
  const exposedV4: string[] = [];
  const exposedV6: string[] = [];
  for (const slot of [...portIfindexes.keys(), 200]) {
    // some ports with an MTU small enough that fuzzed datagrams exceed it
    const mtu = pick(r, [0, 0, 1500, 100, 68]);
    t.portInfo.update(slot, { smac: portMacs[slot] as string, mtu });
    m.portMtu.set(slot, mtu);
  }
  // this host's MAC on the ingress BPF_PROG_TEST_RUN reports (loopback), untagged and on one VLAN: the fixtures' world
  const localMac = FIXTURE_WORLD.ingressMac;
  const localVid = FIXTURE_WORLD.vid;
  dp.setLocalAddresses([0, 0x1000 | localVid].map((vid) => ({ ifindex: 1, vid, mac: localMac })));
  for (const vid of [0, 0x1000 | localVid]) m.l2Local.set(`1/${vid}`, localMac);
  dp.inNetns(() => portIfindexes.forEach((ifindex, slot) => t.ports.update(slot, ifindex)));
  portIfindexes.forEach((_, slot) => m.ports.add(slot));
  // the RFC fixtures' exposures, on port 0
  const fixtureValue = (): ExposureValue => ({ dmac: FIXTURE_WORLD.vmMac, smac: portMacs[0] as string, vlan: 0, port: 0, id: id++, flags: 0 });
  const exact4: [string, ExposureValue][] = [[FIXTURE_WORLD.v4, fixtureValue()]];
  m.exactV4.set(FIXTURE_WORLD.v4, exact4[0]?.[1] as ExposureValue);
  exposedV4.push(FIXTURE_WORLD.v4);
  for (let i = 0; i < 48; i++) {
    const a = v4(r, pick(r, ['198.51.100', '203.0.113']));
    if (m.exactV4.has(a)) continue;
    const v = value();
    exact4.push([a, v]);
    m.exactV4.set(a, v);
    exposedV4.push(a);
  }
  dp.exact4.updateBatch(exact4);
  const exact6: [string, ExposureValue][] = [[FIXTURE_WORLD.v6, fixtureValue()]];
  m.exactV6.set(FIXTURE_WORLD.v6, exact6[0]?.[1] as ExposureValue);
  exposedV6.push(FIXTURE_WORLD.v6);
  for (let i = 0; i < 24; i++) {
    const b = v6bytes(r, '2001:db8::', 8);
    const a = formatIPv6(b);
    if (m.exactV6.has(a)) continue;
    const v = value();
    exact6.push([a, v]);
    m.exactV6.set(a, v);
    exposedV6.push(a);
  }
  dp.exact6.updateBatch(exact6);
  for (const [addr, len] of [
    ['198.51.100.0', 24],
    ['198.51.100.128', 25],
    ['203.0.113.64', 26],
    ['192.0.2.0', 28],
  ] as const) {
    const v = value();
    t.lpmV4.update({ prefixlen: len, addr }, v);
    m.lpmV4.push({ addr: Buffer.from(addr.split('.').map(Number)), prefixlen: len, value: v });
  }
  for (const [addr, len] of [
    ['2001:db8::', 64],
    ['2001:db8:0:1::', 64],
    ['2001:db8:1::', 48],
  ] as const) {
    const v = value();
    t.lpmV6.update({ prefixlen: len, addr }, v);
    m.lpmV6.push({ addr: parseIPv6(addr), prefixlen: len, value: v });
  }
  let rule = 0;
  for (const [addr, len] of [
    ['192.0.2.128', 25],
    ['203.0.113.250', 32],
  ] as const) {
    t.blockV4.update({ prefixlen: len, addr }, rule);
    m.blockV4.push({ addr: Buffer.from(addr.split('.').map(Number)), prefixlen: len, value: rule++ });
  }
  t.blockV6.update({ prefixlen: 48, addr: '2001:db8:bad::' }, rule);
  m.blockV6.push({ addr: parseIPv6('2001:db8:bad::'), prefixlen: 48, value: rule++ });
  return {
    tables: m,
    exposedV4,
    exposedV6,
    exposures: id,
    blockRules: rule,
    localMac,
    localVid,
    seeds: rfcFixtures(portMacs[0] as string).map((f) => f.input),
  };
}

const ipBytes = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

function l3v4(r: R, w: FuzzWorld): Buffer {
  const ihl = r() < 0.85 ? 5 : pick(r, [0, 1, 4, 6, 7, 15]);
  const payload = Buffer.alloc(int(r, 120));
  for (let i = 0; i < payload.length; i++) payload[i] = int(r, 256);
  const ip = Buffer.alloc(Math.max(20, ihl * 4));
  ip[0] = ((r() < 0.95 ? 4 : int(r, 16)) << 4) | ihl;
  ip.writeUInt16BE(ip.length + payload.length, 2);
  ip.writeUInt16BE(r() < 0.8 ? 0 : int(r, 65536), 6);
  ip[8] = pick(r, [0, 1, 2, 64, 255, int(r, 256)]);
  ip[9] = pick(r, [6, 17, 1, int(r, 256)]);
  const dst =
    r() < 0.45 && w.exposedV4.length
      ? pick(r, w.exposedV4)
      : r() < 0.5
        ? v4(r, pick(r, ['198.51.100', '203.0.113', '192.0.2']))
        : `${int(r, 256)}.${int(r, 256)}.${int(r, 256)}.${int(r, 256)}`;
  const src =
    r() < 0.05
      ? pick(r, ['0.0.0.1', '127.0.0.1', '224.0.0.5', '240.1.2.3', '255.255.255.255', '169.254.10.1']) // martians (RFC 1812 5.3.7, RFC 3927)
      : r() < 0.15
        ? pick(r, ['192.0.2.200', '203.0.113.250', '192.0.2.129'])
        : v4(r, pick(r, ['192.0.2', '198.51.100', '10.0.0']));
  ipBytes(src).copy(ip, 12);
  ipBytes(dst).copy(ip, 16);
  for (let i = 20; i < ip.length; i++) ip[i] = int(r, 256);
  if (r() < 0.05) ip.writeUInt16BE(int(r, 65536), 2); // a total length that may not fit (RFC 1812 5.2.2)
  // mostly a valid header checksum, so the forwarding path is exercised; sometimes not
  ip.writeUInt16BE(0, 10);
  ip.writeUInt16BE(r() < 0.85 ? ipChecksum(ip) : int(r, 65536), 10);
  return Buffer.concat([ip, payload]);
}

function l3v6(r: R, w: FuzzWorld): Buffer {
  const payload = Buffer.alloc(int(r, 120));
  for (let i = 0; i < payload.length; i++) payload[i] = int(r, 256);
  const nh = pick(r, [17, 6, 58, 58, 0, 43, 44, 60, int(r, 256)]);
  if (nh === 58 && payload.length > 0) payload[0] = r() < 0.5 ? 133 + int(r, 5) : int(r, 256);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE((((r() < 0.95 ? 6 : int(r, 16)) << 28) | int(r, 1 << 20)) >>> 0, 0);
  ip.writeUInt16BE(r() < 0.95 ? payload.length : int(r, 65536), 4); // sometimes past the frame (RFC 8200 3)
  ip[6] = nh;
  ip[7] = pick(r, [0, 1, 2, 64, 255, int(r, 256)]);
  const src =
    r() < 0.05
      ? parseIPv6(pick(r, ['ff02::1', '::', '::1', 'fe80::1', 'febf::2', '::ffff:192.0.2.1'])) // martians (RFC 4291)
      : r() < 0.15
        ? v6bytes(r, '2001:db8:bad::', 6)
        : v6bytes(r, '2001:db8:ff::', 6);
  const dst =
    r() < 0.45 && w.exposedV6.length
      ? parseIPv6(pick(r, w.exposedV6))
      : v6bytes(r, pick(r, ['2001:db8::', '2001:db8:0:1::', '2001:db8:1::', '2001:db8:2::']), 6);
  src.copy(ip, 8);
  dst.copy(ip, 24);
  return Buffer.concat([ip, payload]);
}

/** One random frame: tags, L3, then maybe truncated or with flipped bytes. */
export function randomPacket(r: R, w: FuzzWorld): Buffer {
  if (w.seeds.length && r() < 0.05) return mutate(r, pick(r, w.seeds));
  const kind = r();
  let proto: number;
  let l3: Buffer;
  if (kind < 0.45) [proto, l3] = [0x0800, l3v4(r, w)];
  else if (kind < 0.8) [proto, l3] = [0x86dd, l3v6(r, w)];
  else if (kind < 0.9) [proto, l3] = [pick(r, [0x0806, 0x88cc, 0x8847, int(r, 65536)]), Buffer.alloc(int(r, 60))];
  else {
    const b = Buffer.alloc(14 + int(r, 100));
    for (let i = 0; i < b.length; i++) b[i] = int(r, 256);
    return b;
  }
  const tags = pick(r, [0, 0, 0, 1, 1, 2, 3]);
  // mostly this host's MAC; sometimes broadcast, multicast or another host's (RFC 1812 5.3.4)
  const k = r();
  const dmac = k < 0.8 ? w.localMac : k < 0.85 ? 'ff:ff:ff:ff:ff:ff' : k < 0.9 ? '01:00:5e:00:00:05' : randMac(r);
  const parts: Buffer[] = [
    Buffer.from(dmac.split(':').map((x) => parseInt(x, 16))),
    Buffer.from(
      randMac(r)
        .split(':')
        .map((x) => parseInt(x, 16)),
    ),
  ];
  for (let i = 0; i < tags; i++) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(pick(r, [0x8100, 0x88a8]), 0);
    tag.writeUInt16BE(r() < 0.6 ? (int(r, 8) << 13) | w.localVid : int(r, 65536), 2);
    parts.push(tag);
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(proto, 0);
  return mutate(r, Buffer.concat([...parts, et, l3]));
}

/** Maybe truncated, maybe with a few bytes flipped. */
function mutate(r: R, input: Buffer): Buffer {
  let pkt = input;
  if (r() < 0.2) pkt = pkt.subarray(0, Math.max(14, int(r, pkt.length + 1)));
  if (r() < 0.1) {
    pkt = Buffer.from(pkt);
    for (let i = 0, n = 1 + int(r, 3); i < n; i++) pkt[int(r, pkt.length)] = int(r, 256);
  }
  return Buffer.from(pkt);
}

export interface FuzzResult {
  packets: number;
  mismatches: number;
  counterMismatches: number;
  byReason: Record<string, number>;
  firstMismatch?: { packet: string; kernel: { retval: number; data: string }; model: { action: number; reason: string; data: string } };
}

type Counts = { packets: bigint; bytes: bigint };
const sum = (vs: Counts[] | undefined): Counts =>
  (vs ?? []).reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), { packets: 0n, bytes: 0n });

/** Run `count` packets; counters are compared every `batch` packets under random lookup flags. */
export function runFuzz(dp: Dataplane, w: FuzzWorld, r: R, count: number, batch = 1000, onProgress?: (done: number) => void): FuzzResult {
  const prog = dp.ingressProgram;
  const t = dp.tables;
  const res: FuzzResult = { packets: 0, mismatches: 0, counterMismatches: 0, byReason: {} };
  while (res.packets < count) {
    const flags = (r() < 0.7 ? 0xf : int(r, 16)) | (r() < 0.7 ? DpConfigFlag.l2Check : 0);
    t.config.update(0, { flags, pad: 0 });
    w.tables.flags = flags;
    const before = Object.values(DpReason).map((i) => sum(t.verdicts.lookup(i)));
    const expect = Object.values(DpReason).map(() => ({ packets: 0n, bytes: 0n }));
    // what each exposure and block rule counted, against the model's verdicts
    const exposureCounts = (): Counts[] => Array.from({ length: w.exposures }, (_, id) => dp.exposureCounter(id));
    const ruleCounts = (): Counts[] => Array.from({ length: w.blockRules }, (_, rule) => sum(t.blockStats.lookup(rule)));
    const expBefore = exposureCounts();
    const rulesBefore = ruleCounts();
    const expExpect = expBefore.map(() => ({ packets: 0n, bytes: 0n }));
    const rulesExpect = rulesBefore.map(() => ({ packets: 0n, bytes: 0n }));
    const n = Math.min(batch, count - res.packets);
    for (let i = 0; i < n; i++) {
      const pkt = randomPacket(r, w);
      const k = prog.testRun({ data: pkt });
      const m = forward(pkt, w.tables);
      const e = expect[DpReason[m.reason]] as Counts;
      e.packets++;
      e.bytes += BigInt(m.bytes);
      for (const [idx, list] of [
        [m.exposureId, expExpect],
        [m.blockRule, rulesExpect],
      ] as const) {
        if (idx === undefined) continue;
        const c = list[idx] as Counts;
        c.packets++;
        c.bytes += BigInt(m.bytes);
      }
      res.byReason[m.reason] = (res.byReason[m.reason] ?? 0) + 1;
      if (k.retval !== m.action || !k.data.equals(m.data)) {
        res.mismatches++;
        res.firstMismatch ??= {
          packet: pkt.toString('hex'),
          kernel: { retval: k.retval, data: k.data.toString('hex') },
          model: { action: m.action, reason: m.reason, data: m.data.toString('hex') },
        };
      }
    }
    res.packets += n;
    const after = Object.values(DpReason).map((i) => sum(t.verdicts.lookup(i)));
    for (const [name, i] of Object.entries(DpReason)) {
      const got = after[i] as Counts;
      const was = before[i] as Counts;
      const want = expect[i] as Counts;
      if (got.packets - was.packets !== want.packets || got.bytes - was.bytes !== want.bytes) {
        res.counterMismatches++;
        res.firstMismatch ??= {
          packet: `counter ${name as DpReasonName}`,
          kernel: { retval: Number(got.packets - was.packets), data: '' },
          model: { action: Number(want.packets), reason: name, data: '' },
        };
      }
    }
    for (const [what, was, got, want] of [
      ['exposure', expBefore, exposureCounts(), expExpect],
      ['block rule', rulesBefore, ruleCounts(), rulesExpect],
    ] as const) {
      got.forEach((g, i) => {
        const d = { packets: g.packets - (was[i] as Counts).packets, bytes: g.bytes - (was[i] as Counts).bytes };
        const x = want[i] as Counts;
        if (d.packets !== x.packets || d.bytes !== x.bytes) {
          res.counterMismatches++;
          res.firstMismatch ??= {
            packet: `counter of ${what} ${i}`,
            kernel: { retval: Number(d.packets), data: `${d.bytes} bytes` },
            model: { action: Number(x.packets), reason: `${x.bytes} bytes`, data: '' },
          };
        }
      });
    }
    onProgress?.(res.packets);
  }
  return res;
}

/**
 * A frame a router forwards: a valid header to an exposed address, sent to
 * this host's MAC, everything else random (TOS, ID, fragment bits, protocol,
 * TTL 2-255, payload, link padding, sometimes a priority tag). The kernel
 * oracle mixes these with randomPacket's so most comparisons are of output
 * frames, not only of verdicts.
 */
export function forwardablePacket(r: R, w: FuzzWorld): Buffer {
  const payload = Buffer.alloc(int(r, 200));
  for (let i = 0; i < payload.length; i++) payload[i] = int(r, 256);
  let proto: number;
  let l3: Buffer;
  if (r() < 0.5 && w.exposedV4.length) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip[1] = int(r, 256);
    ip.writeUInt16BE(20 + payload.length, 2);
    ip.writeUInt16BE(int(r, 65536), 4);
    ip.writeUInt16BE(pick(r, [0, 0x4000, 0x2000, int(r, 0x2000), 0x4000 | int(r, 0x2000)]), 6);
    ip[8] = 2 + int(r, 254);
    ip[9] = pick(r, [6, 17, 1, 47, int(r, 256)]);
    ipBytes(v4(r, pick(r, ['192.0.2', '198.51.100', '198.18.255']))).copy(ip, 12);
    ipBytes(pick(r, w.exposedV4)).copy(ip, 16);
    ip.writeUInt16BE(ipChecksum(ip), 10);
    [proto, l3] = [0x0800, Buffer.concat([ip, payload])];
  } else {
    const ip = Buffer.alloc(40);
    ip.writeUInt32BE(((6 << 28) | int(r, 1 << 28)) >>> 0, 0);
    ip.writeUInt16BE(payload.length, 4);
    ip[6] = pick(r, [6, 17, 58, 44, 60, int(r, 256)]);
    if (ip[6] === 58 && payload.length) payload[0] = pick(r, [128, 129, 1, 3]); // echo, errors: not NDP
    if (ip[6] === 0) ip[6] = 17;
    ip[7] = 2 + int(r, 254);
    v6bytes(r, '2001:db8:ff::', 6).copy(ip, 8);
    parseIPv6(pick(r, w.exposedV6)).copy(ip, 24);
    [proto, l3] = [0x86dd, Buffer.concat([ip, payload])];
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(proto);
  const mac = Buffer.from(w.localMac.split(':').map((x) => parseInt(x, 16)));
  const src = Buffer.from(
    randMac(r)
      .split(':')
      .map((x) => parseInt(x, 16)),
  );
  const tag = Buffer.alloc(r() < 0.05 ? 4 : 0);
  if (tag.length) {
    tag.writeUInt16BE(0x8100, 0);
    tag.writeUInt16BE(int(r, 8) << 13, 2); // priority tag: VID 0
  }
  return Buffer.concat([mac, src, tag, et, l3, Buffer.alloc(r() < 0.2 ? int(r, 20) : 0, 0xee)]);
}
