// Differential fuzzing at scale: xdp_ingress vs the TypeScript reference
// model on N random and mutated packets (default 1,000,000).
import { parseArgs } from 'node:util';
import { ifindexOf } from '../src/ebpf/index.js';
import { installWorld, rng, runFuzz } from '../test/helpers/dpfuzz.js';
import { openDataplaneRig } from '../test/helpers/dataplane.js';
import { skipKernel } from '../test/helpers/kernel.js';

export const bench = {
  summary: 'differential fuzzing of the XDP program against the reference model: {packets, mismatches}',
  async run(args: string[]) {
    const { values } = parseArgs({ args, options: { packets: { type: 'string', default: '1000000' }, seed: { type: 'string', default: '1' } } });
    if (skipKernel) throw new Error(`fuzz needs the kernel: ${skipKernel}`);
    const packets = Number(values.packets);
    const seed = Number(values.seed);
    const rig = await openDataplaneRig(
      [
        ['fz0', 'fz0p'],
        ['fz1', 'fz1p'],
      ],
      { maxExposures: 1024, maxBlockRules: 64 },
    );
    try {
      const dp = rig.dp;
      const r = rng(seed);
      const world = installWorld(dp, r, [ifindexOf('fz0', rig.ns.name), ifindexOf('fz1', rig.ns.name)]);
      const t0 = Date.now();
      let last = t0;
      const res = runFuzz(dp, world, r, packets, 1000, (done) => {
        if (Date.now() - last > 2000) {
          last = Date.now();
          process.stderr.write(`fuzz: ${done} packets, ${((done / (last - t0)) * 1000).toFixed(0)}/s\n`);
        }
      });
      const seconds = (Date.now() - t0) / 1000;
      return {
        packets: res.packets,
        mismatches: res.mismatches + res.counterMismatches,
        verdict_mismatches: res.mismatches,
        counter_mismatches: res.counterMismatches,
        seed,
        seconds: Number(seconds.toFixed(1)),
        by_reason: res.byReason,
        ...(res.firstMismatch ? { first_mismatch: res.firstMismatch } : {}),
      };
    } finally {
      await rig.close();
    }
  },
};
