// npm run bench -- amqp-scan [--rounds N] [--messages N] [--size BYTES]
//
// What decoding oslo.messaging over RabbitMQ costs the service that sends
// it: a Python process the agent captures (a file named nova-conductor)
// writes --messages messages of --size bytes (default 14,000: nova-api's
// server-create cast) to a TCP sink, one send each, in three modes, rotated
// in each round: `framed` (the connection opens with AMQP's protocol header:
// every send is its own message, captured, and scanned in the kernel past
// its capture for "_msg_id"/"_unique_id", found in its last 100 bytes),
// `framed_nokey` (no key: the scan reads the whole message and finds
// nothing), `plain` (the same bytes after a non-AMQP greeting: one run in one
// direction, captured once, nothing scanned), and `untraced` (the agent
// stopped). Per mode: the median over rounds of the mean ns per send, with
// the range; the differences to `plain` are the per-message cost of framing
// and of the scan. Also the kernel's scan counters.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { packageRoot } from '../src/paths.js';
import { agentApi, startAgent } from './trace-overhead.js';

const run = promisify(execFile);
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;

export const bench = {
  summary: 'the cost per message of decoding oslo.messaging over AMQP (framing, the kernel key scan) for the sending service',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: { rounds: { type: 'string', default: '7' }, messages: { type: 'string', default: '5000' }, size: { type: 'string', default: '14000' } },
    });
    const rounds = Number(values.rounds);
    const messages = Number(values.messages);
    const size = Number(values.size);
    const work = mkdtempSync(join(tmpdir(), 'stackbpf-amqp-scan-'));
    // a file named after a service the agent captures by default
    const sender = join(work, 'nova-conductor');
    copyFileSync(join(packageRoot, 'bench', 'py', 'amqp_sender.py'), sender);
    const sink = createServer((c) => c.resume());
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    const port = (sink.address() as { port: number }).port;
    const send = async (mode: string): Promise<number> =>
      Number((await run('/usr/bin/python3', [sender, mode, String(messages), String(size), String(port)])).stdout.trim());
    const modes = ['framed', 'framed-nokey', 'plain'] as const;
    const ns: Record<string, number[]> = { framed: [], 'framed-nokey': [], plain: [], untraced: [] };
    let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
    let counters: unknown;
    try {
      for (let r = 0; r < rounds; r++) {
        ns.untraced?.push(await send('plain'));
        agent = await startAgent(work, { trace: { enabled: true }, performance: { enabled: false } });
        // the agent finds running processes when it starts: each sender starts after it
        for (let i = 0; i < modes.length; i++) {
          const m = modes[(i + r) % modes.length] as string;
          ns[m]?.push(await send(m));
        }
        const st = await agentApi(agent.socket, 'GET', '/v1/status');
        counters = { keyScan: st.trace?.keyScan, amqp: st.trace?.sessions?.amqp };
        // each framed mode's every message scanned, the key found in the framed one only
        if (st.trace?.keyScan?.scans !== 2 * messages || st.trace?.keyScan?.misses !== messages)
          throw new Error(`round ${r + 1}: the kernel scanned ${JSON.stringify(st.trace?.keyScan)}, expected ${2 * messages} scans and ${messages} misses`);
        await agent.stop();
        agent = undefined;
        log(
          `round ${r + 1}: ${Object.entries(ns)
            .map(([k, v]) => `${k} ${r1(v.at(-1) as number)} ns`)
            .join(', ')}`,
        );
      }
    } finally {
      await agent?.stop();
      sink.close();
      rmSync(work, { recursive: true, force: true });
    }
    const out: Record<string, unknown> = { rounds, messages, size };
    for (const [k, v] of Object.entries(ns))
      out[`${k.replace('-', '_')}_ns_per_send`] = { median: r1(median(v)), min: r1(Math.min(...v)), max: r1(Math.max(...v)) };
    const diff = (a: string, b: string) => r1(median((ns[a] as number[]).map((x, i) => x - (ns[b] as number[])[i]!)));
    out.framing_and_scan_ns = diff('framed', 'plain');
    out.full_scan_miss_ns = diff('framed-nokey', 'plain');
    out.plain_vs_untraced_ns = diff('plain', 'untraced');
    out.last_round_counters = counters;
    return out;
  },
};
