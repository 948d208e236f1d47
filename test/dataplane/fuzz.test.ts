// A fixed differential fuzz run: the XDP program and the reference model
// must agree on every verdict, every output byte and every counter.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ifindexOf } from '../../src/ebpf/index.js';
import { installWorld, rng, runFuzz } from '../helpers/dpfuzz.js';
import { openDataplaneRig, type DataplaneRig } from '../helpers/dataplane.js';
import { skipKernel } from '../helpers/kernel.js';

describe('differential fuzzing: xdp_ingress vs the reference model', { skip: skipKernel }, () => {
  let rig: DataplaneRig;
  before(async () => {
    rig = await openDataplaneRig(
      [
        ['fz0', 'fz0p'],
        ['fz1', 'fz1p'],
      ],
      { maxExposures: 1024, maxBlockRules: 64 },
    );
  });
  after(() => rig?.close());

  test('20,000 random and mutated packets, fixed seed: zero mismatches', () => {
    const r = rng(20261127);
    const world = installWorld(rig.dp, r, [ifindexOf('fz0', rig.ns.name), ifindexOf('fz1', rig.ns.name)]);
    const res = runFuzz(rig.dp, world, r, 20_000);
    assert.equal(res.packets, 20_000);
    assert.equal(res.mismatches, 0, JSON.stringify(res.firstMismatch));
    assert.equal(res.counterMismatches, 0, JSON.stringify(res.firstMismatch));
    // the generator must reach every verdict, or the comparison proves little
    for (const reason of ['other', 'malformed', 'blocked', 'ndp', 'miss', 'ttl', 'no_port', 'redirect']) {
      assert.ok((res.byReason[reason] ?? 0) > 20, `${reason}: ${res.byReason[reason] ?? 0} packets`);
    }
  });
});
