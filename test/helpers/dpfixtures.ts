// Frames with a known fate at a router, each tied to the RFC section that
// decides it: input frame -> verdict (reason) -> output frame, in the style
// of Katran's test fixtures. Shared by the XDP tests (program and model), the
// differential fuzzer (as seeds) and the kernel oracle (which checks that the
// kernel's own forwarding agrees with every expected fate).
//
// The world they assume: a provider NIC with MAC `ingressMac` (untagged, and
// a VLAN device `vid` with the same MAC), exposures `v4` and `v6` to `vmMac`
// through a target interface of MTU `mtu`, untagged.
import type { DpReasonName } from '../../src/dataplane/abi.js';
import { ipChecksum, ipv4Packet, ipv6Packet, ndpSolicitation, type Vlan } from './packets.js';

export const FIXTURE_WORLD = {
  ingressMac: '02:00:00:00:0a:01',
  vid: 100,
  vmMac: '02:aa:00:00:00:10',
  v4: '198.51.100.10',
  v6: '2001:db8::10',
  mtu: 1500,
} as const;

export interface Fixture {
  name: string;
  /** the rule that decides it */
  rfc: string;
  input: Buffer;
  reason: DpReasonName;
  /** for 'redirect': the frame that leaves (built here field by field, not by the model) */
  output?: Buffer;
  /** its fate depends on the VLAN device for FIXTURE_WORLD.vid (a kernel without 8021q has none) */
  needsVlan?: boolean;
  /**
   * What Linux's own forwarding does with it, where that is not simply
   * "forwards what XDP forwards, drops the rest": Linux forwards some
   * sources RFC 1812 calls martian (0/8 since 5.3, class E, link-local),
   * processes options and forwards, fragments what is too big without DF.
   * XDP leaves all of these to the kernel, so the node does what Linux does.
   */
  kernel?: 'forwards' | 'fragments';
}

const W = FIXTURE_WORLD;
const mac = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));

