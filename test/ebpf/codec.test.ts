import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CodecError,
  be16,
  be32,
  cstring,
  encode,
  formatIPv6,
  i32,
  ipv4,
  ipv6,
  lpmKey,
  mac,
  parseIPv6,
  parsePrefix,
  raw,
  struct,
  u16,
  u32,
  u64,
  u64n,
  u8,
} from '../../src/ebpf/codec.js';
import { perCpuCodec, sumPerCpu } from '../../src/ebpf/map.js';
import { LpmV4Key, Quad, RouteValue } from '../fixtures/selftest-abi.js';

describe('integer codecs', () => {
  test('round-trip in host (little-endian) and network order', () => {
    assert.deepEqual(encode(u32, 0x01020304), Buffer.from([4, 3, 2, 1]));
    assert.deepEqual(encode(be32, 0x01020304), Buffer.from([1, 2, 3, 4]));
    assert.deepEqual(encode(be16, 0x0800), Buffer.from([8, 0]));
    assert.equal(u16.decode(Buffer.from([0x34, 0x12]), 0), 0x1234);
    assert.equal(i32.decode(encode(i32, -5), 0), -5);
    assert.equal(u64.decode(encode(u64, (1n << 64n) - 1n), 0), (1n << 64n) - 1n);
    assert.equal(u64n.decode(encode(u64n, 2 ** 40 + 7), 0), 2 ** 40 + 7);
  });
  test('out-of-range and non-integers are refused with the field named', () => {
    assert.throws(
      () => encode(u8, 256),
      (e: unknown) => e instanceof CodecError && /u8/.test(e.message) && /256/.test(e.message),
    );
    assert.throws(() => encode(u32, -1), CodecError);
    assert.throws(() => encode(u32, 1.5), CodecError);
    assert.throws(() => encode(u64, -1n), CodecError);
  });
});

describe('address codecs', () => {
  test('IPv4 in network order', () => {
    assert.deepEqual(encode(ipv4, '192.0.2.10'), Buffer.from([192, 0, 2, 10]));
    assert.equal(ipv4.decode(Buffer.from([198, 51, 100, 1]), 0), '198.51.100.1');
    assert.throws(() => encode(ipv4, '192.0.2'), /not an IPv4 address/);
    assert.throws(() => encode(ipv4, '300.0.0.1'), CodecError);
  });
  test('IPv6 parse and RFC 5952 format', () => {
    const cases: [string, string][] = [
      ['2001:db8::1', '2001:db8::1'],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['::', '::'],
      ['::1', '::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['::ffff:192.0.2.1', '::ffff:c000:201'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
      ['fe80::1%eth0', 'fe80::1'],
    ];
    for (const [input, want] of cases) assert.equal(formatIPv6(parseIPv6(input)), want, input);
    assert.deepEqual(encode(ipv6, '2001:db8::ff').subarray(14), Buffer.from([0, 0xff]));
    assert.throws(() => encode(ipv6, '2001:db8::g'), /not an IPv6 address/);
  });
  test('MAC addresses', () => {
    assert.deepEqual(encode(mac, '02:00:5e:10:00:01'), Buffer.from([2, 0, 0x5e, 0x10, 0, 1]));
    assert.equal(mac.decode(Buffer.from([0xaa, 0xbb, 0xcc, 0, 1, 2]), 0), 'aa:bb:cc:00:01:02');
    assert.throws(() => encode(mac, '02:00:5e:10:00'), /not a MAC address/);
  });
  test('prefixes', () => {
    assert.deepEqual(parsePrefix('192.0.2.0/24'), { addr: '192.0.2.0', prefixlen: 24, family: 4 });
    assert.deepEqual(parsePrefix('2001:db8::/32'), { addr: '2001:db8::', prefixlen: 32, family: 6 });
    assert.equal(parsePrefix('198.51.100.7').prefixlen, 32);
    assert.throws(() => parsePrefix('192.0.2.0/33'), /prefix length/);
    assert.throws(() => parsePrefix('192.0.2.0/2x'), /prefix length/);
    assert.throws(() => parsePrefix('nope/8'), /no valid IP/);
    assert.throws(() => encode(lpmKey(ipv4), { prefixlen: 40, addr: '192.0.2.0' }), /prefixlen/);
  });
});

describe('struct codecs follow C layout', () => {
  test('natural alignment, tail padding and zeroed padding bytes', () => {
    const S = struct('s', { a: u8, b: u32, c: u16 });
    assert.equal(S.size, 12);
    assert.deepEqual(S.offsets, { a: 0, b: 4, c: 8 });
    const buf = Buffer.alloc(12, 0xff);
    S.encode({ a: 1, b: 2, c: 3 }, buf, 0);
    assert.deepEqual(buf, Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]));
    assert.deepEqual(S.decode(buf, 0), { a: 1, b: 2, c: 3 });
    assert.equal(RouteValue.size, 40);
    assert.equal(RouteValue.offsets.packets, 16);
    assert.equal(LpmV4Key.size, 8);
    assert.equal(Quad.size, 8);
    assert.equal(Quad.offsets.b, 4);
  });
  test('a bad field is named in the error', () => {
    assert.throws(
      () => encode(RouteValue, { mac: 'zz', vlan: 1, ifindex: 1, packets: 0n, addr6: Buffer.alloc(16) }),
      (e: unknown) => e instanceof CodecError && e.message.startsWith('route_value.mac'),
    );
    assert.throws(() => encode(RouteValue, { mac: '02:00:00:00:00:01' } as never), /route_value.vlan: missing/);
  });
  test('C strings are NUL-terminated and bounded', () => {
    const S = cstring(8);
    assert.equal(S.decode(encode(S, 'abc'), 0), 'abc');
    assert.throws(() => encode(S, '12345678'), /needs 9 bytes/);
    assert.equal(S.decode(Buffer.from('12345678'), 0), '12345678');
  });
  test('raw codecs insist on the exact size', () => {
    assert.throws(() => encode(raw(4), Buffer.alloc(3)), /exactly 4 bytes, got 3/);
  });
});

describe('per-CPU values', () => {
  test('one slot per CPU, each rounded up to 8 bytes', () => {
    const c = perCpuCodec(u32, 3);
    assert.equal(c.size, 24);
    const buf = encode(c, [1, 2, 3]);
    assert.equal(buf.readUInt32LE(8), 2);
    assert.deepEqual(c.decode(buf, 0), [1, 2, 3]);
    assert.throws(() => encode(c, [1, 2]), /one value per possible CPU \(3\)/);
    assert.equal(sumPerCpu([1n, 2n, 3n]), 6n);
    assert.equal(sumPerCpu([1, 2]), 3);
  });
});
