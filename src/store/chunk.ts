// Event chunks: up to CHUNK_EVENTS events stored as one row.
//
// One SQLite row per event cost more agent CPU than everything else in the
// pipeline together (≈ 2 µs per event: a JSON document per row, ten bound
// parameters, every byte written twice through the WAL). A chunk keeps the
// fixed fields in columns of typed arrays and everything that repeats —
// types, services, command names, parent context, event data — once, in a
// dictionary at its end. Data objects are shared by identity: the tracer
// hands the same frozen object for identical records (a process opening the
// same file again and again), so a repeat costs a 2-byte index, not a JSON
// document. Nothing is aggregated away: every event keeps its own time,
// thread and data.
//
// Layout (little-endian), version 1:
//   u8 version, u8 0, u16 0, u32 n
//   f64 ts[n]                                  ms since the epoch
//   i32 pid[n], tid[n], ppid[n], uid[n]
//   u16 type[n], service[n], comm[n], ctx[n], data[n]   dictionary indexes (ctx 0xffff: none)
//   u32 length, then that many bytes of JSON: the dictionary array
import type { TraceEvent } from '../trace/event.js';

export const CHUNK_EVENTS = 512;
const VERSION = 1;
const NONE = 0xffff;

export class ChunkError extends Error {
  override name = 'ChunkError';
}

export interface EncodedChunk {
  body: Buffer;
  /** earliest and latest event time in the chunk */
  firstTs: number;
  lastTs: number;
  n: number;
  /** ' type1 type2 ': for instr() filtering in SQL */
  types: string;
  services: string;
}

type Ctx = { parent?: TraceEvent['parent']; instance?: string };

const ts = new Float64Array(CHUNK_EVENTS);
const ints = new Int32Array(CHUNK_EVENTS * 4);
const idx = new Uint16Array(CHUNK_EVENTS * 5);

// one context object per (parent, instance): the dictionary dedupes by identity
const ctxOfParent = new WeakMap<object, Ctx>();
const ctxOfInstance = new WeakMap<object, Map<string, Ctx>>();
const ctxOfLoneInstance = new Map<string, Ctx>();

function ctxOf(ev: TraceEvent): Ctx | undefined {
  const parent = ev.parent;
  if (ev.instance === undefined) {
    if (!parent) return undefined;
    let c = ctxOfParent.get(parent);
    if (!c) ctxOfParent.set(parent, (c = { parent }));
    return c;
  }
  let m: Map<string, Ctx> | undefined;
  if (parent) {
    m = ctxOfInstance.get(parent);
    if (!m) ctxOfInstance.set(parent, (m = new Map()));
  } else {
    m = ctxOfLoneInstance;
    if (m.size > 65536) m.clear();
  }
  let c = m.get(ev.instance);
  if (!c) m.set(ev.instance, (c = parent ? { parent, instance: ev.instance } : { instance: ev.instance }));
  return c;
}

