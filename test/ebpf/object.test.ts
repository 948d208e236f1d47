import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BpfError, BpfObject, enableStats, NotSupportedError, probeFeatures, requireHook } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { skipKernel } from '../helpers/kernel.js';

describe('objects: bad input gives clear typed errors', { skip: skipKernel }, () => {
  test('a missing file', () => {
    assert.throws(
      () => BpfObject.open('/nonexistent/prog.o'),
      (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && /not found/.test(e.message),
    );
  });

  test('a corrupt file and a truncated object', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackbpf-'));
    try {
      const junk = join(dir, 'junk.o');
      writeFileSync(junk, 'this is not an ELF file at all');
      assert.throws(
        () => BpfObject.open(junk),
        (e: unknown) => e instanceof BpfError && /not a valid BPF ELF object/.test(e.message) && /rebuild/.test(e.message),
      );
      const real = readFileSync(objectPath('test/maps'));
      const cut = join(dir, 'cut.o');
      writeFileSync(cut, real.subarray(0, real.length / 2));
      assert.throws(() => BpfObject.open(cut), BpfError);
      assert.throws(() => BpfObject.open(Buffer.alloc(0)), /buffer is empty/);
      assert.throws(() => BpfObject.open(Buffer.from('\x7fELF garbage')), BpfError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('open from a buffer works like open from a file', async () => {
    const obj = BpfObject.open(readFileSync(objectPath('test/maps')), { name: 'from_mem' });
    try {
      await obj.load();
      assert.equal(obj.program('xdp_count').typeName, 'xdp');
    } finally {
      obj.close();
    }
  });

  test('the verifier rejects a program: the error names it and quotes the reason', async () => {
    const obj = BpfObject.open(objectPath('test/reject'));
    await assert.rejects(obj.load(), (e: unknown) => {
      assert.ok(e instanceof BpfError);
      assert.equal(e.subject, 'unchecked_read');
      assert.match(e.message, /program unchecked_read was rejected/);
      assert.match(e.message, /invalid access to packet/);
      assert.match(e.verifierLog ?? '', /R1 offset is outside of the packet/);
      return true;
    });
    assert.equal(obj.state, 'failed');
    assert.throws(() => obj.program('always_pass'), /failed/);
    obj.close();
  });

  test('autoload leaves a program out; state errors say what to do', async () => {
    const obj = BpfObject.open(objectPath('test/reject'));
    try {
      assert.throws(() => obj.program('always_pass'), /load it first/);
      obj.setAutoload('unchecked_read', false);
      assert.equal(obj.programSpec('unchecked_read').autoload, false);
      await obj.load();
      assert.equal(obj.program('always_pass').testRun({ data: Buffer.alloc(64) }).retval, 2);
      assert.throws(() => obj.program('unchecked_read').fd, /is not loaded/);
      assert.throws(() => obj.setMaxEntries('x', 1), /already loaded/);
    } finally {
      obj.close();
    }
  });

  test('map sizes can be changed before load, and bad sizes are refused', async () => {
    const obj = BpfObject.open(objectPath('test/maps'));
    try {
      assert.throws(() => obj.setMaxEntries('routes', 0), /positive 32-bit integer/);
      obj.setMaxEntries('routes', 4096);
      await obj.load();
      assert.equal(obj.map('routes').info.maxEntries, 4096);
    } finally {
      obj.close();
    }
  });

  test("the benchmarks' own objects pass the verifier, the traffic generator in both families", async () => {
    // constants are frozen before load, so the verifier prunes the branch of the other family:
    // each family is a load of its own (an IPv6-only regression once reached a benchmark run)
    const loads: [string, (o: BpfObject) => void][] = [
      ['test/trafgen', (o) => o.setConstant('family', Buffer.from([6]))],
      ['test/trafgen', (o) => o.setConstant('family', Buffer.from([4]))],
      ['test/dataplane_bench', () => {}],
      ['test/trace_floor', () => {}],
    ];
    for (const [name, prepare] of loads) {
      const obj = BpfObject.open(objectPath(name));
      try {
        prepare(obj);
        await obj.load();
        assert.ok(obj.programNames.length > 0, name);
      } finally {
        obj.close();
      }
    }
  });

  test('BPF run-time statistics count runs while enabled', async () => {
    const obj = BpfObject.open(objectPath('test/reject'));
    obj.setAutoload('unchecked_read', false);
    await obj.load();
    const stats = enableStats();
    try {
      const p = obj.program('always_pass');
      p.testRun({ data: Buffer.alloc(64), repeat: 500 });
      const s = p.stats();
      assert.ok(s.runCount >= 500n, `run count ${s.runCount}`);
      assert.ok(s.runTimeNs > 0n);
    } finally {
      stats.close();
      obj.close();
    }
  });

  test('a missing kernel feature is a NotSupportedError decided by the probe', () => {
    const report = probeFeatures();
    for (const [hook, probe] of Object.entries(report.hooks)) {
      if (probe.supported) assert.doesNotThrow(() => requireHook(hook as never));
      else
        assert.throws(
          () => requireHook(hook as never),
          (e: unknown) => e instanceof NotSupportedError && e.feature === hook && /stackbpf doctor/.test(e.message),
        );
    }
    // what the probe says must match reality for what the tests load here
    assert.equal(report.hooks.xdp.supported, true);
    assert.equal(report.hooks.tp_btf.supported, true);
    assert.equal(report.maps.ringbuf?.supported, true);
  });
});