/** What a router sends on: new MACs, no tags, TTL / hop limit - 1 (checksum recomputed in full), no link padding. */
function routed(input: Buffer, targetMac: string): Buffer {
  let l3 = 14;
  while (input.readUInt16BE(l3 - 2) === 0x8100 || input.readUInt16BE(l3 - 2) === 0x88a8) l3 += 4;
  const proto = input.readUInt16BE(l3 - 2);
  const len = proto === 0x0800 ? input.readUInt16BE(l3 + 2) : 40 + input.readUInt16BE(l3 + 4);
  const ip = Buffer.from(input.subarray(l3, l3 + len));
  if (proto === 0x0800) {
    ip[8] = (ip[8] as number) - 1;
    ip.writeUInt16BE(0, 10);
    ip.writeUInt16BE(ipChecksum(ip.subarray(0, ((ip[0] as number) & 15) * 4)), 10);
  } else {
    ip[7] = (ip[7] as number) - 1;
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(proto);
  return Buffer.concat([mac(W.vmMac), mac(targetMac), et, ip]);
}

type V4Opts = { src?: string; dstMac?: string; vlans?: Vlan[]; ttl?: number; options?: Buffer; fragment?: number; payload?: Buffer };
const v4 = (o: V4Opts = {}, edit?: (ip: Buffer) => void): Buffer => {
  const p = ipv4Packet({ src: o.src ?? '192.0.2.1', dst: W.v4, dstMac: o.dstMac ?? W.ingressMac, ...o });
  if (edit) {
    const l3 = 14 + 4 * (o.vlans?.length ?? 0);
    const ip = p.subarray(l3, l3 + ((p[l3] as number) & 15) * 4);
    edit(ip);
    ip.writeUInt16BE(0, 10);
    ip.writeUInt16BE(ipChecksum(ip), 10);
  }
  return p;
};
type V6Opts = { src?: string; dstMac?: string; vlans?: Vlan[]; hopLimit?: number; nextHeader?: number; payload?: Buffer };
const v6 = (o: V6Opts = {}): Buffer => ipv6Packet({ src: o.src ?? '2001:db8:9::1', dst: W.v6, dstMac: o.dstMac ?? W.ingressMac, ...o });

/** Every fixture; `targetMac` is the MAC of the target interface (the output's source MAC). */
export function rfcFixtures(targetMac: string): Fixture[] {
  const fwd = (name: string, rfc: string, input: Buffer): Fixture => ({ name, rfc, input, reason: 'redirect', output: routed(input, targetMac) });
  const big = Buffer.alloc(W.mtu - 20 - 8 + 1, 0x5a); // one byte over the target's MTU
  return [
    fwd('IPv4 to an exposed address', 'RFC 1812 5.2', v4()),
    fwd('IPv6 to an exposed address', 'RFC 8200 3', v6()),
    { ...fwd('IPv4 on the provider VLAN, tag removed', 'RFC 1812 5.3.4', v4({ vlans: [{ vid: W.vid }] })), needsVlan: true },
    fwd('IPv4 priority-tagged (VID 0) is untagged', 'IEEE 802.1Q 6.9', v4({ vlans: [{ vid: 0, pcp: 5 }] })),
    fwd('IPv4 frame with link padding: padding not forwarded', 'RFC 1812 5.2.2', Buffer.concat([v4(), Buffer.alloc(10, 0xee)])),
    fwd('IPv6 frame with link padding: padding not forwarded', 'RFC 8200 3', Buffer.concat([v6(), Buffer.alloc(7, 0xee)])),
    fwd('IPv4 first fragment (forwarded as is, never reassembled)', 'RFC 1812 5.2.6', v4({ fragment: 0x2000 })),
    fwd('IPv4 TTL 2', 'RFC 1812 5.3.1', v4({ ttl: 2 })),
    fwd('IPv4 datagram exactly the target MTU, DF set', 'RFC 1812 5.2.6', v4({ fragment: 0x4000, payload: Buffer.alloc(W.mtu - 28, 1) })),
    { name: 'IPv4 header checksum wrong', rfc: 'RFC 1812 5.2.2', input: flip(v4(), 14 + 11), reason: 'bad_header' },
    { name: 'IPv4 total length shorter than the header', rfc: 'RFC 1812 5.2.2', input: v4({}, (ip) => ip.writeUInt16BE(19, 2)), reason: 'bad_header' },
    {
      name: 'IPv4 total length past the frame',
      rfc: 'RFC 1812 5.2.2',
      input: v4({}, (ip) => ip.writeUInt16BE(ip.readUInt16BE(2) + 100, 2)),
      reason: 'bad_header',
    },
    {
      name: 'IPv6 payload length past the frame',
      rfc: 'RFC 8200 3',
      input: edit6(v6(), (ip) => ip.writeUInt16BE(ip.readUInt16BE(4) + 1, 4)),
      reason: 'bad_header',
    },
    ...['0.1.2.3', '127.0.0.1', '224.0.0.5', '240.0.0.1', '255.255.255.255'].map(
      (src): Fixture => ({
        name: `IPv4 source ${src}`,
        rfc: 'RFC 1812 5.3.7',
        input: v4({ src }),
        reason: 'martian',
        ...(src === '0.1.2.3' || src === '240.0.0.1' ? { kernel: 'forwards' as const } : {}),
      }),
    ),
    { name: 'IPv4 link-local source', rfc: 'RFC 3927 2.7', input: v4({ src: '169.254.1.1' }), reason: 'martian', kernel: 'forwards' },
    ...[
      ['ff02::1', '2.7'],
      ['::', '2.5.2'],
      ['::1', '2.5.3'],
      ['fe80::1', '2.5.6'],
      ['::ffff:192.0.2.1', '2.5.5.2'],
    ].map(
      ([src, sec]): Fixture => ({
        name: `IPv6 source ${src}`,
        rfc: `RFC 4291 ${sec}`,
        input: v6({ src: src as string }),
        reason: 'martian',
        ...(src === '::ffff:192.0.2.1' ? { kernel: 'forwards' as const } : {}),
      }),
    ),
    { name: 'IPv4 to the broadcast MAC', rfc: 'RFC 1812 5.3.4', input: v4({ dstMac: 'ff:ff:ff:ff:ff:ff' }), reason: 'not_local' },
    { name: 'IPv4 to a multicast MAC', rfc: 'RFC 1812 5.3.4', input: v4({ dstMac: '01:00:5e:00:00:05' }), reason: 'not_local' },
    { name: 'IPv6 to a multicast MAC', rfc: 'RFC 1812 5.3.4', input: v6({ dstMac: '33:33:00:00:00:10' }), reason: 'not_local' },
    { name: "IPv4 to another host's MAC", rfc: 'RFC 1812 5.3.4', input: v4({ dstMac: '02:00:00:00:0a:99' }), reason: 'not_local' },
    { name: "IPv6 to another host's MAC", rfc: 'RFC 1812 5.3.4', input: v6({ dstMac: '02:00:00:00:0a:99' }), reason: 'not_local' },
    { name: 'IPv4 tagged with a VLAN this host is not on', rfc: 'RFC 1812 5.3.4', input: v4({ vlans: [{ vid: W.vid + 1 }] }), reason: 'not_local' },
    { name: 'IPv4 with an 802.1ad tag of the provider VID', rfc: 'RFC 1812 5.3.4', input: v4({ vlans: [{ vid: W.vid, tpid: 0x88a8 }] }), reason: 'not_local' },
    fwd('IPv4 priority-tagged with an 802.1ad TPID is untagged', 'IEEE 802.1Q 6.9', v4({ vlans: [{ vid: 0, tpid: 0x88a8 }] })),
    { name: 'IPv4 double-tagged', rfc: 'RFC 1812 5.3.4', input: v4({ vlans: [{ vid: W.vid }, { vid: 7 }] }), reason: 'not_local' },
    { name: 'IPv4 TTL 1', rfc: 'RFC 1812 5.3.1', input: v4({ ttl: 1 }), reason: 'ttl' },
    { name: 'IPv6 hop limit 1', rfc: 'RFC 8200 3', input: v6({ hopLimit: 1 }), reason: 'ttl' },
    {
      name: 'IPv4 with a record-route option',
      rfc: 'RFC 1812 5.2.4, 5.3.13',
      input: v4({ options: Buffer.from([7, 7, 4, 0, 0, 0, 0, 0]) }),
      reason: 'options',
      kernel: 'forwards',
    },
    {
      name: 'IPv4 with a loose source route',
      rfc: 'RFC 1812 5.2.4, 5.3.13',
      input: v4({ options: Buffer.from([131, 7, 4, 192, 0, 2, 9, 0]) }),
      reason: 'options',
    },
    {
      name: 'IPv6 hop-by-hop header',
      rfc: 'RFC 8200 4.3',
      input: v6({ nextHeader: 0, payload: Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]) }),
      reason: 'options',
      kernel: 'forwards',
    },
    { name: 'IPv4 one byte over the target MTU, DF set', rfc: 'RFC 1812 5.2.6', input: v4({ fragment: 0x4000, payload: big }), reason: 'too_big' },
    {
      name: 'IPv4 one byte over the target MTU, DF clear (the kernel fragments)',
      rfc: 'RFC 1812 5.2.6',
      input: v4({ payload: big }),
      reason: 'too_big',
      kernel: 'fragments',
    },
    { name: 'IPv6 one byte over the target MTU', rfc: 'RFC 8200 5, RFC 8201', input: v6({ payload: Buffer.alloc(W.mtu - 40 + 1, 0x5a) }), reason: 'too_big' },
    {
      name: 'DAD neighbour solicitation from :: stays NDP',
      rfc: 'RFC 4861',
      input: withMac(ndpSolicitation('::', 'ff02::1:ff00:10'), W.ingressMac),
      reason: 'ndp',
    },
  ];
}

function flip(p: Buffer, at: number): Buffer {
  const q = Buffer.from(p);
  q[at] = (q[at] as number) ^ 0x55;
  return q;
}

function edit6(p: Buffer, f: (ip: Buffer) => void): Buffer {
  const q = Buffer.from(p);
  f(q.subarray(14, 54));
  return q;
}

function withMac(p: Buffer, m: string): Buffer {
  const q = Buffer.from(p);
  mac(m).copy(q, 0);
  return q;
}