/** Encode events[start, end) (at most CHUNK_EVENTS) as one chunk. */
export function encodeChunk(events: readonly TraceEvent[], start: number, end: number): EncodedChunk {
  const n = end - start;
  if (n < 1 || n > CHUNK_EVENTS) throw new RangeError(`a chunk holds 1 to ${CHUNK_EVENTS} events, not ${n}`);
  const dict: unknown[] = [];
  const ids = new Map<unknown, number>();
  const id = (v: unknown): number => {
    let i = ids.get(v);
    if (i === undefined) {
      i = dict.length;
      dict.push(v);
      ids.set(v, i);
    }
    return i;
  };
  const types = new Set<string>();
  const services = new Set<string>();
  // events from different CPUs can be a little out of order: the range is min..max
  let firstTs = Infinity;
  let lastTs = -Infinity;
  for (let j = 0; j < n; j++) {
    const ev = events[start + j] as TraceEvent;
    ts[j] = ev.ts;
    if (ev.ts > lastTs) lastTs = ev.ts;
    if (ev.ts < firstTs) firstTs = ev.ts;
    ints[j] = ev.pid;
    ints[n + j] = ev.tid;
    ints[2 * n + j] = ev.ppid;
    ints[3 * n + j] = ev.uid;
    idx[j] = id(ev.type);
    idx[n + j] = id(ev.service);
    idx[2 * n + j] = id(ev.comm);
    const ctx = ctxOf(ev);
    idx[3 * n + j] = ctx ? id(ctx) : NONE;
    idx[4 * n + j] = id(ev.data);
    types.add(ev.type);
    services.add(ev.service);
  }
  const json = Buffer.from(JSON.stringify(dict));
  const fixed = 8 + n * 8 + n * 16 + n * 10;
  const body = Buffer.allocUnsafe(fixed + 4 + json.length);
  body.writeUInt32LE(VERSION, 0);
  body.writeUInt32LE(n, 4);
  let p = 8;
  p += Buffer.from(ts.buffer, 0, n * 8).copy(body, p);
  p += Buffer.from(ints.buffer, 0, n * 16).copy(body, p);
  p += Buffer.from(idx.buffer, 0, n * 10).copy(body, p);
  body.writeUInt32LE(json.length, p);
  json.copy(body, p + 4);
  return {
    body,
    firstTs,
    lastTs,
    n,
    types: ` ${[...types].join(' ')} `,
    services: ` ${[...services].join(' ')} `,
  };
}

/** The events of a chunk, oldest first. Throws ChunkError saying what is wrong with a damaged chunk. */
export function decodeChunk(body: Buffer): TraceEvent[] {
  if (body.length < 8) throw new ChunkError(`chunk of ${body.length} bytes is shorter than its header`);
  const version = body.readUInt32LE(0);
  if (version !== VERSION) throw new ChunkError(`chunk version ${version} is not one this stackbpf reads (${VERSION})`);
  const n = body.readUInt32LE(4);
  const fixed = 8 + n * 34;
  if (n < 1 || n > CHUNK_EVENTS || body.length < fixed + 4) throw new ChunkError(`chunk header says ${n} events, which its ${body.length} bytes do not hold`);
  const jsonLen = body.readUInt32LE(fixed);
  if (fixed + 4 + jsonLen !== body.length) throw new ChunkError(`chunk dictionary of ${jsonLen} bytes does not end where the chunk does`);
  let dict: unknown[];
  try {
    dict = JSON.parse(body.toString('utf8', fixed + 4)) as unknown[];
  } catch (err) {
    throw new ChunkError(`chunk dictionary is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(dict)) throw new ChunkError('chunk dictionary is not an array');
  const at = (i: number, what: string): unknown => {
    if (i >= dict.length) throw new ChunkError(`chunk ${what} index ${i} is past its dictionary of ${dict.length}`);
    return dict[i];
  };
  const iOff = 8 + n * 8;
  const uOff = iOff + n * 16;
  const out = new Array<TraceEvent>(n);
  for (let j = 0; j < n; j++) {
    const ev = {
      ts: body.readDoubleLE(8 + j * 8),
      type: at(body.readUInt16LE(uOff + j * 2), 'type'),
      service: at(body.readUInt16LE(uOff + (n + j) * 2), 'service'),
      pid: body.readInt32LE(iOff + j * 4),
      tid: body.readInt32LE(iOff + (n + j) * 4),
      ppid: body.readInt32LE(iOff + (2 * n + j) * 4),
      uid: body.readInt32LE(iOff + (3 * n + j) * 4),
      comm: at(body.readUInt16LE(uOff + (2 * n + j) * 2), 'comm'),
      data: at(body.readUInt16LE(uOff + (4 * n + j) * 2), 'data'),
    } as TraceEvent;
    const c = body.readUInt16LE(uOff + (3 * n + j) * 2);
    if (c !== NONE) {
      const ctx = at(c, 'context') as Ctx;
      if (ctx.parent) ev.parent = ctx.parent;
      if (ctx.instance !== undefined) ev.instance = ctx.instance;
    }
    out[j] = ev;
  }
  return out;
}
