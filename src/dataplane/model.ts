// A reference model of xdp_ingress's forwarding decision, in plain
// TypeScript: verdict, output bytes and counters for one packet. The
// differential fuzzer runs it against the kernel program on millions of
// packets; any difference is a bug in one of them.
import { ipv4, ipv6 } from '../ebpf/index.js';
import { DpConfigFlag, DpReason, type DpReasonName, type ExposureValue, XdpAction } from './abi.js';

export interface PrefixEntry<V> {
  /** Address bytes (4 or 16), host bits already zero. */
  addr: Buffer;
  prefixlen: number;
  value: V;
}

export interface ModelTables {
  flags: number;
  exactV4: Map<string, ExposureValue>; // key: dotted quad
  exactV6: Map<string, ExposureValue>; // key: canonical IPv6 text
  lpmV4: PrefixEntry<ExposureValue>[];
  lpmV6: PrefixEntry<ExposureValue>[];
  blockV4: PrefixEntry<number>[];
  blockV6: PrefixEntry<number>[];
  ports: Set<number>;
  /** MTU per port slot (absent or 0: not checked) */
  portMtu: Map<number, number>;
  /** this host's MACs by `${ifindex}/${vid}` (l2_local), used when flags has l2Check */
  l2Local: Map<string, string>;
  /** the ingress ifindex the frames arrive on (BPF_PROG_TEST_RUN without a context: loopback, 1) */
  ingressIfindex: number;
}

export interface ModelResult {
  action: number;
  reason: DpReasonName;
  /** Bytes after the program (the input, untouched, unless redirected). */
  data: Buffer;
  /** Frame length counted in the counters (the input's). */
  bytes: number;
  exposureId?: number;
  blockRule?: number;
}

export function emptyTables(): ModelTables {
  return {
    flags: 0,
    exactV4: new Map(),
    exactV6: new Map(),
    lpmV4: [],
    lpmV6: [],
    blockV4: [],
    blockV6: [],
    ports: new Set(),
    portMtu: new Map(),
    l2Local: new Map(),
    ingressIfindex: 1,
  };
}

function prefixMatches(addr: Buffer, off: number, e: PrefixEntry<unknown>): boolean {
  let bits = e.prefixlen;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((addr[off + i] as number) & mask) !== ((e.addr[i] as number) & mask)) return false;
  }
  return true;
}

/** Longest-prefix match, as the kernel's LPM trie answers. */
export function longestMatch<V>(table: readonly PrefixEntry<V>[], addr: Buffer, off: number): V | undefined {
  let best: PrefixEntry<V> | undefined;
  for (const e of table) if (prefixMatches(addr, off, e) && (!best || e.prefixlen > best.prefixlen)) best = e;
  return best?.value;
}

const ETH_HLEN = 14;
const isVlan = (p: number): boolean => p === 0x8100 || p === 0x88a8;

/** The same incremental update as bpf/lib/csum.h (so the bytes match exactly). */
function decTtlV4(pkt: Buffer, l3: number): void {
  let sum = (~pkt.readUInt16BE(l3 + 10) & 0xffff) + 0xfeff;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  pkt.writeUInt16BE(~sum & 0xffff, l3 + 10);
  pkt[l3 + 8] = (pkt[l3 + 8] as number) - 1;
}

