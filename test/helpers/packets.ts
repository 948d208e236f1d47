// Packet fixtures for BPF_PROG_TEST_RUN (the Katran pattern: bytes in,
// verdict and bytes out). Built by hand so every field is explicit.
export interface Ipv4Spec {
  srcMac?: string;
  dstMac?: string;
  src: string;
  dst: string;
  ttl?: number;
  protocol?: number;
  payload?: Buffer;
}

const macBytes = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
const ipBytes = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

/** RFC 1071 checksum of a header. */
export function ipChecksum(hdr: Buffer): number {
  let sum = 0;
  for (let i = 0; i < hdr.length; i += 2) sum += hdr.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ipv4Packet(s: Ipv4Spec): Buffer {
  const payload = s.payload ?? Buffer.from('stackbpf-fixture');
  const eth = Buffer.concat([macBytes(s.dstMac ?? '02:00:00:00:00:02'), macBytes(s.srcMac ?? '02:00:00:00:00:01'), Buffer.from([0x08, 0x00])]);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip.writeUInt16BE(0x1234, 4);
  ip[8] = s.ttl ?? 64;
  ip[9] = s.protocol ?? 17;
  ipBytes(s.src).copy(ip, 12);
  ipBytes(s.dst).copy(ip, 16);
  ip.writeUInt16BE(ipChecksum(ip), 10);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(4789, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([eth, ip, udp, payload]);
}

export function arpPacket(): Buffer {
  const eth = Buffer.concat([Buffer.alloc(6, 0xff), macBytes('02:00:00:00:00:01'), Buffer.from([0x08, 0x06])]);
  return Buffer.concat([eth, Buffer.alloc(28, 1)]);
}
