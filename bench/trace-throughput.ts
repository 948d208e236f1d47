// npm run bench -- trace-throughput [--seconds N] [--producers N]
//
// Sustained events through the whole pipeline of the real agent process:
// kernel hooks → ring buffer → decode → enrich → bounded queue → batched
// SQLite writes (with retention dropping segments as the size budget
// fills). The producers are monitored processes (matched by an operator
// rule) opening and closing /dev/null as fast as they can: one file.open
// event per iteration, real records from the real hooks. Reports the rate
// the store absorbed, everything lost at any stage (kernel ring, kernel
// tables, decoder, queues), and the agent's RSS at the end (default 600 s).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { agentApi, buildSysloop, startAgent } from './trace-overhead.js';

const log = (s: string): void => void process.stderr.write(`${s}\n`);

const apiGet = (socket: string, path: string): Promise<any> => agentApi(socket, 'GET', path);

const memKb = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const cpuTicks = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(f[11]) + Number(f[12]);
};

export const bench = {
  summary: 'sustained events/s through decode, enrich and batched SQLite storage in the real agent, lost events, agent RSS after the run',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({ args, options: { seconds: { type: 'string' }, producers: { type: 'string' } }, strict: true });
    const seconds = Number(values.seconds ?? 600);
    const producers = Number(values.producers ?? 1);
    const work = mkdtempSync(join(tmpdir(), 'sbb-tput-'));
    const marker = 'sbb-throughput-producer';
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: bench-producer\n    cmdline: "${marker}"\n`);
    const sysloop = await buildSysloop(work);
    const agent = await startAgent(work, { trace: { rules_file: join(work, 'rules.yaml') }, storage: { max_size_mb: 1024 } });
    const pid = agent.child.pid as number;
    const hz = 100;
    try {
      await new Promise((r) => setTimeout(r, 2000));
      const st0 = await apiGet(agent.socket, '/v1/status');
      const written0 = st0.storage.written as number;
      const cpu0 = cpuTicks(pid);
      const t0 = Date.now();
      const procs = Array.from({ length: producers }, () => spawn(sysloop, ['open-for', String(seconds), marker], { stdio: ['ignore', 'pipe', 'ignore'] }));
      let produced = 0;
      const done = procs.map(
        (p) =>
          new Promise<void>((r) => {
            let out = '';
            p.stdout?.on('data', (c) => (out += c));
            p.once('exit', () => {
              produced += Number(out.trim()) || 0;
              r();
            });
          }),
      );
      const samples: { t: number; written: number; rss: number }[] = [];
      const timer = setInterval(() => {
        void apiGet(agent.socket, '/v1/status').then((st) => {
          const s = { t: (Date.now() - t0) / 1000, written: (st.storage.written as number) - written0, rss: memKb(pid, 'VmRSS') / 1024 };
          samples.push(s);
          const lost = Object.values(st.trace.lost as Record<string, number>).reduce((a, b) => a + b, 0);
          log(
            `${s.t.toFixed(0)} s: ${s.written} stored (${(s.written / s.t / 1000).toFixed(0)}k/s), lost ${lost}, ring ${(st.trace.ring.pendingBytes / 1048576).toFixed(1)} MB waiting, store queue ${st.pipeline.consumers[0]?.queued}, rss ${s.rss.toFixed(0)} MB, db ${(st.storage.bytes / 1048576).toFixed(0)} MB`,
          );
        });
      }, 10_000);
      await Promise.all(done);
      clearInterval(timer);
      const producedMs = Date.now() - t0;
      const rssAtEnd = memKb(pid, 'VmRSS') / 1024;
      // let the pipeline finish what the producers made
      let st = await apiGet(agent.socket, '/v1/status');
      for (let i = 0; i < 600 && (st.trace.ring.pendingBytes > 0 || st.pipeline.consumers.some((c: { queued: number }) => c.queued > 0)); i++) {
        await new Promise((r) => setTimeout(r, 100));
        st = await apiGet(agent.socket, '/v1/status');
      }
      const elapsed = (Date.now() - t0) / 1000;
      const written = (st.storage.written as number) - written0;
      const lostKernel = Object.values(st.trace.lost as Record<string, number>).reduce((a, b) => a + b, 0);
      const lostQueues = (st.pipeline.consumers as { dropped: number }[]).reduce((a, c) => a + c.dropped, 0);
      const fileOpens = (st.trace.events['file.open'] as number) ?? 0;
      const cpuS = (cpuTicks(pid) - cpu0) / hz;
      return {
        events_per_s: Math.round(written / elapsed),
        lost_events: lostKernel + lostQueues,
        rss_mb: Math.round(rssAtEnd * 10) / 10,
        peak_rss_mb: Math.round((memKb(pid, 'VmHWM') / 1024) * 10) / 10,
        seconds: Math.round(producedMs / 100) / 10,
        produced_opens: produced,
        stored_events: written,
        file_open_events: fileOpens,
        lost: { ...st.trace.lost, queues: lostQueues },
        agent_cpu_s: Math.round(cpuS * 10) / 10,
        agent_cpu_us_per_event: Math.round((cpuS * 1e6 * 100) / Math.max(written, 1)) / 100,
        store_bytes: st.storage.bytes,
        store_segments_dropped: st.storage.droppedSegments,
        backpressure_pauses: st.trace.ring.paused,
        producers,
      };
    } finally {
      await agent.stop();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
