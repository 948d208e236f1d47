// npm run bench -- trace-throughput [--seconds N] [--producers N] [--distinct]
//                  trace-throughput --saturate [--rates R1,R2,...] [--step-seconds N] [--distinct]
//
// Sustained events through the whole pipeline of the real agent process:
// kernel hooks → ring buffer → decode → enrich → bounded queue → batched
// SQLite writes (with retention dropping segments as the size budget
// fills). The producers are monitored processes (matched by an operator
// rule) opening and closing /dev/null as fast as they can: one file.open
// event per iteration, real records from the real hooks. With --distinct
// every open names another (missing) path, so no two events share data:
// the worst case for the store, which keeps repeated data once per chunk. Reports the rate
// the store absorbed, everything lost at any stage (kernel ring, kernel
// tables, decoder, queues), and the agent's RSS at the end (default 600 s).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { agentApi, buildSysloop, startAgent } from './trace-overhead.js';

const log = (s: string): void => void process.stderr.write(`${s}\n`);

const apiGet = (socket: string, path: string): Promise<any> => agentApi(socket, 'GET', path);

export const memKb = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const cpuTicks = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(f[11]) + Number(f[12]);
};

/** jiffies of all CPUs: busy and total (from the first line of /proc/stat) */
const machineTicks = (): { busy: number; total: number } => {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
};

const lostOf = (st: any): number =>
  Object.values(st.trace.lost as Record<string, number>).reduce((a, b) => a + b, 0) +
  (st.pipeline.consumers as { dropped: number }[]).reduce((a, c) => a + c.dropped, 0);

/**
 * Saturation: paced producers step the offered rate up; each step reports
 * what the agent stored, lost and spent per event, and the first rate at
 * which anything was lost. Below it: 0 lost; above it: every loss counted.
 */
async function saturate(
  socket: string,
  pid: number,
  sysloop: string,
  marker: string,
  rates: number[],
  stepSeconds: number,
  distinct: boolean,
): Promise<Record<string, unknown>> {
  const steps: Record<string, number>[] = [];
  let firstLoss: number | null = null;
  for (const rate of rates) {
    const producers = Math.max(1, Math.ceil(rate / 120_000)); // one process tops out near 200k opens/s here
    const st0 = await apiGet(socket, '/v1/status');
    const cpu0 = cpuTicks(pid);
    const m0 = machineTicks();
    const t0 = Date.now();
    const counts = await Promise.all(
      Array.from(
        { length: producers },
        () =>
          new Promise<number>((resolve) => {
            const p = spawn(sysloop, ['open-rate', String(rate / producers), String(stepSeconds), marker, ...(distinct ? ['distinct'] : [])], {
              stdio: ['ignore', 'pipe', 'ignore'],
            });
            let out = '';
            p.stdout?.on('data', (c) => (out += c));
            p.once('exit', () => resolve(Number(out.trim()) || 0));
          }),
      ),
    );
    const offered = counts.reduce((a, b) => a + b, 0);
    const m1 = machineTicks();
    let st = await apiGet(socket, '/v1/status');
    for (let i = 0; i < 300 && (st.trace.ring.pendingBytes > 0 || st.pipeline.consumers.some((c: { queued: number }) => c.queued > 0)); i++) {
      await new Promise((r) => setTimeout(r, 100));
      st = await apiGet(socket, '/v1/status');
    }
    const stored = (st.storage.written as number) - (st0.storage.written as number);
    const lost = lostOf(st) - lostOf(st0);
    const cpuS = (cpuTicks(pid) - cpu0) / 100;
    const step = {
      target_per_s: rate,
      offered_per_s: Math.round(offered / stepSeconds),
      stored_per_s: Math.round(stored / ((Date.now() - t0) / 1000)),
      lost,
      agent_cpu_us_per_event: Math.round((cpuS * 1e8) / Math.max(stored, 1)) / 100,
      producers,
      // share of all the machine's CPUs busy while the producers ran: at 1 the
      // machine, not the agent, is the limit
      machine_busy: Math.round(((m1.busy - m0.busy) / Math.max(m1.total - m0.total, 1)) * 100) / 100,
    };
    steps.push(step);
    log(
      `rate ${rate}/s: offered ${step.offered_per_s}/s, stored ${step.stored_per_s}/s, lost ${lost}, ${step.agent_cpu_us_per_event} µs/event, machine ${Math.round(step.machine_busy * 100)}% busy`,
    );
    if (lost > 0 && firstLoss === null) firstLoss = step.offered_per_s;
  }
  const busiest = steps.filter((s) => (s.lost ?? 0) === 0).at(-1);
  return {
    mode: 'saturate',
    first_loss_at_per_s: firstLoss,
    max_lossless_per_s: busiest?.offered_per_s ?? null,
    agent_cpu_us_per_event: busiest?.agent_cpu_us_per_event ?? null,
    events_per_s: Math.max(...steps.map((s) => s.stored_per_s ?? 0)),
    lost_events: steps.reduce((a, s) => a + (s.lost ?? 0), 0),
    steps,
    step_seconds: stepSeconds,
    cpus: availableParallelism(),
  };
}

export const bench = {
  summary: 'sustained events/s through decode, enrich and batched SQLite storage in the real agent, lost events, agent RSS after the run',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: {
        seconds: { type: 'string' },
        producers: { type: 'string' },
        saturate: { type: 'boolean' },
        rates: { type: 'string' },
        'step-seconds': { type: 'string' },
        distinct: { type: 'boolean' },
      },
      strict: true,
    });
    const seconds = Number(values.seconds ?? 600);
    const producers = Number(values.producers ?? 1);
    const work = mkdtempSync(join(tmpdir(), 'sbb-tput-'));
    const marker = 'sbb-throughput-producer';
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: bench-producer\n    cmdline: "${marker}"\n`);
    const sysloop = await buildSysloop(work);
    const agent = await startAgent(work, { trace: { rules_file: join(work, 'rules.yaml') }, storage: { max_size_mb: 1024 } });
    const pid = agent.child.pid as number;
    if (values.saturate) {
      try {
        const rates = (values.rates ?? '50000,100000,150000,200000,250000,300000').split(',').map(Number);
        return {
          ...(await saturate(agent.socket, pid, sysloop, marker, rates, Number(values['step-seconds'] ?? 15), values.distinct === true)),
          distinct: values.distinct === true,
        };
      } finally {
        await agent.stop();
        rmSync(work, { recursive: true, force: true });
      }
    }
    const hz = 100;
    try {
      await new Promise((r) => setTimeout(r, 2000));
      const st0 = await apiGet(agent.socket, '/v1/status');
      const written0 = st0.storage.written as number;
      const cpu0 = cpuTicks(pid);
      const t0 = Date.now();
      const procs = Array.from({ length: producers }, () =>
        spawn(sysloop, ['open-for', String(seconds), marker, ...(values.distinct ? ['distinct'] : [])], { stdio: ['ignore', 'pipe', 'ignore'] }),
      );
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
        distinct: values.distinct === true,
      };
    } finally {
      await agent.stop();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
