// The kernel's own IPv4/IPv6 forwarding as the oracle for xdp_ingress. One
// namespace is set up as a router the way the data plane's exposures say:
// the provider side a1 (MAC = the fixtures' ingress MAC, VLAN device a1.100),
// the target side b1 (and b1.200 for exposures with a VLAN), a /32 or /128
// route and a permanent neighbour per exact exposure, a route via a gateway
// neighbour per subnet exposure, forwarding on, rp_filter loose (2, as
// systemd sets it), an address and a default IPv4 route on a1. The same exposures
// go into the XDP maps through the real reconciler. Each frame goes through
// BPF_PROG_TEST_RUN and, sent on a0, through the kernel (kfwd.py records
// what reaches b0); then the two fates are compared.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIPv6, macOf } from '../../src/ebpf/index.js';
import { type DpReasonName, type ExposureValue, l2Vid, XdpAction } from '../../src/dataplane/abi.js';
import { Dataplane } from '../../src/dataplane/dataplane.js';
import type { Exposure } from '../../src/dataplane/exposure.js';
import { emptyTables } from '../../src/dataplane/model.js';
import { Reconciler } from '../../src/dataplane/reconciler.js';
import { FIXTURE_WORLD, rfcFixtures } from './dpfixtures.js';
import type { FuzzWorld } from './dpfuzz.js';
import { nodeNamespace, type Netns, pinDir, sh } from './kernel.js';
import { ipv4Packet } from './packets.js';

const W = FIXTURE_WORLD;
const GW_MAC = '02:aa:00:00:00:20';
const OUT_VID = 200;
const MARKER_DST = '198.19.255.253';
const MARKER_MAGIC = Buffer.from('sbpfmark');

export interface Oracle {
  ns: Netns;
  /** the kernel has VLAN devices (8021q): a1.100 and b1.200 exist, tagged exposures are tested */
  vlans: boolean;
  dp: Dataplane;
  world: FuzzWorld;
  targetMac: string;
  close(): Promise<void>;
}

type R = () => number;
const int = (r: R, n: number): number => Math.floor(r() * n);

