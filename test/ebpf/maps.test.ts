import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  BpfError,
  BpfMap,
  BpfObject,
  CodecError,
  createMap,
  ipv4,
  lpmKey,
  MAP_F_MMAPABLE,
  MapMemory,
  numPossibleCpus,
  sumPerCpu,
  u32,
  u64,
} from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { RouteValue } from '../fixtures/selftest-abi.js';
import { skipKernel } from '../helpers/kernel.js';

const route = (i: number) => ({
  mac: `02:00:00:00:00:${(i % 256).toString(16).padStart(2, '0')}`,
  vlan: i % 4096,
  ifindex: i,
  packets: BigInt(i) * 10n,
  addr6: Buffer.alloc(16, i % 256),
});

describe('maps on the real kernel', { skip: skipKernel }, () => {
  let obj: BpfObject;
  before(async () => {
    obj = BpfObject.open(objectPath('test/maps'));
    await obj.load();
  });
  after(() => obj?.close());

  test('hash: update, lookup, flags, delete', () => {
    const routes = obj.map('routes').typed(u32, RouteValue);
    assert.equal(routes.lookup(7), undefined);
    routes.update(7, route(7));
    assert.deepEqual(routes.lookup(7), route(7));
    assert.throws(
      () => routes.update(7, route(8), 'noexist'),
      (e: unknown) => e instanceof BpfError && e.code === 'EEXIST',
    );
    assert.throws(
      () => routes.update(9, route(9), 'exist'),
      (e: unknown) => e instanceof BpfError && e.code === 'ENOENT',
    );
    routes.update(7, route(8), 'exist');
    assert.equal(routes.lookup(7)?.ifindex, 8);
    assert.equal(routes.delete(7), true);
    assert.equal(routes.delete(7), false);
    assert.equal(routes.lookup(7), undefined);
  });

  test('hash: iteration and batch operations see every entry exactly once', () => {
    const routes = obj.map('routes').typed(u32, RouteValue);
    const entries = Array.from({ length: 600 }, (_, i) => [i + 1000, route(i)] as const);
    routes.updateBatch(entries);
    const keys = [...routes.keys()].sort((a, b) => a - b);
    assert.deepEqual(
      keys,
      entries.map(([k]) => k),
    );
    const dumped = new Map(routes.dump());
    assert.equal(dumped.size, 600);
    for (const [k, v] of entries) assert.deepEqual(dumped.get(k), v);
    assert.equal(routes.deleteBatch([...entries.slice(0, 300).map(([k]) => k), 99999]), 300);
    assert.equal([...routes.entries()].length, 300);
    assert.equal(routes.deleteBatch(entries.map(([k]) => k)), 300);
    assert.equal(routes.dump().length, 0);
  });

  test('hash: a full map says so', () => {
    const m = createMap({ type: 'hash', name: 'tiny', keySize: 4, valueSize: 4, maxEntries: 2 }).typed(u32, u32);
    try {
      m.update(1, 1);
      m.update(2, 2);
      assert.throws(
        () => m.update(3, 3),
        (e: unknown) => e instanceof BpfError && e.code === 'E2BIG',
      );
    } finally {
      m.close();
    }
  });

  test('array memory: what the syscalls write is read in the mapping and back, values at 8-byte strides', () => {
    // 12-byte values: the kernel lays elements out every 16 bytes
    const m = createMap({ type: 'array', name: 'mm', keySize: 4, valueSize: 12, maxEntries: 300, flags: MAP_F_MMAPABLE });
    const mem = new MapMemory(m, { writable: true });
    try {
      assert.equal(mem.stride, 16);
      assert.equal(mem.offset(299), 299 * 16);
      const v = Buffer.from('0102030405060708090a0b0c', 'hex');
      m.update(Buffer.from([7, 0, 0, 0]), v);
      assert.deepEqual(mem.bytes.subarray(mem.offset(7), mem.offset(7) + 12), v);
      mem.bytes.writeUInt32LE(0xdeadbeef, mem.offset(299) + 8);
      assert.equal((m.lookup(Buffer.from([43, 1, 0, 0])) as Buffer).readUInt32LE(8), 0xdeadbeef);
      assert.throws(() => mem.offset(300), /outside the map's 300 entries/);
    } finally {
      mem.close();
      m.close();
    }
    assert.throws(() => mem.bytes, /closed/);
  });

  test('array memory: maps that cannot be mapped are refused with the reason', () => {
    const plain = createMap({ type: 'array', name: 'plain', keySize: 4, valueSize: 8, maxEntries: 4 });
    const hash = createMap({ type: 'hash', name: 'h', keySize: 4, valueSize: 8, maxEntries: 4 });
    try {
      assert.throws(
        () => new MapMemory(plain),
        (e: unknown) => e instanceof BpfError && /without BPF_F_MMAPABLE/.test(e.message),
      );
      assert.throws(
        () => new MapMemory(hash),
        (e: unknown) => e instanceof BpfError && /only array maps/.test(e.message),
      );
    } finally {
      plain.close();
      hash.close();
    }
  });

  test('array: fixed keys, delete refused with advice', () => {
    const counters = obj.map('counters').typed(u32, u64);
    assert.equal(counters.lookup(3), 0n);
    counters.update(3, 42n);
    assert.equal(counters.lookup(3), 42n);
    assert.equal(counters.lookup(16), undefined);
    assert.throws(() => counters.delete(3), /cannot be deleted, write a zero value instead/);
    assert.throws(
      () => counters.update(16, 1n),
      (e: unknown) => e instanceof BpfError && e.code === 'E2BIG',
    );
    assert.equal(counters.dump().length, 16);
  });

  test('per-CPU: one value per possible CPU, summed on demand', () => {
    const cpus = numPossibleCpus();
    const m = obj.map('percpu_hash').perCpu(u32, u64);
    const values = Array.from({ length: cpus }, (_, i) => BigInt(i + 1));
    m.update(5, values);
    assert.deepEqual(m.lookup(5), values);
    assert.equal(
      sumPerCpu(m.lookup(5) ?? []),
      values.reduce((a, b) => a + b, 0n),
    );
    assert.throws(() => m.update(6, [1n]), /one value per possible CPU/);
    m.updateBatch([[6, values]]);
    assert.deepEqual(new Map(m.dump()).get(6), values);
    assert.throws(() => obj.map('percpu_hash').typed(u32, u64), /is per-CPU/);
    assert.throws(() => obj.map('routes').perCpu(u32, RouteValue), /is not per-CPU/);
  });

  test('LPM trie: the longest prefix wins', () => {
    const lpm = obj.map('prefixes').typed(lpmKey(ipv4), u32);
    lpm.update({ prefixlen: 24, addr: '192.0.2.0' }, 1);
    lpm.update({ prefixlen: 25, addr: '192.0.2.128' }, 3);
    lpm.update({ prefixlen: 0, addr: '0.0.0.0' }, 2);
    assert.equal(lpm.lookup({ prefixlen: 32, addr: '192.0.2.200' }), 3);
    assert.equal(lpm.lookup({ prefixlen: 32, addr: '192.0.2.5' }), 1);
    assert.equal(lpm.lookup({ prefixlen: 32, addr: '203.0.113.1' }), 2);
    const all = lpm.dump();
    assert.equal(all.length, 3);
    assert.equal(lpm.delete({ prefixlen: 25, addr: '192.0.2.128' }), true);
    assert.equal(lpm.lookup({ prefixlen: 32, addr: '192.0.2.200' }), 1);
    lpm.delete({ prefixlen: 24, addr: '192.0.2.0' });
    lpm.delete({ prefixlen: 0, addr: '0.0.0.0' });
  });

  test('wrong sizes and names are clear errors', () => {
    const routes = obj.map('routes');
    assert.throws(
      () => routes.lookup(Buffer.alloc(3)),
      (e: unknown) => e instanceof CodecError && /map routes key/.test(e.message) && /exactly 4 bytes, got 3/.test(e.message),
    );
    assert.throws(() => routes.typed(u64, RouteValue), /key codec u64 is 8 bytes, the map's key is 4/);
    assert.throws(() => routes.typed(u32, u64), /value codec is 8 bytes, the map's value is 40/);
    assert.throws(
      () => obj.map('nope'),
      (e: unknown) => e instanceof BpfError && /has no map named nope/.test(e.message) && /routes/.test(e.message),
    );
    assert.throws(() => obj.program('nope'), /its programs: xdp_classify/);
    assert.throws(
      () => BpfMap.fromPin('/sys/fs/bpf/does-not-exist-stackbpf'),
      (e: unknown) => e instanceof BpfError && e.code === 'ENOENT',
    );
  });
});
