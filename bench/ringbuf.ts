// Ring buffer throughput of the pure-JS reader, decode included.
//  drain:  the ring is pre-filled by the kernel (BPF_PROG_TEST_RUN of a program
//          that emits one record per run), then drained and decoded; median of rounds.
//  stream: a producer at full speed for N seconds while the reader consumes on
//          the event loop (adaptive wake-ups); lost events come from the
//          kernel-side counter. Two producers:
//          - kernel: BPF_PROG_TEST_RUN loops the producer program on a worker
//            thread (the other core): the fastest the kernel can emit;
//          - syscalls: `dd bs=1` makes one write(2) per byte and a tracepoint on
//            sys_enter_write emits one record per call: a real traced process.
//  cpu_ns_per_event is the reader's (main thread's) CPU time per event.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { BpfObject, ensureMounted, type Link, RingBuffer, u32 } from '../src/ebpf/index.js';
import { objectPath } from '../src/paths.js';
import { SeqEvent } from '../test/fixtures/selftest-abi.js';

const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
/** CPU time of this process's main thread (the reader), ns: the producer may run on a worker thread. */
function mainThreadCpuNs(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function drainBench(rounds: number, events: number): Promise<{ eps: number; rounds: number[] }> {
  const obj = BpfObject.open(objectPath('test/ringbuf'));
  obj.setMaxEntries('events', 1 << 26);
  obj.setAutoload('tp_write_stream', false);
  await obj.load();
  let sum = 0;
  const ring = new RingBuffer(obj.map('events'), (buf, off) => {
    sum += SeqEvent.decode(buf, off).seq;
  });
  const results: number[] = [];
  try {
    const prog = obj.program('xdp_burst');
    for (let r = 0; r < rounds; r++) {
      prog.testRun({ data: Buffer.alloc(64), repeat: events });
      const t0 = performance.now();
      let n = 0;
      while (n < events) n += ring.drain(events - n);
      const dt = (performance.now() - t0) / 1000;
      results.push(events / dt);
      log(`drain round ${r + 1}/${rounds}: ${events} events in ${(dt * 1000).toFixed(1)} ms = ${(events / dt / 1e6).toFixed(2)} M events/s`);
    }
  } finally {
    ring.close();
    obj.close();
  }
  if (sum < 0) throw new Error('unreachable');
  return { eps: median(results), rounds: results };
}

type Producer = 'syscalls' | 'kernel';

async function streamBench(seconds: number, ringBytes: number, producer: Producer) {
  ensureMounted('tracefs');
  const obj = BpfObject.open(objectPath('test/ringbuf'));
  obj.setMaxEntries('events', ringBytes);
  await obj.load();
  let received = 0;
  let lastSeq = -1;
  let outOfOrder = 0;
  const ring = new RingBuffer(
    obj.map('events'),
    (buf, off) => {
      const ev = SeqEvent.decode(buf, off);
      if (ev.seq < lastSeq) outOfOrder++;
      lastSeq = ev.seq;
      received++;
    },
    { lostCounter: obj.map('events_lost') },
  );
  let stopProducer: () => Promise<void>;
  let startProducer: () => void;
  let link: Link | undefined;
  if (producer === 'syscalls') {
    link = obj.program('tp_write_stream').attachTracepoint('syscalls', 'sys_enter_write');
    // `exec` keeps the pid, so the filter is set before dd writes anything
    const dd = spawn('/bin/sh', ['-c', 'read go; exec dd if=/dev/zero of=/dev/null bs=1 count=2000000000'], { stdio: ['pipe', 'ignore', 'ignore'] });
    obj
      .map('stream_target')
      .typed(u32, u32)
      .update(0, dd.pid as number);
    startProducer = () => dd.stdin.write('go\n');
    stopProducer = async () => {
      if (dd.exitCode === null && dd.signalCode === null) {
        dd.kill('SIGKILL');
        await new Promise((r) => dd.once('exit', r));
      }
    };
  } else {
    // the kernel itself at full speed: BPF_PROG_TEST_RUN loops on a worker thread
    let running = true;
    let loop: Promise<void> = Promise.resolve();
    const prog = obj.program('xdp_burst');
    startProducer = () => {
      loop = (async () => {
        while (running) await prog.testRunAsync({ data: Buffer.alloc(64), repeat: 100_000 });
      })();
    };
    stopProducer = async () => {
      running = false;
      await loop;
    };
  }
  try {
    ring.start();
    const cpu0 = mainThreadCpuNs();
    const t0 = performance.now();
    startProducer();
    let lastReport = t0;
    let lastReceived = 0;
    while (performance.now() - t0 < seconds * 1000) {
      await new Promise((r) => setTimeout(r, 250));
      const now = performance.now();
      if (now - lastReport >= 2000) {
        log(
          `stream (${producer}): ${((((received - lastReceived) / (now - lastReport)) * 1000) / 1e6).toFixed(2)} M events/s, lost so far ${ring.stats().lost}`,
        );
        lastReport = now;
        lastReceived = received;
      }
    }
    await stopProducer();
    const tEnd = performance.now();
    while (ring.pendingBytes() > 0) await new Promise((r) => setImmediate(r));
    const cpuNs = mainThreadCpuNs() - cpu0;
    const elapsed = (tEnd - t0) / 1000;
    const produced = Number(obj.readGlobal('next_seq').readBigUInt64LE(0));
    const stats = ring.stats();
    return {
      seconds: elapsed,
      produced,
      received,
      lost: Number(stats.lost ?? 0n),
      producerEps: produced / elapsed,
      eps: received / elapsed,
      cpuNsPerEvent: cpuNs / Math.max(1, received),
      outOfOrder,
      ticks: stats.ticks,
    };
  } finally {
    await stopProducer();
    link?.detach();
    ring.close();
    obj.close();
  }
}

export const bench = {
  summary: 'ring buffer reader: drain rate (pre-filled), streaming rate and losses against a full-speed producer',
  async run(args: string[]) {
    const { values } = parseArgs({
      args,
      options: {
        seconds: { type: 'string', default: '10' },
        rounds: { type: 'string', default: '5' },
        events: { type: 'string', default: '1500000' },
        'ring-mb': { type: 'string', default: '16' },
      },
    });
    const seconds = Number(values.seconds);
    if (!(seconds > 0)) throw new Error('--seconds must be a positive number');
    const drain = await drainBench(Number(values.rounds), Number(values.events));
    const ringBytes = Number(values['ring-mb']) << 20;
    log(`stream: ${seconds} s against the kernel looping the producer program (BPF_PROG_TEST_RUN on a worker thread), ring ${values['ring-mb']} MiB`);
    const kern = await streamBench(seconds, ringBytes, 'kernel');
    log(`stream: ${seconds} s against dd bs=1 (one write(2) = one tracepoint event), ring ${values['ring-mb']} MiB`);
    const sys = await streamBench(seconds, ringBytes, 'syscalls');
    return {
      drain_events_per_s: Math.round(drain.eps),
      drain_rounds: drain.rounds.map(Math.round),
      stream_events_per_s: Math.round(kern.eps),
      stream_producer_events_per_s: Math.round(kern.producerEps),
      stream_seconds: Number(kern.seconds.toFixed(2)),
      produced_events: kern.produced,
      received_events: kern.received,
      lost_events: kern.lost,
      out_of_order: kern.outOfOrder,
      cpu_ns_per_event: Number(kern.cpuNsPerEvent.toFixed(1)),
      syscall_stream_events_per_s: Math.round(sys.eps),
      syscall_stream_seconds: Number(sys.seconds.toFixed(2)),
      syscall_produced_events: sys.produced,
      syscall_lost_events: sys.lost,
      syscall_cpu_ns_per_event: Number(sys.cpuNsPerEvent.toFixed(1)),
      ring_bytes: ringBytes,
      record_bytes: SeqEvent.size,
    };
  },
};
