// Kernel records of the tracer (bpf/include/trace.h) and their decoding.
// Decoding reads fixed offsets with a DataView-free hand-written reader: it
// runs once per record on the agent's hot path. `checkLayouts` compares the
// offsets below with the object's BTF when the tracer loads, so a changed
// header fails at start with the field named, never as garbage events.
import { type Btf, formatIPv6 } from '../ebpf/index.js';
import {
  STRUCTS,
  TRACE_CLOSE,
  TRACE_CONN,
  TRACE_COUNTER,
  TRACE_DATA,
  TRACE_EXEC,
  TRACE_EXIT,
  TRACE_FILE,
  TRACE_FILE_OP,
  TRACE_FORK,
  TRACE_HDR,
  TRACE_HDR_FLAG,
  TRACE_KIND,
  TRACE_OPEN,
} from './abi.generated.js';

/** record kinds (enum trace_kind), by name */
export const TK = {
  exec: TRACE_KIND.TK_EXEC,
  fork: TRACE_KIND.TK_FORK,
  exit: TRACE_KIND.TK_EXIT,
  open: TRACE_KIND.TK_OPEN,
  file: TRACE_KIND.TK_FILE,
  connect: TRACE_KIND.TK_CONNECT,
  accept: TRACE_KIND.TK_ACCEPT,
  close: TRACE_KIND.TK_CLOSE,
  data: TRACE_KIND.TK_DATA,
} as const;
export const { TH_MONITORED, TH_SENSITIVE, TH_KILLED } = TRACE_HDR_FLAG;
export const FILE_OPS = {
  [TRACE_FILE_OP.TF_OPEN_WRITE]: 'open_write',
  [TRACE_FILE_OP.TF_UNLINK]: 'unlink',
  [TRACE_FILE_OP.TF_RENAME]: 'rename',
} as const;
/** kernel loss counters (enum trace_counter), in index order */
export const COUNTERS = ['inflight_full', 'conns_full', 'monitored_full', 'read_fault'] as const;
const COUNTER_INDEX = [TRACE_COUNTER.TC_INFLIGHT_FULL, TRACE_COUNTER.TC_CONNS_FULL, TRACE_COUNTER.TC_MONITORED_FULL, TRACE_COUNTER.TC_READ_FAULT];
export function counterIndex(name: (typeof COUNTERS)[number]): number {
  return COUNTER_INDEX[COUNTERS.indexOf(name)] as number;
}

export class LayoutError extends Error {
  override name = 'LayoutError';
}

/**
 * Throws naming the first struct member whose offset or size differs from
 * src/trace/abi.generated.ts: an object built from other headers than the
 * decoder was generated from fails at load, never as garbage events.
 */
export function checkLayouts(btf: Btf): void {
  for (const [name, want] of Object.entries(STRUCTS)) {
    const s = btf.struct(name);
    if (!s) throw new LayoutError(`trace object: struct ${name} is missing from its BTF (rebuild bpf/build)`);
    if (s.size !== want.size) throw new LayoutError(`trace object: struct ${name} is ${s.size} bytes, the decoder expects ${want.size}`);
    for (const [field, off] of Object.entries(want.off)) {
      const m = s.members.find((x) => x.name === field);
      if (!m) throw new LayoutError(`trace object: ${name}.${field} is missing`);
      if (m.offset !== off) throw new LayoutError(`trace object: ${name}.${field} is at offset ${m.offset}, the decoder expects ${off}`);
      const size = (want.sizes as Record<string, number>)[field];
      if (m.size !== size) throw new LayoutError(`trace object: ${name}.${field} is ${m.size} bytes, the decoder expects ${size}`);
    }
  }
}

export interface RecordHeader {
  /** kernel monotonic ns (a double: exact for 104 days of uptime, then rounded below the µs) */
  ts: number;
  kind: number;
  flags: number;
  tgid: number;
  tid: number;
  ppid: number;
  uid: number;
  service: number;
  comm: string;
}

