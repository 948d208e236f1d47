import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rmSync } from 'node:fs';
import { BpfMap, BpfObject, createMap, MapType } from '../../src/ebpf/index.js';
import { Counter, DpConfig, Exp4Slot, Exp6Slot, ExposureValue, L2Local, LpmV4, LpmV6, PortInfo, XdpAction } from '../../src/dataplane/abi.js';
import { Blocklist } from '../../src/dataplane/blocklist.js';
import type { Dataplane } from '../../src/dataplane/dataplane.js';
import { ExposureError, type Exposure, validateExposures } from '../../src/dataplane/exposure.js';
import { Reconciler } from '../../src/dataplane/reconciler.js';
import { objectPath } from '../../src/paths.js';
import { assertMirrorsBtf } from '../helpers/btf.js';
import { openDataplaneRig, type DataplaneRig } from '../helpers/dataplane.js';
import { skipKernel } from '../helpers/kernel.js';
import { ipv4Packet, ipv6Packet } from '../helpers/packets.js';

const BpfMapOf = (path: string) => {
  const m = BpfMap.fromPin(path);
  const info = m.info;
  m.close();
  return info;
};

describe('data plane ABI', () => {
  test('codecs mirror bpf/include/dataplane.h', () => {
    const obj = BpfObject.open(objectPath('dataplane'));
    try {
      assertMirrorsBtf(obj, 'exposure', ExposureValue);
      assertMirrorsBtf(obj, 'lpm_v4', LpmV4);
      assertMirrorsBtf(obj, 'lpm_v6', LpmV6);
      assertMirrorsBtf(obj, 'counter', Counter);
      assertMirrorsBtf(obj, 'dp_config', DpConfig);
      assertMirrorsBtf(obj, 'exp4_slot', Exp4Slot);
      assertMirrorsBtf(obj, 'exp6_slot', Exp6Slot);
      assertMirrorsBtf(obj, 'port_info', PortInfo);
      assertMirrorsBtf(obj, 'l2_local', L2Local);
    } finally {
      obj.close();
    }
  });
});

