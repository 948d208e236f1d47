// The convergence benchmark's agent, in a process of its own so its memory
// is measured apart from the harness's (the NB writer, the observer thread,
// the benchmark's own bookkeeping). Forked with an IPC channel: it starts
// the exposure controller from the config it is sent and answers the
// harness's requests: reconcile now, force a full OVN resync, its status and
// its memory (VmRSS, VmHWM, and V8's view of the heap).
import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics, setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ExposureController } from '../src/exposure/controller.js';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';

type Req =
  | { id: number; op: 'start'; config: unknown }
  | { id: number; op: 'reconcile' | 'resync' | 'memory' | 'stop' }
  | { id: number; op: 'uuid'; name: string };

let agent: ExposureController | undefined;
// a full collection on request, to tell live memory from garbage not yet collected
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const mb = (b: number): number => Math.round((b / 1048576) * 10) / 10;
const status = (k: string): number => {
  const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
};

async function handle(r: Req): Promise<unknown> {
  switch (r.op) {
    case 'start':
      agent = await ExposureController.start(parseConfig(r.config), createLogger({ level: 'warn' }));
      return { pid: process.pid };
    case 'reconcile':
      await agent?.reconcileNow();
      return {};
    case 'resync': {
      const src = agent?.ovnSource;
      if (!src) throw new Error('no OVN source');
      const before = src.status().recomputes;
      const t0 = performance.now();
      src.ovn.resync('benchmark');
      while (!(src.ovn.isSynced() && src.status().recomputes > before)) await new Promise((res) => setTimeout(res, 1));
      await agent?.reconcileNow();
      return { ms: performance.now() - t0 };
    }
    case 'uuid':
      return { uuid: [...(agent?.ovnSource?.ovn.rows('Logical_Switch_Port') ?? [])].find((row) => row.name === r.name)?._uuid };
    case 'memory': {
      // BENCH_AGENT_HEAP_SNAPSHOT=FILE: where the heap goes, for Chrome DevTools or a script
      if (process.env.BENCH_AGENT_HEAP_SNAPSHOT) writeHeapSnapshot(process.env.BENCH_AGENT_HEAP_SNAPSHOT);
      const u = process.memoryUsage();
      const st = agent?.ovnSource?.status();
      const rss = status('VmRSS');
      const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, mb(sp.space_used_size)]));
      gc();
      gc();
      await new Promise((res) => setTimeout(res, 200));
      const after = process.memoryUsage();
      return {
        rss_mb: mb(rss),
        rss_after_gc_mb: mb(status('VmRSS')),
        heap_used_after_gc_mb: mb(after.heapUsed),
        heap_total_after_gc_mb: mb(after.heapTotal),
        peak_rss_mb: mb(status('VmHWM')),
        heap_used_mb: mb(u.heapUsed),
        heap_total_mb: mb(u.heapTotal),
        external_mb: mb(u.external),
        array_buffers_mb: mb(u.arrayBuffers),
        heap_spaces_mb: spaces,
        heap_spaces_after_gc_mb: Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, mb(sp.space_used_size)])),
        recomputes: st?.recomputes,
        recompute_ms: st ? Math.round(st.lastRecomputeMs * 100) / 100 : undefined,
      };
    }
    case 'stop':
      await agent?.stop();
      agent = undefined;
      setImmediate(() => process.exit(0));
      return {};
  }
}

process.on('message', (r: Req) => {
  handle(r).then(
    (v) => process.send?.({ id: r.id, ok: v }),
    (e: unknown) => process.send?.({ id: r.id, error: (e as Error).message }),
  );
});
process.send?.({ ready: true });