/** The router namespace, the data plane in it, and a world the frame generator can use. */
export async function openOracle(r: R): Promise<Oracle> {
  const ns = await nodeNamespace([
    ['a0', 'a1'],
    ['b0', 'b1'],
  ]);
  const pins = pinDir();
  let dp: Dataplane | undefined;
  const close = async (): Promise<void> => {
    dp?.destroy();
    pins.remove();
    await ns.delete();
  };
  try {
    // VLAN devices, where the kernel has them (8021q is not built on every kernel)
    const vlans = await ns
      .exec('ip', ['link', 'add', 'link', 'a1', 'name', `a1.${W.vid}`, 'type', 'vlan', 'id', String(W.vid)])
      .then(() => true)
      .catch(() => false);
    const vmMac = (i: number): string => `02:bb:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const exposures: Exposure[] = [
      { prefix: W.v4, target: 'b1', mac: W.vmMac, owner: 'fixture-v4' },
      { prefix: W.v6, target: 'b1', mac: W.vmMac, owner: 'fixture-v6' },
      { prefix: '198.19.0.0/24', target: 'b1', mac: GW_MAC, owner: 'subnet-v4' },
      { prefix: '2001:db8:1::/64', target: 'b1', mac: GW_MAC, owner: 'subnet-v6' },
    ];
    const exposedV4 = [W.v4 as string];
    const exposedV6 = [W.v6 as string];
    for (let i = 0; i < 40; i++) {
      const a = `198.18.${int(r, 256)}.${1 + int(r, 254)}`;
      if (exposedV4.includes(a)) continue;
      exposedV4.push(a);
      exposures.push({ prefix: a, target: 'b1', mac: vmMac(i), ...(vlans && i % 4 === 3 ? { vlan: OUT_VID } : {}), owner: `v4-${i}` });
    }
    for (let i = 0; i < 20; i++) {
      const b = Buffer.alloc(16);
      Buffer.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 5]).copy(b);
      for (let j = 8; j < 16; j++) b[j] = int(r, 256);
      const a = formatIPv6(b);
      exposedV6.push(a);
      exposures.push({ prefix: a, target: 'b1', mac: vmMac(100 + i), ...(vlans && i % 4 === 3 ? { vlan: OUT_VID } : {}), owner: `v6-${i}` });
    }

    // the kernel's side: a router configured as the exposures say
    const batch: string[] = [
      'link set a0 mtu 9000',
      'link set a1 mtu 9000',
      `link set a1 address ${W.ingressMac}`,
      ...(vlans
        ? [
            `link set a1.${W.vid} address ${W.ingressMac}`,
            `link add link b1 name b1.${OUT_VID} type vlan id ${OUT_VID}`,
            `link set a1.${W.vid} up`,
            `link set b1.${OUT_VID} up`,
          ]
        : []),
      // the provider link has an address, as on a node (rp_filter's loose mode refuses every source on a link without one)
      'addr add 198.19.254.1/24 dev a1',
      'route add default via 198.19.254.254 dev a1',
      'neigh add 198.19.254.254 lladdr 02:00:00:00:0f:fe dev a1 nud permanent',
      `route add ${MARKER_DST}/32 dev b1`,
      `neigh add ${MARKER_DST} lladdr 02:00:00:00:0f:fd dev b1 nud permanent`,
    ];
    for (const e of exposures) {
      const v6 = e.prefix.includes(':');
      const dev = e.vlan ? `b1.${OUT_VID}` : 'b1';
      if (e.prefix.includes('/')) {
        const gw = v6 ? 'fe80::1' : '198.19.255.1';
        batch.push(`route add ${e.prefix} via ${gw} dev ${dev} onlink`);
        if (!batch.includes(`neigh add ${gw} lladdr ${e.mac} dev ${dev} nud permanent`)) batch.push(`neigh add ${gw} lladdr ${e.mac} dev ${dev} nud permanent`);
      } else {
        batch.push(`route add ${e.prefix}/${v6 ? 128 : 32} dev ${dev}`);
        batch.push(`neigh add ${e.prefix} lladdr ${e.mac} dev ${dev} nud permanent`);
      }
    }
    const tmp = mkdtempSync(join(tmpdir(), 'stackbpf-oracle-'));
    try {
      // no IPv6 on the sender and capture ends, no addresses (so no DAD) on the router's links
      for (const [k, v] of [
        ['net.ipv6.conf.a0.disable_ipv6', '1'],
        ['net.ipv6.conf.b0.disable_ipv6', '1'],
        ['net.ipv6.conf.default.addr_gen_mode', '1'],
        ['net.ipv4.ip_forward', '1'],
        ['net.ipv4.conf.all.rp_filter', '2'],
        ['net.ipv4.conf.default.rp_filter', '2'],
      ])
        await ns.exec('sysctl', ['-qw', `${k}=${v}`]);
      writeFileSync(join(tmp, 'batch'), `${batch.join('\n')}\n`);
      await sh('ip', ['-n', ns.name, '-batch', join(tmp, 'batch')]);
      await ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }

    // the data plane's side: the same exposures through the real reconciler
    dp = await Dataplane.open({ pinRoot: pins.dir, netns: ns.name, maxExposures: 1024, maxBlockRules: 64 });
    new Reconciler(dp).apply(exposures);
    // BPF_PROG_TEST_RUN reports the loopback device (ifindex 1) as the ingress: a1's addresses go there
    const local = [{ ifindex: 1, vid: 0, mac: W.ingressMac }, ...(vlans ? [{ ifindex: 1, vid: l2Vid(W.vid), mac: W.ingressMac }] : [])];
    dp.setLocalAddresses(local);
    const targetMac = macOf('b1', ns.name);
    const m = emptyTables();
    const world: FuzzWorld = {
      tables: m,
      exposedV4,
      exposedV6,
      exposures: exposures.length,
      blockRules: 0,
      localMac: W.ingressMac,
      localVid: W.vid,
      seeds: rfcFixtures(targetMac).map((f) => f.input),
    };
    m.flags = dp.tables.config.lookup(0)?.flags ?? 0;
    for (const [k, v] of dp.tables.exactV4.dump()) m.exactV4.set(k, v as ExposureValue);
    for (const [k, v] of dp.tables.exactV6.dump()) m.exactV6.set(k, v as ExposureValue);
    return { ns, dp, world, targetMac, vlans, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface KernelFate {
  /** the kernel accepted the frame on the link at all (a frame shorter than an Ethernet header is refused) */
  sent: boolean;
  /** every frame that reached the capture end because of it */
  out: Buffer[];
}

const here = dirname(fileURLToPath(import.meta.url));
/** kfwd.py sits beside the sources (test/helpers); the build copies nothing, so look in both trees. */
function script(): string {
  for (const p of [join(here, 'kfwd.py'), join(here, '../../../test/helpers/kfwd.py')]) {
    try {
      readFileSync(p);
      return p;
    } catch {}
  }
  throw new Error('kfwd.py not found beside test/helpers');
}

/** Send the frames through the kernel router; what reached b0 for each. */
export async function kernelForward(o: Oracle, frames: readonly Buffer[]): Promise<{ fates: KernelFate[]; summary: Record<string, unknown> }> {
  const tmp = mkdtempSync(join(tmpdir(), 'stackbpf-kfwd-'));
  try {
    const parts: Buffer[] = [];
    for (const f of frames) {
      const n = Buffer.alloc(4);
      n.writeUInt32LE(f.length);
      parts.push(n, f);
    }
    writeFileSync(join(tmp, 'in'), Buffer.concat(parts));
    const marker = ipv4Packet({ dstMac: W.ingressMac, src: '198.19.255.2', dst: MARKER_DST, payload: Buffer.concat([MARKER_MAGIC, Buffer.alloc(4)]) });
    const seqOff = marker.length - 4;
    const stdout = await o.ns.exec(
      'taskset',
      ['-c', '1', 'python3', script(), join(tmp, 'in'), join(tmp, 'out'), 'a0', 'b0', marker.toString('hex'), String(seqOff), MARKER_MAGIC.toString('hex')],
      { timeoutMs: 900_000 },
    );
    const summary = JSON.parse(stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
    const out = readFileSync(join(tmp, 'out'));
    const fates: KernelFate[] = [];
    let off = 0;
    while (off < out.length) {
      const sent = out.readUInt32LE(off) === 1;
      const n = out.readUInt32LE(off + 4);
      off += 8;
      const got: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        const len = out.readUInt32LE(off);
        got.push(Buffer.from(out.subarray(off + 4, off + 4 + len)));
        off += 4 + len;
      }
      fates.push({ sent, out: got });
    }
    if (fates.length !== frames.length) throw new Error(`the kernel side recorded ${fates.length} of ${frames.length} frames`);
    return { fates, summary };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The differences the kernel is entitled to, each documented in
 * docs/dataplane.md: 802.1p priority (PCP) on a pushed tag (XDP keeps the
 * ingress frame's, the kernel's VLAN device writes its egress-qos-map's, 0).
 */
export function sameFrame(xdp: Buffer, kernel: Buffer): boolean {
  if (xdp.length !== kernel.length) return false;
  if (xdp.length >= 16 && xdp.readUInt16BE(12) === 0x8100) {
    const a = Buffer.from(xdp);
    const b = Buffer.from(kernel);
    a[14] = (a[14] as number) & 0x1f;
    b[14] = (b[14] as number) & 0x1f;
    return a.equals(b);
  }
  return xdp.equals(kernel);
}

/** Reasons whose frames a router must not forward as they are: the kernel must not have forwarded them either. */
export const KERNEL_REFUSES: readonly DpReasonName[] = ['bad_header', 'not_local', 'ttl', 'miss', 'malformed'];

export interface OracleResult {
  frames: number;
  redirected: number;
  agree: number;
  unexplained: number;
  byReason: Record<string, number>;
  /** frames XDP left to the kernel that the kernel then forwarded to the target, by reason */
  kernelForwardedAfterPass: Record<string, number>;
  differences: { index: number; frame: string; xdp: string; kernel: string[]; why: string }[];
}

/** Compare each frame's fate: XDP (BPF_PROG_TEST_RUN) against the kernel. */
export function compare(o: Oracle, frames: readonly Buffer[], fates: readonly KernelFate[]): OracleResult {
  const res: OracleResult = { frames: frames.length, redirected: 0, agree: 0, unexplained: 0, byReason: {}, kernelForwardedAfterPass: {}, differences: [] };
  frames.forEach((frame, index) => {
    const fate = fates[index] as KernelFate;
    const counts = o.dp.verdicts();
    const x = o.dp.ingressProgram.testRun({ data: frame });
    const after = o.dp.verdicts();
    const reason = (Object.keys(after) as DpReasonName[]).find((k) => after[k].packets !== counts[k].packets) ?? 'other';
    res.byReason[reason] = (res.byReason[reason] ?? 0) + 1;
    const differ = (why: string): void => {
      res.unexplained++;
      if (res.differences.length < 20)
        res.differences.push({
          index,
          frame: frame.toString('hex'),
          xdp: `${reason}: ${x.data.toString('hex')}`,
          kernel: fate.out.map((b) => b.toString('hex')),
          why,
        });
    };
    if (x.retval === XdpAction.redirect) {
      res.redirected++;
      if (fate.out.length !== 1) return differ(`XDP forwarded, the kernel sent ${fate.out.length} frames to the target`);
      if (!sameFrame(x.data, fate.out[0] as Buffer)) return differ('XDP and the kernel forwarded different frames');
      res.agree++;
      return;
    }
    if (x.retval !== XdpAction.pass) return differ(`XDP returned ${x.retval} (no blocklist is configured)`);
    if (!x.data.equals(frame)) return differ('XDP passed the frame changed');
    if (fate.out.length) {
      res.kernelForwardedAfterPass[reason] = (res.kernelForwardedAfterPass[reason] ?? 0) + 1;
      if (KERNEL_REFUSES.includes(reason)) return differ(`XDP left it to the kernel as ${reason}, and the kernel forwarded it`);
    }
    res.agree++;
  });
  return res;
}