export type KernelRecord =
  | (RecordHeader & { kind: 1; cgroup: string; filename: string; argv: string[]; argsTruncated: boolean })
  | (RecordHeader & { kind: 2; child: number })
  | (RecordHeader & { kind: 3; code: number })
  | (RecordHeader & { kind: 4; ret: number; dfd: number; openFlags: number; mode: number; path: string })
  | (RecordHeader & { kind: 5; ret: number; op: number; opFlags: number; path: string; path2: string })
  | (RecordHeader & {
      kind: 6 | 7;
      connId: number;
      ret: number;
      fd: number;
      family: number;
      role: number;
      proto: number;
      lport: number;
      rport: number;
      laddr: string;
      raddr: string;
      unixPath: string;
    })
  | (RecordHeader & {
      kind: 8;
      connId: number;
      openedNs: number;
      bytesIn: number;
      bytesOut: number;
      lastMsgBytes: number;
      lastMsgStart: number;
      fd: number;
      role: number;
      lastDir: number;
      family: number;
    })
  | (RecordHeader & {
      kind: 9;
      connId: number;
      prevBytes: number;
      prevStart: number;
      /** the thread's scheduler sums when the record was made (ns): on a CPU, and runnable but waiting */
      cpuNs: number;
      runqNs: number;
      /** the greenlet the thread ran (an address; 0 if none was seen) */
      greenlet: number;
      fd: number;
      seq: number;
      offset: number;
      dir: number;
      role: number;
      data: Buffer;
    });

export class RecordError extends Error {
  override name = 'RecordError';
}

function cstr(buf: Buffer, off: number, max: number): string {
  const end = buf.indexOf(0, off);
  const stop = end < 0 || end > off + max ? off + max : end;
  return buf.toString('utf8', off, stop);
}

// Command names (16 bytes) repeat on nearly every record: a small cache keyed
// by the four words of the raw bytes answers without a native call; a hit is
// verified word by word, so a collision only costs a decode.
const COMM_SLOTS = 1024;
const commWords = new Uint32Array(COMM_SLOTS * 4);
const commStrings: (string | undefined)[] = new Array(COMM_SLOTS);
function commOf(buf: Buffer, off: number): string {
  const a = buf.readUInt32LE(off);
  const b = buf.readUInt32LE(off + 4);
  const c = buf.readUInt32LE(off + 8);
  const d = buf.readUInt32LE(off + 12);
  const slot = (Math.imul(a ^ Math.imul(b, 0x9e3779b1) ^ Math.imul(c, 0x85ebca6b) ^ Math.imul(d, 0xc2b2ae35), 0x27d4eb2f) >>> 22) & (COMM_SLOTS - 1);
  const w = slot * 4;
  const hit = commStrings[slot];
  if (hit !== undefined && commWords[w] === a && commWords[w + 1] === b && commWords[w + 2] === c && commWords[w + 3] === d) return hit;
  const s = cstr(buf, off, TRACE_HDR.sizes.comm);
  commWords[w] = a;
  commWords[w + 1] = b;
  commWords[w + 2] = c;
  commWords[w + 3] = d;
  commStrings[slot] = s;
  return s;
}

/** u64 / s64 as a double, without a BigInt */
function u64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off + 4) * 4294967296 + buf.readUInt32LE(off);
}
function s64(buf: Buffer, off: number): number {
  return buf.readInt32LE(off + 4) * 4294967296 + buf.readUInt32LE(off);
}