describe('reconciler on the real maps', { skip: skipKernel }, () => {
  let rig: DataplaneRig;
  let dp: Dataplane;
  const base: Exposure[] = [
    { prefix: '198.51.100.1', target: 'brex0', mac: '02:00:00:00:01:01', owner: 'a' },
    { prefix: '198.51.100.2', target: 'brex0', mac: '02:00:00:00:01:02', owner: 'b' },
    { prefix: '2001:db8::2', target: 'brex1', mac: '02:00:00:00:01:03', owner: 'c' },
    { prefix: '203.0.113.0/25', target: 'brex1', mac: '02:00:00:00:01:04', vlan: 7, owner: 'd' },
  ];
  before(async () => {
    rig = await openDataplaneRig(
      [
        ['brex0', 'brex0p'],
        ['brex1', 'brex1p'],
      ],
      { maxExposures: 256, maxBlockRules: 16 },
    );
    dp = rig.dp;
  });
  after(() => rig?.close());

  test('applies, then converges to no writes when nothing changed', () => {
    const r = new Reconciler(dp);
    assert.deepEqual(r.apply(base), { added: 4, updated: 0, removed: 0, unchanged: 0, portsAdded: 2, portsRemoved: 0, total: 4 });
    assert.deepEqual(r.apply(base), { added: 0, updated: 0, removed: 0, unchanged: 4, portsAdded: 0, portsRemoved: 0, total: 4 });
    assert.equal(dp.tables.exactV4.dump().length, 2);
    assert.equal(dp.tables.lpmV4.lookup({ prefixlen: 25, addr: '203.0.113.0' })?.vlan, 7);
  });

  test('updates in place keep the exposure id; removals clean up ports', () => {
    const r = new Reconciler(dp);
    const id = dp.tables.exactV4.lookup('198.51.100.2')?.id;
    const changed = base.map((e) => (e.owner === 'b' ? { ...e, mac: '02:00:00:00:09:09' } : e));
    assert.equal(r.apply(changed).updated, 1);
    assert.equal(dp.tables.exactV4.lookup('198.51.100.2')?.id, id);
    assert.equal(dp.tables.exactV4.lookup('198.51.100.2')?.dmac, '02:00:00:00:09:09');
    const res = r.apply(changed.filter((e) => e.target === 'brex0'));
    assert.equal(res.removed, 2);
    assert.equal(res.portsRemoved, 1);
    assert.equal(dp.tables.exactV6.dump().length, 0);
    assert.equal(dp.tables.ports.dump().filter(([, ifindex]) => ifindex !== 0).length, 1);
    r.apply(base);
  });

  test('invalid input is refused naming the field, and nothing is applied', () => {
    const r = new Reconciler(dp);
    const before = JSON.stringify([...r.current().keys()].sort());
    const bad: [Exposure[], RegExp][] = [
      [
        [...base, { prefix: '198.51.100.300', target: 'brex0', mac: '02:00:00:00:00:01', owner: 'x' }],
        /exposure 4: prefix: "198.51.100.300" has no valid IP address/,
      ],
      [[...base, { prefix: '198.51.100.9', target: 'brex0', mac: 'nope', owner: 'x' }], /exposure 4: mac: "nope" is not a MAC address/],
      [
        [...base, { prefix: '198.51.100.9', target: 'nosuch0', mac: '02:00:00:00:00:01', owner: 'x' }],
        /exposure 4: target: interface nosuch0: interface nosuch0 does not exist/,
      ],
      [
        [...base, { prefix: '198.51.100.1/32', target: 'brex0', mac: '02:00:00:00:00:01', owner: 'someone-else' }],
        /198.51.100.1\/32 is claimed by both "a" and "someone-else"/,
      ],
      [[...base, { prefix: '198.51.100.9', target: 'brex0', mac: '02:00:00:00:00:01', vlan: 4095, owner: 'x' }], /vlan: expected 0..4094/],
      [[...base, { prefix: '198.51.100.9', target: 'brex0', mac: '02:00:00:00:00:01', owner: '' }], /owner: missing/],
    ];
    for (const [input, msg] of bad) {
      assert.throws(
        () => r.apply(input),
        (e: unknown) => e instanceof ExposureError && msg.test(e.message),
        String(msg),
      );
      assert.equal(JSON.stringify([...r.current().keys()].sort()), before, 'maps unchanged');
    }
  });

  test('deltas after a full apply leave the maps exactly as a full apply would', () => {
    const r = new Reconciler(dp);
    r.apply(base);
    const norm = (list: Exposure[]) => [...validateExposures(list).values()];
    assert.throws(() => new Reconciler(dp).applyDelta(norm([base[0] as Exposure]), []), /no recent full apply/);
    const extra: Exposure = { prefix: '198.51.100.9', target: 'brex0', mac: '02:00:00:00:01:09', owner: 'e' };
    const moved: Exposure = { ...(base[2] as Exposure), mac: '02:00:00:00:07:07' };
    assert.deepEqual(r.applyDelta(norm([extra, moved]), ['198.51.100.1/32']), { added: 1, updated: 1, removed: 1 });
    const viaDelta = JSON.stringify([dp.tables.exactV4.dump().sort(), dp.tables.exactV6.dump().sort()]);
    const full = [extra, moved, base[1] as Exposure, base[3] as Exposure];
    assert.equal(r.apply(full).unchanged, 4, 'a full apply finds nothing left to do');
    assert.equal(JSON.stringify([dp.tables.exactV4.dump().sort(), dp.tables.exactV6.dump().sort()]), viaDelta);
    // what only a full apply can do is refused before anything is written
    assert.throws(
      () => r.applyDelta(norm([{ prefix: '203.0.113.128/25', target: 'brex0', mac: '02:00:00:00:01:0a', owner: 'f' }]), []),
      /full reconcile is needed/,
    );
    assert.throws(() => r.applyDelta([], ['203.0.113.0/25']), /full reconcile is needed/);
    assert.equal(dp.tables.lpmV4.lookup({ prefixlen: 25, addr: '203.0.113.0' })?.vlan, 7);
    r.apply(base);
  });

  test('a restarted agent re-adopts the pinned maps and converges without a write', async () => {
    const ids = new Map(dp.tables.exactV4.dump().map(([k, v]) => [k, v.id]));
    const pkt = ipv4Packet({ src: '192.0.2.66', dst: '198.51.100.1' });
    const id = ids.get('198.51.100.1') as number;
    dp.ingressProgram.testRun({ data: pkt, repeat: 5 });
    const counted = dp.exposureCounter(id);
    assert.ok(counted.packets >= 5n);
    dp = await rig.reopen();
    assert.deepEqual(new Map(dp.tables.exactV4.dump().map(([k, v]) => [k, v.id])), ids);
    assert.equal(new Reconciler(dp).apply(base).unchanged, 4);
    assert.deepEqual(dp.exposureCounter(id), counted, 'the counters outlive the restart');
  });

  test('an upgrade from per-CPU exposure counters: that pin is replaced, the tables re-adopted, counting goes on', async () => {
    const ids = new Map(dp.tables.exactV4.dump().map(([k, v]) => [k, v.id]));
    const path = `${rig.pins.dir}/dataplane/maps/exp_stats`;
    dp.close();
    rmSync(path);
    const old = createMap({ type: 'percpu_array', name: 'exp_stats', keySize: 4, valueSize: 16, maxEntries: 2048 });
    old.pin(path);
    old.close();
    dp = await rig.reopen();
    assert.equal(BpfMapOf(path).type, MapType.array, 'made afresh in the new layout');
    assert.deepEqual(new Map(dp.tables.exactV4.dump().map(([k, v]) => [k, v.id])), ids);
    assert.equal(new Reconciler(dp).apply(base).unchanged, 4);
    const id = ids.get('198.51.100.1') as number;
    dp.ingressProgram.testRun({ data: ipv4Packet({ src: '192.0.2.66', dst: '198.51.100.1' }), repeat: 3 });
    assert.equal(dp.exposureCounter(id).packets, 3n, 'from zero after the upgrade');
  });

  test('blocklist: a blocked source is dropped at XDP and counted; removal restores forwarding', () => {
    const bl = new Blocklist(dp);
    const pkt = ipv4Packet({ src: '192.0.2.66', dst: '198.51.100.1' });
    assert.equal(dp.ingressProgram.testRun({ data: pkt }).retval, XdpAction.redirect);
    const id = bl.add({ prefix: '192.0.2.0/24', reason: 'test' });
    const six = bl.add({ prefix: '2001:db8:bad::/48', reason: 'test v6' });
    assert.notEqual(id, six);
    dp.ingressProgram.testRun({ data: pkt, repeat: 3 });
    assert.equal(dp.ingressProgram.testRun({ data: pkt }).retval, XdpAction.drop);
    assert.equal(dp.ingressProgram.testRun({ data: ipv6Packet({ src: '2001:db8:bad::1', dst: '2001:db8::2' }) }).retval, XdpAction.drop);
    const rule = bl.list().find((r) => r.prefix === '192.0.2.0/24');
    assert.equal(rule?.packets, 4n);
    assert.equal(bl.remove('192.0.2.0/24'), true);
    assert.equal(dp.ingressProgram.testRun({ data: pkt }).retval, XdpAction.redirect);
    bl.remove('2001:db8:bad::/48');
    assert.equal(dp.tables.config.lookup(0)?.flags ?? 0, 1, 'only the LPM v4 lookup stays on');
    assert.throws(() => bl.add({ prefix: '192.0.2.0/40', reason: 'x' }), /prefix length/);
  });
});