export function forward(input: Buffer, t: ModelTables): ModelResult {
  const len = input.length;
  const pass = (reason: DpReasonName): ModelResult => ({ action: XdpAction.pass, reason, data: input, bytes: len });
  if (len < ETH_HLEN) return pass('malformed');
  let proto = input.readUInt16BE(12);
  let tags = 0;
  let innerTci = 0;
  let outerTci = 0;
  let outerAd = false;
  for (let i = 0; i < 2 && isVlan(proto); i++) {
    if (ETH_HLEN + (i + 1) * 4 > len) return pass('malformed');
    innerTci = input.readUInt16BE(ETH_HLEN + i * 4);
    if (i === 0) {
      outerTci = innerTci;
      outerAd = proto === 0x88a8;
    }
    proto = input.readUInt16BE(ETH_HLEN + i * 4 + 2);
    tags++;
  }
  const l3 = ETH_HLEN + tags * 4;
  let e: ExposureValue | undefined;
  let l3len: number;
  const pkt = Buffer.from(input);
  // RFC 1812 5.3.4: only frames sent to this host's MAC, on its VLAN
  const forLocal = (): boolean => {
    if ((input[0] as number) & 1) return false;
    if (!(t.flags & DpConfigFlag.l2Check)) return true;
    if (tags > 1) return false;
    const tagged = tags === 1 && (outerTci & 0xfff) !== 0;
    if (tagged && outerAd) return false; // only 802.1Q VLAN devices are registered; VID 0 is a priority tag
    const vid = tagged ? 0x1000 | (outerTci & 0xfff) : 0;
    const mine = t.l2Local.get(`${t.ingressIfindex}/${vid}`);
    return mine !== undefined && macBytes(mine).equals(input.subarray(0, 6));
  };
  const checks = (ttl: number, x: ExposureValue): DpReasonName | undefined => {
    if (!forLocal()) return 'not_local';
    if (ttl <= 1) return 'ttl';
    if (!t.ports.has(x.port)) return 'no_port';
    const mtu = t.portMtu.get(x.port) ?? 0;
    if (mtu && l3len > mtu) return 'too_big';
    return undefined;
  };

  if (proto === 0x0800) {
    if (l3 + 20 > len) return pass('malformed');
    const version = (input[l3] as number) >> 4;
    const ihl = (input[l3] as number) & 0x0f;
    if (version !== 4 || ihl < 5 || l3 + ihl * 4 > len) return pass('malformed');
    // RFC 1812 5.2.2: total length against the header and the frame, header checksum
    const tot = input.readUInt16BE(l3 + 2);
    if (tot < ihl * 4 || tot > len - l3 || !checksumOk(input, l3, ihl * 4)) return pass('bad_header');
    if (t.flags & DpConfigFlag.blockV4) {
      const rule = longestMatch(t.blockV4, input, l3 + 12);
      if (rule !== undefined) return { action: XdpAction.drop, reason: 'blocked', data: input, bytes: len, blockRule: rule };
    }
    // RFC 1812 5.3.7: 0/8, 127/8, 224/4 and 240/4 sources are never forwarded; RFC 3927 2.7: nor 169.254/16
    const first = input[l3 + 12] as number;
    if (first === 0 || first === 127 || first >= 224 || (first === 169 && input[l3 + 13] === 254)) return pass('martian');
    if (ihl > 5) return pass('options');
    e = t.exactV4.get(ipv4.decode(input, l3 + 16));
    if (!e && t.flags & DpConfigFlag.lpmV4) e = longestMatch(t.lpmV4, input, l3 + 16);
    if (!e) return pass('miss');
    l3len = tot;
    const why = checks(input[l3 + 8] as number, e);
    if (why) return pass(why);
    decTtlV4(pkt, l3);
  } else if (proto === 0x86dd) {
    if (l3 + 40 > len) return pass('malformed');
    if ((input[l3] as number) >> 4 !== 6) return pass('malformed');
    // RFC 8200 3: the payload length must fit the bytes delivered
    l3len = 40 + input.readUInt16BE(l3 + 4);
    if (l3len > len - l3) return pass('bad_header');
    if (t.flags & DpConfigFlag.blockV6) {
      const rule = longestMatch(t.blockV6, input, l3 + 8);
      if (rule !== undefined) return { action: XdpAction.drop, reason: 'blocked', data: input, bytes: len, blockRule: rule };
    }
    if (input[l3 + 6] === 58 && l3len > 40) {
      if (l3 + 41 > len) return pass('malformed');
      const type = input[l3 + 40] as number;
      if (type >= 133 && type <= 137) return pass('ndp');
    }
    if (martianV6(input, l3 + 8)) return pass('martian');
    if (input[l3 + 6] === 0) return pass('options');
    e = t.exactV6.get(ipv6.decode(input, l3 + 24));
    if (!e && t.flags & DpConfigFlag.lpmV6) e = longestMatch(t.lpmV6, input, l3 + 24);
    if (!e) return pass('miss');
    const why = checks(input[l3 + 7] as number, e);
    if (why) return pass(why);
    pkt[l3 + 7] = (pkt[l3 + 7] as number) - 1;
  } else {
    return pass('other');
  }

  const out: Buffer[] = [macBytes(e.dmac), macBytes(e.smac)];
  if (e.vlan) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(0x8100, 0);
    tag.writeUInt16BE((innerTci & 0xe000) | (e.vlan & 0x0fff), 2);
    out.push(tag);
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(proto, 0);
  out.push(et, pkt.subarray(l3, l3 + l3len)); // the link layer's padding is not forwarded
  return { action: XdpAction.redirect, reason: 'redirect', data: Buffer.concat(out), bytes: len, exposureId: e.id };
}

/** Ones' complement sum of the header is 0xffff when its checksum is right. */
function checksumOk(pkt: Buffer, off: number, len: number): boolean {
  let sum = 0;
  for (let i = 0; i < len; i += 2) sum += pkt.readUInt16BE(off + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

/** RFC 4291: a multicast (ff00::/8), link-local (fe80::/10), unspecified (::), loopback (::1) or IPv4-mapped (::ffff:0:0/96) source. */
function martianV6(pkt: Buffer, off: number): boolean {
  if (pkt[off] === 0xff || (pkt[off] === 0xfe && ((pkt[off + 1] as number) & 0xc0) === 0x80)) return true;
  for (let i = 0; i < 10; i++) if (pkt[off + i] !== 0) return false;
  if (pkt[off + 10] === 0xff && pkt[off + 11] === 0xff) return true;
  for (let i = 10; i < 15; i++) if (pkt[off + i] !== 0) return false;
  const last = pkt[off + 15] as number;
  return last === 0 || last === 1;
}

function macBytes(m: string): Buffer {
  return Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
}

export { DpReason };
