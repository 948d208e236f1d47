import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BpfObject, ipv4, lpmKey, sumPerCpu, u32, u64, type Program } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { skipKernel } from '../helpers/kernel.js';
import { arpPacket, ipChecksum, ipv4Packet } from '../helpers/packets.js';

const XDP_ABORTED = 0;
const XDP_DROP = 1;
const XDP_PASS = 2;
const XDP_TX = 3;

describe('XDP verdicts and output bytes via BPF_PROG_TEST_RUN', { skip: skipKernel }, () => {
  let obj: BpfObject;
  let prog: Program;
  before(async () => {
    obj = BpfObject.open(objectPath('test/maps'));
    await obj.load();
    prog = obj.program('xdp_classify');
    const lpm = obj.map('prefixes').typed(lpmKey(ipv4), u32);
    lpm.update({ prefixlen: 24, addr: '198.51.100.0' }, XDP_TX);
    lpm.update({ prefixlen: 32, addr: '198.51.100.66' }, XDP_DROP);
    lpm.update({ prefixlen: 32, addr: '198.51.100.99' }, 77);
  });
  after(() => obj?.close());

  test('a hit with XDP_TX swaps MACs, decrements TTL and keeps the checksum valid', () => {
    const input = ipv4Packet({ src: '198.51.100.7', dst: '203.0.113.1', ttl: 64, srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02' });
    const r = prog.testRun({ data: input });
    assert.equal(r.retval, XDP_TX);
    assert.equal(r.data.length, input.length);
    assert.deepEqual(r.data.subarray(0, 6), input.subarray(6, 12));
    assert.deepEqual(r.data.subarray(6, 12), input.subarray(0, 6));
    assert.equal(r.data[14 + 8], 63);
    assert.equal(ipChecksum(r.data.subarray(14, 34)), 0, 'IPv4 header checksum must verify');
    // everything after the TTL/checksum is untouched
    assert.deepEqual(r.data.subarray(34), input.subarray(34));
  });

  test('checksum stays valid across many TTLs (incremental update edge cases)', () => {
    for (const ttl of [2, 3, 128, 255]) {
      const r = prog.testRun({ data: ipv4Packet({ src: '198.51.100.8', dst: '192.0.2.1', ttl }) });
      assert.equal(r.retval, XDP_TX);
      assert.equal(r.data[22], ttl - 1);
      assert.equal(ipChecksum(r.data.subarray(14, 34)), 0, `ttl ${ttl}`);
    }
  });

  test('TTL 1 passes to the kernel untouched (it sends the ICMP error)', () => {
    const input = ipv4Packet({ src: '198.51.100.9', dst: '192.0.2.1', ttl: 1 });
    const r = prog.testRun({ data: input });
    assert.equal(r.retval, XDP_PASS);
    assert.deepEqual(r.data, input);
  });

  test('the longest prefix decides: /32 drop inside a /24 TX', () => {
    assert.equal(prog.testRun({ data: ipv4Packet({ src: '198.51.100.66', dst: '192.0.2.1' }) }).retval, XDP_DROP);
  });

  test('misses, non-IP and bad verdicts', () => {
    const miss = ipv4Packet({ src: '203.0.113.5', dst: '192.0.2.1' });
    const r = prog.testRun({ data: miss });
    assert.equal(r.retval, XDP_PASS);
    assert.deepEqual(r.data, miss);
    const arp = arpPacket();
    assert.equal(prog.testRun({ data: arp }).retval, XDP_PASS);
    assert.equal(prog.testRun({ data: ipv4Packet({ src: '198.51.100.99', dst: '192.0.2.1' }) }).retval, XDP_ABORTED);
  });

  test('truncated packets are dropped, never read out of bounds', () => {
    const full = ipv4Packet({ src: '198.51.100.7', dst: '192.0.2.1' });
    for (const len of [14, 20, 33]) assert.equal(prog.testRun({ data: full.subarray(0, len) }).retval, XDP_DROP, `len ${len}`);
  });

  test('per-verdict per-CPU counters count every run', () => {
    const verdicts = obj.map('verdicts').perCpu(u32, u64);
    const before = sumPerCpu(verdicts.lookup(XDP_PASS) ?? []);
    prog.testRun({ data: arpPacket(), repeat: 1000 });
    assert.equal(sumPerCpu(verdicts.lookup(XDP_PASS) ?? []) - before, 1000n);
  });
});

describe('constants set before load reach the verifier', { skip: skipKernel }, () => {
  test('rewrite_ttl = 0 leaves the TTL alone; magic is visible to the program', async () => {
    const obj = BpfObject.open(objectPath('test/maps'));
    try {
      assert.deepEqual(
        obj
          .constants()
          .map((v) => v.name)
          .sort(),
        ['magic', 'rewrite_ttl'],
      );
      obj.setConstant('rewrite_ttl', 0);
      obj.setConstant('magic', 0xfeedfacecafebeefn);
      assert.throws(() => obj.setConstant('nope', 1), /no constant named nope/);
      assert.throws(() => obj.setConstant('rewrite_ttl', 2 ** 32), /cannot hold/);
      await obj.load();
      assert.throws(() => obj.setConstant('magic', 1), /already loaded/);
      obj.map('prefixes').typed(lpmKey(ipv4), u32).update({ prefixlen: 32, addr: '198.51.100.7' }, XDP_TX);
      const r = obj.program('xdp_classify').testRun({ data: ipv4Packet({ src: '198.51.100.7', dst: '192.0.2.1', ttl: 9 }) });
      assert.equal(r.retval, XDP_TX);
      assert.equal(r.data[22], 9);
      assert.equal(obj.map('counters').typed(u32, u64).lookup(12), 0xfeedfacecafebeefn);
    } finally {
      obj.close();
    }
  });
});
