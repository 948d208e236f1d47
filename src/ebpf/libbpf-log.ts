// Captures libbpf's own diagnostics (its print callback) so that errors can
// carry what libbpf said. Kept bounded: only the most recent lines survive.
import { c, libbpf, PrintFn, register } from './native.js';

export type LibbpfLevel = 'warn' | 'info' | 'debug';
const LEVELS: LibbpfLevel[] = ['warn', 'info', 'debug'];
const MAX_LINES = 200;

const recent: string[] = [];
let total = 0; // lines ever recorded, so marks survive the buffer wrapping
let sink: ((level: LibbpfLevel, line: string) => void) | undefined;
let installed = false;
const scratch = Buffer.alloc(4096);

function onPrint(level: number, fmt: unknown, args: unknown): number {
  const n = c.vsnprintf(scratch, scratch.length, fmt, args) as number;
  const text = scratch.toString('utf8', 0, Math.max(0, Math.min(n, scratch.length - 1))).replace(/\n+$/, '');
  const name = LEVELS[level] ?? 'debug';
  if (name !== 'debug') {
    for (const line of text.split('\n')) {
      recent.push(line);
      total++;
      if (recent.length > MAX_LINES) recent.shift();
    }
  }
  sink?.(name, text);
  return 0;
}

/** Install the callback (idempotent). libbpf calls it from whatever thread runs a call. */
export function captureLibbpfLog(): void {
  if (installed) return;
  libbpf.libbpf_set_print(register(onPrint, PrintFn));
  installed = true;
}

/** Route libbpf's messages (all levels) to a logger, e.g. for `--debug`. */
export function setLibbpfSink(fn: ((level: LibbpfLevel, line: string) => void) | undefined): void {
  captureLibbpfLog();
  sink = fn;
}

/** A mark to collect what libbpf says from now on. */
export function logMark(): number {
  captureLibbpfLog();
  return total;
}

/** Warn/info lines libbpf printed since `mark` (at most the last MAX_LINES). */
export function logSince(mark: number): string[] {
  const n = Math.min(total - mark, recent.length);
  return n > 0 ? recent.slice(-n) : [];
}
