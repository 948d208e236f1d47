// The convergence benchmark's observer: a worker thread with its own event
// loop and its own fd on the pinned map, so "the entry is in the map" is
// seen when the kernel has it, not when the agent's thread is next idle.
// Asked {addr, present}, it polls every ~50 µs and answers with the wall
// time (timeOrigin + now, comparable across threads) it saw the change.
import { parentPort, workerData } from 'node:worker_threads';
import { BpfMap, parseIPv6 } from '../src/ebpf/index.js';

const map = BpfMap.fromPin((workerData as { path: string }).path);
const nap = new Int32Array(new SharedArrayBuffer(4));
parentPort?.on('message', (m: { addr: string; present: boolean; timeoutMs: number }) => {
  const key = parseIPv6(m.addr);
  const end = performance.now() + m.timeoutMs;
  for (;;) {
    const has = map.lookup(key) !== undefined;
    if (has === m.present) {
      parentPort?.postMessage({ at: performance.timeOrigin + performance.now() });
      return;
    }
    if (performance.now() > end) {
      parentPort?.postMessage({ error: `${m.addr} still ${m.present ? 'absent' : 'present'} after ${m.timeoutMs} ms` });
      return;
    }
    Atomics.wait(nap, 0, 0, 0.05);
  }
});
parentPort?.postMessage({ ready: true });
