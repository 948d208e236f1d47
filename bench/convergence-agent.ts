// The convergence benchmark's agent, in a process of its own so its memory
// is measured apart from the harness's (the NB writer, the observer thread,
// the benchmark's own bookkeeping). Forked with an IPC channel: it starts
// the exposure controller from the config it is sent and answers the
// harness's requests: reconcile now, force a full OVN resync, its status and
// its memory (VmRSS, VmHWM, and V8's view of the heap).
import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
import { ExposureController } from '../src/exposure/controller.js';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';

type Req =
  | { id: number; op: 'start'; config: unknown }
  | { id: number; op: 'reconcile' | 'resync' | 'memory' | 'stop' }
  | { id: number; op: 'uuid'; name: string };

let agent: ExposureController | undefined;
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
      const u = process.memoryUsage();
      const st = agent?.ovnSource?.status();
      return {
        rss_mb: mb(status('VmRSS')),
        peak_rss_mb: mb(status('VmHWM')),
        heap_used_mb: mb(u.heapUsed),
        heap_total_mb: mb(u.heapTotal),
        external_mb: mb(u.external),
        array_buffers_mb: mb(u.arrayBuffers),
        heap_spaces_mb: Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, mb(s.space_used_size)])),
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
