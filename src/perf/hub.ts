// What the threads that serve API requests are doing, sampled from /proc a
// few times a second: the state the scheduler has for the thread and the
// system call it is in (/proc/PID/task/TID/syscall, what `cat` shows
// there; root only). An eventlet service runs every request of a worker on
// one OS thread whose only wait is its hub's (epoll_wait): a sample that finds
// that thread asleep in any other system call, again and again, is the hub
// blocked — every request of the worker waits with it. The engine decides
// which services are greenthreaded (PerfEngine.greenthreaded) and what a run of
// samples means (PerfEngine.hubRun); this file only reads.
import { readFileSync, readlinkSync } from 'node:fs';

export interface ThreadSample {
  pid: number;
  tid: number;
  ts: number;
  /** the scheduler's state letter (R running or runnable, S sleeping, D uninterruptible…) */
  state: string;
  /** the system call number, -1 when in none (running user code) */
  nr: number;
  /** its name where known (else `syscall N`) */
  syscall: string;
  /** one of the waits an event loop makes (epoll_wait, poll, select…) */
  loopWait: boolean;
  /** the file descriptor the call works on, for calls that take one first */
  fd?: number;
  /** what that descriptor is (a path, pipe:[…], socket:[…]) */
  target?: string;
}

// x86_64 and arm64 numbers (asm/unistd_64.h, asm-generic/unistd.h)
const X64: Record<number, string> = {
  0: 'read',
  1: 'write',
  2: 'open',
  7: 'poll',
  17: 'pread64',
  18: 'pwrite64',
  19: 'readv',
  20: 'writev',
  23: 'select',
  35: 'nanosleep',
  42: 'connect',
  43: 'accept',
  44: 'sendto',
  45: 'recvfrom',
  46: 'sendmsg',
  47: 'recvmsg',
  61: 'wait4',
  72: 'fcntl',
  73: 'flock',
  74: 'fsync',
  75: 'fdatasync',
  202: 'futex',
  230: 'clock_nanosleep',
  232: 'epoll_wait',
  257: 'openat',
  270: 'pselect6',
  271: 'ppoll',
  281: 'epoll_pwait',
  288: 'accept4',
  441: 'epoll_pwait2',
};
const ARM64: Record<number, string> = {
  22: 'epoll_pwait',
  25: 'fcntl',
  32: 'flock',
  56: 'openat',
  63: 'read',
  64: 'write',
  65: 'readv',
  66: 'writev',
  67: 'pread64',
  68: 'pwrite64',
  72: 'pselect6',
  73: 'ppoll',
  82: 'fsync',
  83: 'fdatasync',
  98: 'futex',
  101: 'nanosleep',
  115: 'clock_nanosleep',
  202: 'accept',
  203: 'connect',
  206: 'sendto',
  207: 'recvfrom',
  211: 'sendmsg',
  212: 'recvmsg',
  242: 'accept4',
  260: 'wait4',
  441: 'epoll_pwait2',
};
const NAMES = process.arch === 'arm64' ? ARM64 : X64;
const LOOP_WAITS = new Set(['epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'poll', 'ppoll', 'select', 'pselect6']);
/** calls whose first argument is a file descriptor worth naming */
const FD_FIRST = new Set([
  'read',
  'write',
  'readv',
  'writev',
  'pread64',
  'pwrite64',
  'recvfrom',
  'sendto',
  'recvmsg',
  'sendmsg',
  'fsync',
  'fdatasync',
  'flock',
  'fcntl',
  'connect',
  'accept',
  'accept4',
]);

/** Parse /proc/PID/task/TID/stat and …/syscall as read at `ts` (pure; tested on captured text). */
export function parseThreadSample(pid: number, tid: number, ts: number, stat: string, syscall: string): ThreadSample | undefined {
  // the state follows the comm, which may hold spaces and parentheses: after the last ')'
  const close = stat.lastIndexOf(')');
  const state = close < 0 ? '' : (stat.slice(close + 2, close + 3) ?? '');
  if (!state) return undefined;
  const f = syscall.trim().split(/\s+/);
  if (f[0] === 'running' || f[0] === undefined || f[0] === '') return { pid, tid, ts, state, nr: -1, syscall: 'running', loopWait: false };
  const nr = Number(f[0]);
  if (!Number.isInteger(nr)) return undefined;
  if (nr < 0) return { pid, tid, ts, state, nr: -1, syscall: 'none', loopWait: false };
  const name = NAMES[nr] ?? `syscall ${nr}`;
  const out: ThreadSample = { pid, tid, ts, state, nr, syscall: name, loopWait: LOOP_WAITS.has(name) };
  if (FD_FIRST.has(name) && f[1]) {
    const fd = Number.parseInt(f[1], 16);
    if (Number.isInteger(fd) && fd >= 0 && fd < 1 << 20) out.fd = fd;
  }
  return out;
}

/** Reads one sample of each thread asked for; a thread that is gone gives none. */
export class ThreadSampler {
  errors = 0;
  sample(threads: { pid: number; tid: number }[], now = Date.now()): ThreadSample[] {
    const out: ThreadSample[] = [];
    for (const t of threads) {
      const dir = `/proc/${t.pid}/task/${t.tid}`;
      let stat: string;
      let sc: string;
      try {
        stat = readFileSync(`${dir}/stat`, 'latin1');
        sc = readFileSync(`${dir}/syscall`, 'latin1');
      } catch {
        this.errors++;
        continue;
      }
      const s = parseThreadSample(t.pid, t.tid, now, stat, sc);
      if (!s) continue;
      if (s.fd !== undefined && (s.state === 'S' || s.state === 'D') && !s.loopWait) {
        try {
          s.target = readlinkSync(`/proc/${t.pid}/fd/${s.fd}`);
        } catch {
          // closed meanwhile
        }
      }
      out.push(s);
    }
    return out;
  }
}
