// The slot table under the cases the fuzzer does not reach: a full probe
// window (spill to the hash map), updates in place, deletions before a
// spilled entry, and a restart that re-adopts the slots.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ifindexOf, macOf } from '../../src/ebpf/index.js';
import { EXP4_PROBES, XdpAction, type ExposureValue } from '../../src/dataplane/abi.js';
import type { Dataplane } from '../../src/dataplane/dataplane.js';
import { exp4Hash, exp4Size } from '../../src/dataplane/exp4.js';
import { Reconciler } from '../../src/dataplane/reconciler.js';
import { openDataplaneRig, type DataplaneRig } from '../helpers/dataplane.js';
import { skipKernel } from '../helpers/kernel.js';
import { ipv4Packet } from '../helpers/packets.js';

const key = (a: string): number => Buffer.from(a.split('.').map(Number)).readUInt32LE(0);

describe('IPv4 slot table: spills, updates, deletions, restart', { skip: skipKernel }, () => {
  let rig: DataplaneRig;
  let dp: Dataplane;
  let colliding: string[];
  let smac: string;
  const value = (i: number, dmac = `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`): ExposureValue => ({ dmac, smac, vlan: 0, port: 0, id: i, flags: 0 });
  const forwardedMac = (addr: string): string | undefined => {
    const r = dp.ingressProgram.testRun({ data: ipv4Packet({ src: '192.0.2.1', dst: addr }) });
    return r.retval === XdpAction.redirect ? [...r.data.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':') : undefined;
  };

  before(async () => {
    rig = await openDataplaneRig([['sl0', 'sl0p']], { maxExposures: 64, maxBlockRules: 16 });
    dp = rig.dp;
    smac = macOf('sl0', rig.ns.name);
    dp.tables.portInfo.update(0, { smac, pad: 0 });
    dp.inNetns(() => dp.tables.ports.update(0, ifindexOf('sl0', rig.ns.name)));
    // addresses that all hash to the same home slot: the window fills, the rest spill
    const mask = exp4Size(64) - 1;
    const home = exp4Hash(key('198.18.0.1')) & mask;
    colliding = [];
    for (let i = 1; colliding.length < EXP4_PROBES + 3 && i < 1 << 17; i++) {
      const a = `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      if ((exp4Hash(key(a)) & mask) === home) colliding.push(a);
    }
    assert.equal(colliding.length, EXP4_PROBES + 3);
  });
  after(() => rig?.close());

  test('entries past a full probe window spill to the hash map and still forward', () => {
    dp.exact4.updateBatch(colliding.map((a, i) => [a, value(i)] as const));
    assert.ok(dp.exact4.spillCount >= 3, `spilled ${dp.exact4.spillCount}`);
    colliding.forEach((a, i) => assert.equal(forwardedMac(a), value(i).dmac, a));
    const other = '198.19.255.254';
    assert.equal(forwardedMac(other), undefined, 'a miss stays a miss');
  });

  test('an update in place takes effect; an untouched neighbour keeps forwarding', () => {
    dp.exact4.updateBatch([[colliding[0] as string, value(0, '02:aa:aa:aa:aa:aa')]]);
    assert.equal(forwardedMac(colliding[0] as string), '02:aa:aa:aa:aa:aa');
    assert.equal(forwardedMac(colliding[1] as string), value(1).dmac);
    const last = colliding[colliding.length - 1] as string;
    dp.exact4.updateBatch([[last, value(99, '02:bb:bb:bb:bb:bb')]]);
    assert.equal(forwardedMac(last), '02:bb:bb:bb:bb:bb');
  });

  test('deleting entries inside the window does not hide the ones after it', () => {
    assert.equal(dp.exact4.deleteBatch(colliding.slice(0, 2)), 2);
    assert.equal(forwardedMac(colliding[0] as string), undefined);
    for (const a of colliding.slice(2)) assert.ok(forwardedMac(a), `${a} still forwards`);
  });

  test('a restart re-adopts the slots, and spilled entries move into freed slots', async () => {
    const spilled = dp.exact4.spillCount;
    dp = await rig.reopen();
    // spilled entries take the slots the deletions freed
    assert.ok(dp.exact4.spillCount < spilled, `${dp.exact4.spillCount} < ${spilled}`);
    for (const a of colliding.slice(2)) assert.ok(forwardedMac(a), `${a} forwards after the restart`);
    dp.exact4.updateBatch([[colliding[0] as string, value(0)]]);
    assert.equal(forwardedMac(colliding[0] as string), value(0).dmac, 'a re-inserted entry takes a freed slot');
  });

  test('the reconciler keeps the flags the slot table set (spills forward after apply)', () => {
    dp.exact4.deleteBatch(colliding);
    new Reconciler(dp).apply(colliding.map((a, i) => ({ prefix: a, target: 'sl0', mac: value(i).dmac, owner: `owner-${i}` })));
    assert.ok(dp.exact4.spillCount >= 3, `spilled ${dp.exact4.spillCount}`);
    colliding.forEach((a, i) => assert.equal(forwardedMac(a), value(i).dmac, a));
  });

  test('an update cut short by a crash (slot hidden, flag left on) is repaired on restart', async () => {
    const victim = colliding[5] as string;
    assert.ok(dp.tables.exactV4.lookup(victim), 'the victim is installed');
    // what a crash between hiding and re-publishing leaves: the key word deleted, the flag on
    const slots = dp.object.map('exp4_slots');
    for (const [k, v] of slots.dump() as [Buffer, Buffer][]) {
      if (v.readUInt32LE(0) === key(victim)) {
        v.writeUInt32LE(0xffffffff, 0);
        slots.update(k, v);
      }
    }
    const cfg = dp.tables.config.lookup(0) ?? { flags: 0, pad: 0 };
    dp.tables.config.update(0, { flags: cfg.flags | 32, pad: 0 });
    assert.ok(forwardedMac(victim), 'the updating flag keeps it forwarding through the hash map');
    dp = await rig.reopen();
    void dp.exact4;
    assert.equal((dp.tables.config.lookup(0)?.flags ?? 0) & 32, 0, 'the updating flag is cleared');
    assert.ok(forwardedMac(victim), 'and the entry has a slot again');
  });
});
