// A data plane on its own: a namespace with veth pairs for real ifindexes,
// a bpffs pin directory, the loaded programs and maps; close() removes it all.
import { Dataplane } from '../../src/dataplane/dataplane.js';
import { nodeNamespace, pinDir, type Netns } from './kernel.js';

export interface DataplaneRig {
  ns: Netns;
  pins: ReturnType<typeof pinDir>;
  dp: Dataplane;
  /** Close and open again on the same pins (a restarted agent). */
  reopen(): Promise<Dataplane>;
  close(): Promise<void>;
}

export async function openDataplaneRig(pairs: [string, string][], capacity: { maxExposures: number; maxBlockRules: number }): Promise<DataplaneRig> {
  const ns = await nodeNamespace(pairs);
  const pins = pinDir();
  const open = () => Dataplane.open({ pinRoot: pins.dir, netns: ns.name, ...capacity });
  let dp: Dataplane;
  try {
    dp = await open();
  } catch (err) {
    pins.remove();
    await ns.delete();
    throw err;
  }
  const rig: DataplaneRig = {
    ns,
    pins,
    dp,
    async reopen() {
      rig.dp.close();
      rig.dp = await open();
      return rig.dp;
    },
    async close() {
      rig.dp.destroy();
      pins.remove();
      await ns.delete();
    },
  };
  return rig;
}
