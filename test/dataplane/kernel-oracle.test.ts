// xdp_ingress against an oracle we did not write: the Linux kernel's own
// forwarding, set up in a namespace as the exposures say. The RFC fixtures
// and 100,000 generated frames (the fuzzer's, mutations included) go through
// both; every frame XDP forwards must leave the kernel identically (up to the
// differences documented in docs/dataplane.md), and every frame XDP leaves
// to the kernel for a reason that says a router must not forward it must not
// have been forwarded by the kernel either.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { forwardablePacket, rng, randomPacket } from '../helpers/dpfuzz.js';
import { rfcFixtures } from '../helpers/dpfixtures.js';
import { compare, kernelForward, type Oracle, openOracle } from '../helpers/kernel-oracle.js';
import { skipKernel } from '../helpers/kernel.js';

const FRAMES = Number(process.env.STACKBPF_ORACLE_FRAMES ?? 100_000);

describe('XDP ingress against the kernel forwarding oracle', { skip: skipKernel }, () => {
  let o: Oracle;
  before(async () => {
    o = await openOracle(rng(0x5eed));
  });
  after(() => o?.close());

  test('every RFC fixture: the kernel agrees with the expected fate', async (t) => {
    const all = rfcFixtures(o.targetMac);
    const fixtures = o.vlans ? all : all.filter((f) => !f.needsVlan);
    if (fixtures.length < all.length) t.diagnostic(`${all.length - fixtures.length} fixture(s) need VLAN devices, which this kernel lacks (no 8021q)`);
    const { fates } = await kernelForward(
      o,
      fixtures.map((f) => f.input),
    );
    fixtures.forEach((f, i) => {
      const out = fates[i]?.out ?? [];
      const what = `${f.name} (${f.rfc})`;
      if (f.output) {
        assert.equal(out.length, 1, `${what}: the kernel forwards it`);
        assert.equal(out[0]?.toString('hex'), f.output.toString('hex'), `${what}: the kernel's frame is the fixture's`);
      } else if (f.kernel === 'forwards') {
        assert.equal(out.length, 1, `${what}: Linux forwards it (XDP leaves it to Linux)`);
      } else if (f.kernel === 'fragments') {
        assert.ok(out.length > 1, `${what}: Linux fragments it`);
      } else {
        assert.equal(out.length, 0, `${what}: the kernel does not forward it either`);
      }
    });
    const r = compare(
      o,
      fixtures.map((f) => f.input),
      fates,
    );
    assert.equal(r.unexplained, 0, JSON.stringify(r.differences, null, 1));
  });

  test(`${FRAMES.toLocaleString('en')} generated frames: 0 unexplained differences`, async () => {
    const r = rng(0x0dac1e);
    // half the fuzzer's frames (mutations included), half frames a router forwards
    const frames = Array.from({ length: FRAMES }, (_, i) => (i % 2 ? forwardablePacket(r, o.world) : randomPacket(r, o.world)));
    const { fates, summary } = await kernelForward(o, frames);
    const res = compare(o, frames, fates);
    process.stdout.write(`# oracle: ${JSON.stringify({ ...res, differences: res.differences.length, kernel: summary })}\n`);
    assert.equal(res.unexplained, 0, JSON.stringify(res.differences.slice(0, 5), null, 1));
    assert.ok(res.redirected > FRAMES / 3, `enough frames are forwarded to make the comparison mean something (${res.redirected})`);
  });
});
