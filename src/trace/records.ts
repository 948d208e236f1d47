// Kernel records of the tracer (bpf/include/trace.h) and their decoding.
// Decoding reads fixed offsets with a DataView-free hand-written reader: it
// runs once per record on the agent's hot path. `checkLayouts` compares the
// offsets below with the object's BTF when the tracer loads, so a changed
// header fails at start with the field named, never as garbage events.
import { type Btf, formatIPv6 } from '../ebpf/index.js';

export const TK = { exec: 1, fork: 2, exit: 3, open: 4, file: 5, connect: 6, accept: 7, close: 8, data: 9 } as const;
export const TH_MONITORED = 1;
export const TH_SENSITIVE = 2;
export const TH_KILLED = 4;
export const FILE_OPS = { 1: 'open_write', 2: 'unlink', 3: 'rename' } as const;
export const COUNTERS = ['inflight_full', 'conns_full', 'monitored_full', 'read_fault'] as const;

/** offsets of struct members, checked against BTF */
export const LAYOUT: Record<string, { size?: number; fields: Record<string, number> }> = {
  trace_hdr: { size: 48, fields: { ts: 0, kind: 8, flags: 10, tgid: 12, tid: 16, ppid: 20, uid: 24, service: 28, comm: 32 } },
  trace_exec: { size: 1344, fields: { cgroup: 48, filename_len: 56, args_len: 60, filename: 64, args: 320 } },
  trace_fork: { size: 56, fields: { child: 48 } },
  trace_exit: { size: 56, fields: { code: 48 } },
  trace_open: { size: 328, fields: { ret: 48, dfd: 56, flags: 60, mode: 64, path_len: 68, path: 72 } },
  trace_file: { size: 576, fields: { ret: 48, op: 56, flags: 60, path: 64, path2: 320 } },
  trace_conn: {
    size: 224,
    fields: { conn_id: 48, ret: 56, fd: 64, family: 68, role: 70, proto: 71, lport: 72, rport: 74, laddr: 80, raddr: 96, unix_path: 112 },
  },
  trace_close: {
    size: 104,
    fields: { conn_id: 48, opened_ns: 56, bytes_in: 64, bytes_out: 72, last_msg_bytes: 80, last_msg_start: 88, fd: 96, role: 100, last_dir: 101, family: 102 },
  },
  trace_data: { fields: { conn_id: 48, prev_bytes: 56, prev_start: 64, fd: 72, seq: 76, offset: 80, len: 84, dir: 86, role: 87, data: 88 } },
};

export class LayoutError extends Error {
  override name = 'LayoutError';
}

/** Throws naming the first struct member whose offset or size differs. */
export function checkLayouts(btf: Btf): void {
  for (const [name, want] of Object.entries(LAYOUT)) {
    const s = btf.struct(name);
    if (!s) throw new LayoutError(`trace object: struct ${name} is missing from its BTF (rebuild bpf/build)`);
    if (want.size !== undefined && s.size !== want.size)
      throw new LayoutError(`trace object: struct ${name} is ${s.size} bytes, the decoder expects ${want.size}`);
    for (const [field, off] of Object.entries(want.fields)) {
      const m = s.members.find((x) => x.name === field);
      if (!m) throw new LayoutError(`trace object: ${name}.${field} is missing`);
      if (m.offset !== off) throw new LayoutError(`trace object: ${name}.${field} is at offset ${m.offset}, the decoder expects ${off}`);
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

const MIN_SIZE: Record<number, number> = { 1: 1344, 2: 56, 3: 56, 4: 328, 5: 576, 6: 224, 7: 224, 8: 104, 9: 88 };

/** Decode one ring record; throws RecordError naming what was wrong. */
export function decodeRecord(buf: Buffer, off: number, len: number): KernelRecord {
  if (len < 48) throw new RecordError(`record of ${len} bytes is shorter than the 48-byte header`);
  const kind = buf.readUInt16LE(off + 8);
  const min = MIN_SIZE[kind];
  if (min === undefined) throw new RecordError(`record kind ${kind} is unknown`);
  if (len < min) throw new RecordError(`record kind ${kind} has ${len} bytes, expected at least ${min}`);
  // one object literal per kind (one hidden class each): this runs once per event
  const ts = u64(buf, off);
  const flags = buf.readUInt16LE(off + 10);
  const tgid = buf.readUInt32LE(off + 12);
  const tid = buf.readUInt32LE(off + 16);
  const ppid = buf.readUInt32LE(off + 20);
  const uid = buf.readUInt32LE(off + 24);
  const service = buf.readUInt32LE(off + 28);
  const comm = cstr(buf, off + 32, 16);
  switch (kind) {
    case 1: {
      const argsLen = Math.min(buf.readUInt32LE(off + 60), 1024);
      const raw = buf.toString('utf8', off + 320, off + 320 + argsLen);
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
        cgroup: buf.readBigUInt64LE(off + 48).toString(),
        filename: cstr(buf, off + 64, 256),
        argv,
        argsTruncated: argsLen >= 1024,
      };
    }
    case 2:
      return { ts, kind: 2, flags, tgid, tid, ppid, uid, service, comm, child: buf.readUInt32LE(off + 48) };
    case 3:
      return { ts, kind: 3, flags, tgid, tid, ppid, uid, service, comm, code: buf.readInt32LE(off + 48) };
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
        ret: s64(buf, off + 48),
        dfd: buf.readInt32LE(off + 56),
        openFlags: buf.readUInt32LE(off + 60),
        mode: buf.readUInt32LE(off + 64),
        path: cstr(buf, off + 72, 256),
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
        ret: s64(buf, off + 48),
        op: buf.readUInt32LE(off + 56),
        opFlags: buf.readUInt32LE(off + 60),
        path: cstr(buf, off + 64, 256),
        path2: cstr(buf, off + 320, 256),
      };
    case 6:
    case 7: {
      const family = buf.readUInt16LE(off + 68);
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
        connId: u64(buf, off + 48),
        ret: s64(buf, off + 56),
        fd: buf.readUInt32LE(off + 64),
        family,
        role: buf[off + 70] as number,
        proto: buf[off + 71] as number,
        lport: buf.readUInt16LE(off + 72),
        rport: buf.readUInt16LE(off + 74),
        laddr: ipString(buf, off + 80, family),
        raddr: ipString(buf, off + 96, family),
        unixPath: cstr(buf, off + 112, 108),
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
        connId: u64(buf, off + 48),
        openedNs: u64(buf, off + 56),
        bytesIn: u64(buf, off + 64),
        bytesOut: u64(buf, off + 72),
        lastMsgBytes: u64(buf, off + 80),
        lastMsgStart: u64(buf, off + 88),
        fd: buf.readUInt32LE(off + 96),
        role: buf[off + 100] as number,
        lastDir: buf[off + 101] as number,
        family: buf.readUInt16LE(off + 102),
      };
    default: {
      const n = buf.readUInt16LE(off + 84);
      if (88 + n > len) throw new RecordError(`data record says ${n} captured bytes but has room for ${len - 88}`);
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
        connId: u64(buf, off + 48),
        prevBytes: u64(buf, off + 56),
        prevStart: u64(buf, off + 64),
        fd: buf.readUInt32LE(off + 72),
        seq: buf.readUInt32LE(off + 76),
        offset: buf.readUInt32LE(off + 80),
        dir: buf[off + 86] as number,
        role: buf[off + 87] as number,
        // a copy: the ring's memory is reused once the record is consumed
        data: Buffer.from(buf.subarray(off + 88, off + 88 + n)),
      };
    }
  }
}