function ipString(buf: Buffer, off: number, family: number): string {
  if (family === 2) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  if (family === 10) {
    if (buf.readUInt32BE(off) === 0 && buf.readUInt32BE(off + 4) === 0 && buf.readUInt32BE(off + 8) === 0xffff) {
      return `::ffff:${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
    }
    return formatIPv6(buf, off);
  }
  return '';
}

const MIN_SIZE: Record<number, number> = {
  [TK.exec]: TRACE_EXEC.size,
  [TK.fork]: TRACE_FORK.size,
  [TK.exit]: TRACE_EXIT.size,
  [TK.open]: TRACE_OPEN.size,
  [TK.file]: TRACE_FILE.size,
  [TK.connect]: TRACE_CONN.size,
  [TK.accept]: TRACE_CONN.size,
  [TK.close]: TRACE_CLOSE.size,
  [TK.data]: TRACE_DATA.off.data,
};

/** Decode one ring record; throws RecordError naming what was wrong. */
export function decodeRecord(buf: Buffer, off: number, len: number): KernelRecord {
  if (len < TRACE_HDR.size) throw new RecordError(`record of ${len} bytes is shorter than the ${TRACE_HDR.size}-byte header`);
  const kind = buf.readUInt16LE(off + TRACE_HDR.off.kind);
  const min = MIN_SIZE[kind];
  if (min === undefined) throw new RecordError(`record kind ${kind} is unknown`);
  if (len < min) throw new RecordError(`record kind ${kind} has ${len} bytes, expected at least ${min}`);
  // one object literal per kind (one hidden class each): this runs once per event
  const ts = u64(buf, off + TRACE_HDR.off.ts);
  const flags = buf.readUInt16LE(off + TRACE_HDR.off.flags);
  const tgid = buf.readUInt32LE(off + TRACE_HDR.off.tgid);
  const tid = buf.readUInt32LE(off + TRACE_HDR.off.tid);
  const ppid = buf.readUInt32LE(off + TRACE_HDR.off.ppid);
  const uid = buf.readUInt32LE(off + TRACE_HDR.off.uid);
  const service = buf.readUInt32LE(off + TRACE_HDR.off.service);
  const comm = TRACE_HDR.sizes.comm === 16 ? commOf(buf, off + TRACE_HDR.off.comm) : cstr(buf, off + TRACE_HDR.off.comm, TRACE_HDR.sizes.comm);
  switch (kind) {
    case 1: {
      const argsLen = Math.min(buf.readUInt32LE(off + TRACE_EXEC.off.args_len), TRACE_EXEC.sizes.args);
      const raw = buf.toString('utf8', off + TRACE_EXEC.off.args, off + TRACE_EXEC.off.args + argsLen);
      const argv = raw.split('\0');
      if (argv.length > 1 && argv[argv.length - 1] === '') argv.pop();
      return {
        ts,
        kind: 1,
        flags,
        tgid,
        tid,
        ppid,
        uid,
        service,
        comm,
        cgroup: buf.readBigUInt64LE(off + TRACE_EXEC.off.cgroup).toString(),
        filename: cstr(buf, off + TRACE_EXEC.off.filename, TRACE_EXEC.sizes.filename),
        argv,
        argsTruncated: argsLen >= TRACE_EXEC.sizes.args,
      };
    }
    case 2:
      return { ts, kind: 2, flags, tgid, tid, ppid, uid, service, comm, child: buf.readUInt32LE(off + TRACE_FORK.off.child) };
    case 3:
      return { ts, kind: 3, flags, tgid, tid, ppid, uid, service, comm, code: buf.readInt32LE(off + TRACE_EXIT.off.code) };
    case 4:
      return {
        ts,
        kind: 4,
        flags,
        tgid,
        tid,
        ppid,
        uid,
        service,
        comm,
        ret: s64(buf, off + TRACE_OPEN.off.ret),
        dfd: buf.readInt32LE(off + TRACE_OPEN.off.dfd),
        openFlags: buf.readUInt32LE(off + TRACE_OPEN.off.flags),
        mode: buf.readUInt32LE(off + TRACE_OPEN.off.mode),
        path: cstr(buf, off + TRACE_OPEN.off.path, TRACE_OPEN.sizes.path),
      };
    case 5:
      return {
        ts,
        kind: 5,
        flags,
        tgid,
        tid,
        ppid,
        uid,
        service,
        comm,
        ret: s64(buf, off + TRACE_FILE.off.ret),
        op: buf.readUInt32LE(off + TRACE_FILE.off.op),
        opFlags: buf.readUInt32LE(off + TRACE_FILE.off.flags),
        path: cstr(buf, off + TRACE_FILE.off.path, TRACE_FILE.sizes.path),
        path2: cstr(buf, off + TRACE_FILE.off.path2, TRACE_FILE.sizes.path2),
      };
    case 6:
    case 7: {
      const family = buf.readUInt16LE(off + TRACE_CONN.off.family);
      return {
        ts,
        kind: kind as 6 | 7,
        flags,
        tgid,
        tid,
        ppid,
        uid,
        service,
        comm,
        connId: u64(buf, off + TRACE_CONN.off.conn_id),
        ret: s64(buf, off + TRACE_CONN.off.ret),
        fd: buf.readUInt32LE(off + TRACE_CONN.off.fd),
        family,
        role: buf[off + TRACE_CONN.off.role] as number,
        proto: buf[off + TRACE_CONN.off.proto] as number,
        lport: buf.readUInt16LE(off + TRACE_CONN.off.lport),
        rport: buf.readUInt16LE(off + TRACE_CONN.off.rport),
        laddr: ipString(buf, off + TRACE_CONN.off.laddr, family),
        raddr: ipString(buf, off + TRACE_CONN.off.raddr, family),
        unixPath: cstr(buf, off + TRACE_CONN.off.unix_path, TRACE_CONN.sizes.unix_path),
      };
    }
    case 8:
      return {
        ts,
        kind: 8,
        flags,
        tgid,
        tid,
        ppid,
        uid,
        service,
        comm,
        connId: u64(buf, off + TRACE_CLOSE.off.conn_id),
        openedNs: u64(buf, off + TRACE_CLOSE.off.opened_ns),
        bytesIn: u64(buf, off + TRACE_CLOSE.off.bytes_in),
        bytesOut: u64(buf, off + TRACE_CLOSE.off.bytes_out),
        lastMsgBytes: u64(buf, off + TRACE_CLOSE.off.last_msg_bytes),
        lastMsgStart: u64(buf, off + TRACE_CLOSE.off.last_msg_start),
        fd: buf.readUInt32LE(off + TRACE_CLOSE.off.fd),
        role: buf[off + TRACE_CLOSE.off.role] as number,
        lastDir: buf[off + TRACE_CLOSE.off.last_dir] as number,
        family: buf.readUInt16LE(off + TRACE_CLOSE.off.family),
      };
    default: {
      const n = buf.readUInt16LE(off + TRACE_DATA.off.len);
      if (TRACE_DATA.off.data + n > len) throw new RecordError(`data record says ${n} captured bytes but has room for ${len - TRACE_DATA.off.data}`);
      return {
        ts,
        kind: 9,
        flags,
        tgid,
        tid,
        ppid,
        uid,
        service,
        comm,
        connId: u64(buf, off + TRACE_DATA.off.conn_id),
        prevBytes: u64(buf, off + TRACE_DATA.off.prev_bytes),
        prevStart: u64(buf, off + TRACE_DATA.off.prev_start),
        cpuNs: u64(buf, off + TRACE_DATA.off.cpu_ns),
        runqNs: u64(buf, off + TRACE_DATA.off.runq_ns),
        greenlet: u64(buf, off + TRACE_DATA.off.greenlet),
        fd: buf.readUInt32LE(off + TRACE_DATA.off.fd),
        seq: buf.readUInt32LE(off + TRACE_DATA.off.seq),
        offset: buf.readUInt32LE(off + TRACE_DATA.off.offset),
        dir: buf[off + TRACE_DATA.off.dir] as number,
        role: buf[off + TRACE_DATA.off.role] as number,
        // a copy: the ring's memory is reused once the record is consumed
        data: Buffer.from(buf.subarray(off + TRACE_DATA.off.data, off + TRACE_DATA.off.data + n)),
      };
    }
  }
}
