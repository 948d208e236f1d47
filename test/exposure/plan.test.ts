// The exposure controller's decisions (pure logic; the maps and FRR they
// drive are tested in test/e2e/dataplane.test.ts and test/e2e/ovn.test.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Exposure, normalizeExposure } from '../../src/dataplane/exposure.js';
import { planDelta, reconcileMode, type ReconcileState } from '../../src/exposure/plan.js';

const ready: ReconcileState = { complete: true, fullNeeded: false, haveApplied: true, hasOvn: true, bgpConfigured: true };
const e = (prefix: string, owner: string, mac = '02:00:00:00:00:01'): Exposure => ({ prefix, target: 'tap0', mac, owner });
const applied = (...xs: Exposure[]) => new Map(xs.map((x) => [normalizeExposure(x).key, normalizeExposure(x)]));

describe('exposure controller: incremental or full', () => {
  test('incremental only when everything is known and in step', () => {
    assert.equal(reconcileMode(ready), 'incremental');
    assert.equal(reconcileMode({ ...ready, bgpConfigured: undefined }), 'incremental', 'no BGP at all');
  });
  for (const [why, change] of [
    ['a source has not synced (OVN before its first read): nothing may be removed', { complete: false }],
    ['another source changed or the safety net asked', { fullNeeded: true }],
    ['nothing fully applied yet (start, or the last attempt failed)', { haveApplied: false }],
    ['no OVN: only its changes come incrementally', { hasOvn: false }],
    ['FRR lost our configuration (bgpd restarted)', { bgpConfigured: false }],
  ] as const) {
    test(`full when ${why}`, () => assert.equal(reconcileMode({ ...ready, ...change }), 'full'));
  }
});

describe('exposure controller: what OVN changes do to the applied set', () => {
  const vm1 = e('198.51.100.10', 'port-1');
  test('added: written and announced; removed: withdrawn; same key back: an update, not a removal', () => {
    const p = planDelta(applied(vm1), [e('198.51.100.11', 'port-2'), e('198.51.100.10', 'port-1', '02:00:00:00:00:09')], [vm1]);
    assert.deepEqual(
      p.upsert.map((n) => [n.key, n.mac]),
      [
        ['198.51.100.11/32', '02:00:00:00:00:01'],
        ['198.51.100.10/32', '02:00:00:00:00:09'],
      ],
    );
    assert.deepEqual(p.announce, ['198.51.100.11/32'], 'a changed MAC is not announced again');
    assert.deepEqual(p.gone, []);
    assert.deepEqual(planDelta(applied(vm1), [], [vm1]).gone, ['198.51.100.10/32']);
  });
  test('a removal by another owner than the applied one removes nothing', () => {
    assert.deepEqual(planDelta(applied(vm1), [], [e('198.51.100.10', 'port-9')]).gone, []);
  });
  test('a prefix claimed by two owners, or added twice, needs a full reconcile', () => {
    assert.throws(() => planDelta(applied(vm1), [e('198.51.100.10', 'port-9')], []), /198.51.100.10\/32 is claimed by both "port-1" and "port-9"/);
    assert.throws(() => planDelta(applied(), [e('198.51.100.12', 'a'), e('198.51.100.12', 'a')], []), /added twice/);
    // the owner moves: removed by the old one and added by the new one in the same batch
    assert.deepEqual(planDelta(applied(vm1), [e('198.51.100.10', 'port-9')], [vm1]).upsert[0]?.owner, 'port-9');
  });
  test('a malformed exposure from OVN is refused naming the field', () => {
    assert.throws(() => planDelta(applied(), [e('198.51.100.13', 'x', 'not-a-mac')], []), /mac/);
  });
});
