// Packet fixtures for BPF_PROG_TEST_RUN (the Katran pattern: bytes in,
// verdict and bytes out). Built by hand so every field is explicit.
import { parseIPv6 } from '../../src/ebpf/codec.js';

const macBytes = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
const ipBytes = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

/** RFC 1071 checksum of a header. */
export function ipChecksum(hdr: Buffer): number {
  let sum = 0;
  for (let i = 0; i < hdr.length; i += 2) sum += hdr.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface Vlan {
  tpid?: number; // 0x8100 (default) or 0x88a8
  vid: number;
  pcp?: number;
}

/** Ethernet header with optional VLAN tags, then the payload. */
export function frame(o: { dstMac?: string; srcMac?: string; vlans?: Vlan[]; proto: number; payload: Buffer }): Buffer {
  const parts = [macBytes(o.dstMac ?? '02:00:00:00:00:02'), macBytes(o.srcMac ?? '02:00:00:00:00:01')];
  for (const v of o.vlans ?? []) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(v.tpid ?? 0x8100, 0);
    tag.writeUInt16BE(((v.pcp ?? 0) << 13) | v.vid, 2);
    parts.push(tag);
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(o.proto, 0);
  return Buffer.concat([...parts, et, o.payload]);
}

export interface Ipv4Spec {
  srcMac?: string;
  dstMac?: string;
  vlans?: Vlan[];
  src: string;
  dst: string;
  ttl?: number;
  protocol?: number;
  /** IPv4 options (padded to 4 bytes). */
  options?: Buffer;
  /** flags and fragment offset word, e.g. 0x2000 = more fragments */
  fragment?: number;
  payload?: Buffer;
}

export function ipv4Header(s: Ipv4Spec, payloadLen: number): Buffer {
  const opts = s.options ?? Buffer.alloc(0);
  const ihl = 5 + Math.ceil(opts.length / 4);
  const ip = Buffer.alloc(ihl * 4);
  ip[0] = 0x40 | ihl;
  ip.writeUInt16BE(ihl * 4 + payloadLen, 2);
  ip.writeUInt16BE(0x1234, 4);
  ip.writeUInt16BE(s.fragment ?? 0, 6);
  ip[8] = s.ttl ?? 64;
  ip[9] = s.protocol ?? 17;
  ipBytes(s.src).copy(ip, 12);
  ipBytes(s.dst).copy(ip, 16);
  opts.copy(ip, 20);
  ip.writeUInt16BE(ipChecksum(ip), 10);
  return ip;
}

function udp(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(40000, 0);
  h.writeUInt16BE(4789, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

export function ipv4Packet(s: Ipv4Spec): Buffer {
  const l4 = udp(s.payload ?? Buffer.from('stackbpf-fixture'));
  const opt: { dstMac?: string; srcMac?: string; vlans?: Vlan[] } = {};
  if (s.dstMac) opt.dstMac = s.dstMac;
  if (s.srcMac) opt.srcMac = s.srcMac;
  if (s.vlans) opt.vlans = s.vlans;
  return frame({ ...opt, proto: 0x0800, payload: Buffer.concat([ipv4Header(s, l4.length), l4]) });
}

export interface Ipv6Spec {
  dstMac?: string;
  srcMac?: string;
  vlans?: Vlan[];
  src: string;
  dst: string;
  hopLimit?: number;
  nextHeader?: number;
  payload?: Buffer;
}

export function ipv6Packet(s: Ipv6Spec): Buffer {
  const payload = s.payload ?? udp(Buffer.from('stackbpf-fixture-v6'));
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(payload.length, 4);
  ip[6] = s.nextHeader ?? 17;
  ip[7] = s.hopLimit ?? 64;
  parseIPv6(s.src).copy(ip, 8);
  parseIPv6(s.dst).copy(ip, 24);
  const opt: { dstMac?: string; srcMac?: string; vlans?: Vlan[] } = {};
  if (s.dstMac) opt.dstMac = s.dstMac;
  if (s.srcMac) opt.srcMac = s.srcMac;
  if (s.vlans) opt.vlans = s.vlans;
  return frame({ ...opt, proto: 0x86dd, payload: Buffer.concat([ip, payload]) });
}

/** A neighbour solicitation (ICMPv6 type 135) for `target`. */
export function ndpSolicitation(src: string, dst: string): Buffer {
  const icmp = Buffer.alloc(24);
  icmp[0] = 135;
  parseIPv6(dst).copy(icmp, 8);
  return ipv6Packet({ src, dst, nextHeader: 58, hopLimit: 255, payload: icmp });
}

export function arpPacket(): Buffer {
  return frame({ dstMac: 'ff:ff:ff:ff:ff:ff', proto: 0x0806, payload: Buffer.alloc(28, 1) });
}
