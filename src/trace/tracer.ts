// The tracer: loads bpf/trace.bpf.c, attaches its tracepoints, keeps the
// kernel's monitored set equal to the services' processes, and turns ring
// buffer records into events: decode → enrich (service, parent, wall clock)
// → sessions (HTTP / SQL) → redacted events on the bus. Every stage counts
// what it loses: the kernel (ring full, stash/connection tables full,
// unreadable user memory), the decoder (malformed records), the bus queues.
import { existsSync, readFileSync } from 'node:fs';
import { BpfObject, type Link, RingBuffer, raw, sumPerCpu, u32, u64 } from '../ebpf/index.js';
import type { Logger } from '../log.js';
import { objectPath } from '../paths.js';
import type { EventBus } from './bus.js';
import type { ConnectData, EventData, EventOf, EventType, FileChangeData, FileOpenData, TraceEvent } from './event.js';
import { ServiceIdentifier } from './identity.js';
import { type MonitorChange, ProcessTable } from './processes.js';
import { FifoMap } from '../util/fifo-map.js';
import { checkLayouts, COUNTERS, counterIndex, decodeRecord, FILE_OPS, type KernelRecord, TH_KILLED, TH_MONITORED, TH_SENSITIVE, TK } from './records.js';
import { CONN_KEY, LPM_PATH, MON, TRACE_COUNTER, TRACE_FILE_OP, TRACE_MON_FLAG, TRACE_ROLE } from './abi.generated.js';
import { execAllowKey, KernelEnforcement } from './enforcement.js';
import { adoptSockets } from './adopt.js';
import { redactArgv } from './redact.js';
import { SessionTracker } from './sessions.js';

export interface TracerOptions {
  /** bytes captured at the start of each HTTP/SQL message (64..2048) */
  captureBytes: number;
  /** ring buffer size in bytes (a power of two, ≥ 1 MiB) */
  ringBytes: number;
  /** path prefixes whose writes, renames and unlinks are reported for every process */
  sensitivePaths: string[];
  /** operator service rules (YAML), tried before the built-in ones */
  rulesFile?: string;
  /** services to trace (default: every recognised service except stackbpf) */
  services?: string[];
  /** services whose sockets are tracked for HTTP/SQL */
  captureServices: string[];
  /** looks at each request's target and body (redacted) before the body is dropped; findings go on the event as `sqli` */
  inspectRequest?: (target: string, body: string, contentType: string) => unknown[];
}

export { DEFAULT_SENSITIVE_PATHS } from './config.js';
const ERRNO: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  4: 'EINTR',
  9: 'EBADF',
  11: 'EAGAIN',
  13: 'EACCES',
  17: 'EEXIST',
  20: 'ENOTDIR',
  21: 'EISDIR',
  24: 'EMFILE',
  28: 'ENOSPC',
  30: 'EROFS',
  36: 'ENAMETOOLONG',
  40: 'ELOOP',
  110: 'ETIMEDOUT',
  111: 'ECONNREFUSED',
  113: 'EHOSTUNREACH',
  115: 'EINPROGRESS',
};
const O_FLAGS: [number, string][] = [
  [0o100, 'O_CREAT'],
  [0o200, 'O_EXCL'],
  [0o1000, 'O_TRUNC'],
  [0o2000, 'O_APPEND'],
  [0o4000, 'O_NONBLOCK'],
  [0o200000, 'O_DIRECTORY'],
  [0o2000000, 'O_CLOEXEC'],
  [0o20000000, 'O_TMPFILE'],
];

const flagNames = new Map<number, string>();

/** O_* names of open(2) flags (cached: a handful of combinations recur). */
export function openFlags(f: number): string {
  let s = flagNames.get(f);
  if (s === undefined) {
    s = openFlagsUncached(f);
    if (flagNames.size < 4096) flagNames.set(f, s);
  }
  return s;
}

function openFlagsUncached(f: number): string {
  const acc = ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE'][f & 3] as string;
  const parts = [acc];
  for (const [bit, name] of O_FLAGS) if ((f & bit) === bit && (name !== 'O_DIRECTORY' || (f & 0o20000000) !== 0o20000000)) parts.push(name);
  return parts.join('|');
}

const result = (ret: number): { result: number; error?: string } => (ret < 0 ? { result: ret, error: ERRNO[-ret] ?? `errno ${-ret}` } : { result: ret });

export interface TracerStatus {
  attached: string[];
  /** greenlet libraries the monitored processes map: each probed, or why not */
  greenlet: { path: string; error?: string }[];
  monitoredProcesses: number;
  services: Record<string, number>;
  records: number;
  events: Record<string, number>;
  eventsPerSecond: number;
  discoveryExecs: number;
  lost: { ring: number; decode: number } & Record<(typeof COUNTERS)[number], number>;
  ring: { size: number; pendingBytes: number; mode: string; paused: number };
  sessions: ReturnType<SessionTracker['status']>;
  /** framed (AMQP) messages the kernel scanned past their capture for oslo.messaging's ids, and those it found none in */
  keyScan: { scans: number; misses: number };
  tokensKnown: number;
}

/** greenlet's C extension (greenlet 2.x and 3.x), as a Python process maps it */
const GREENLET_LIB = /\/greenlet\/_greenlet[^/]*\.so$/;
/** greenlet::PythonState::operator>>(PyThreadState*): called in every greenlet switched in (see trace.bpf.c) */
const GREENLET_SWITCH_IN = '_ZN8greenlet11PythonStatersEP3_ts';

export class Tracer {
  private readonly links: Link[] = [];
  private ring: RingBuffer | undefined;
  readonly procs: ProcessTable;
  readonly sessions: SessionTracker;
  private readonly parentCache = new FifoMap<number, { pid: number; comm: string; service: string }>(4096);
  private clockOffsetMs = 0;
  private timers: NodeJS.Timeout[] = [];
  private counts = { records: 0, decodeErrors: 0, discoveryExecs: 0, paused: 0 };
  private readonly perType = new Map<string, number>();
  private rate = { at: Date.now(), published: 0, perSecond: 0 };
  private readonly monitoredMap;
  private lastDecodeError = '';
  /** the kill-on-violation maps (rules from the response module) */
  readonly enforcement: KernelEnforcement;

  private constructor(
    private readonly obj: BpfObject,
    private readonly bus: EventBus,
    private readonly log: Logger,
    readonly opts: TracerOptions,
  ) {
    const identifier = opts.rulesFile ? ServiceIdentifier.fromFile(opts.rulesFile) : new ServiceIdentifier();
    this.procs = new ProcessTable(identifier, { ...(opts.services ? { services: opts.services } : {}), captureServices: opts.captureServices });
    this.sessions = new SessionTracker(
      (o) => {
        const p = this.procs.get(o.tgid);
        this.publish({ ts: o.ts, tgid: o.tgid, tid: o.tid, ppid: p?.ppid ?? 0, uid: p?.uid ?? 0, service: 0, comm: p?.comm ?? '' }, o.type, o.data);
      },
      { captureBytes: opts.captureBytes, ...(opts.inspectRequest ? { inspect: opts.inspectRequest } : {}) },
    );
    this.monitoredMap = obj.map('monitored').typed(u32, raw(MON.size));
    this.enforcement = new KernelEnforcement(obj, (service) => this.procs.serviceId(service));
  }

  static async start(opts: TracerOptions, bus: EventBus, log: Logger): Promise<Tracer> {
    if (opts.captureBytes < 64 || opts.captureBytes > 2048) throw new RangeError(`trace.capture_bytes: expected 64..2048, got ${opts.captureBytes}`);
    const obj = BpfObject.open(objectPath('trace'));
    let t: Tracer | undefined;
    try {
      checkLayouts(obj.types);
      obj.setConstant('self_tgid', process.pid);
      obj.setConstant('capture_bytes', opts.captureBytes);
      obj.setMaxEntries('events', opts.ringBytes);
      await obj.load();
      t = new Tracer(obj, bus, log, opts);
      t.setSensitive(opts.sensitivePaths);
      t.watchExecs();
      t.syncClock();
      // the set first, then the hooks: a service's fork between the two is caught by the scan below
      t.attachAll();
      t.applyChanges(t.procs.scan());
      const adopted = adoptSockets(t.procs, obj.map('conns'), t.sessions);
      if (adopted) log.info('adopted connections opened before the tracer started', { connections: adopted });
      t.ring = new RingBuffer(obj.map('events'), (buf, off, len) => t?.onRecord(buf, off, len), {
        lostCounter: obj.map('events_lost'),
        maxRecordsPerTick: 8192,
      });
      t.ring.start();
      t.timers.push(setInterval(() => t?.housekeeping(), 250));
      t.timers.push(setInterval(() => t?.syncClock(), 60_000));
      for (const x of t.timers) x.unref();
      log.info('tracer started', { programs: t.links.length, monitored: t.procs.monitoredCount(), services: t.procs.services() });
      return t;
    } catch (err) {
      if (t) await t.stop();
      else obj.close();
      throw err;
    }
  }

  private attachAll(): void {
    for (const name of this.obj.programNames) {
      const prog = this.obj.program(name);
      const sec = prog.section;
      if (sec.startsWith('tp_btf/')) this.links.push(prog.attachTrace());
      else if (sec.startsWith('tracepoint/')) {
        const [, cat, tp] = sec.split('/');
        this.links.push(prog.attachTracepoint(cat as string, tp as string));
      }
    }
  }

  private setSensitive(paths: string[]): void {
    const m = this.obj.map('sensitive');
    for (const p of paths) {
      if (!p.startsWith('/')) throw new RangeError(`trace.sensitive_paths: "${p}" is not an absolute path`);
      const bytes = Buffer.from(p, 'utf8');
      if (bytes.length > LPM_PATH.sizes.path - 1) throw new RangeError(`trace.sensitive_paths: "${p}" is longer than ${LPM_PATH.sizes.path - 1} bytes`);
      const key = Buffer.alloc(LPM_PATH.size);
      key.writeUInt32LE(bytes.length * 8, LPM_PATH.off.prefixlen);
      bytes.copy(key, LPM_PATH.off.path);
      const value = Buffer.alloc(4);
      m.update(key, value);
    }
  }

  /**
   * The database clients' executables, monitored from their exec on by the kernel itself: `mysql
   * -e "UPDATE ..."` has sent its statement before user space could read its exec record.
   */
  private watchExecs(): void {
    if (!this.procs.wants('db-client')) return;
    const map = this.obj.map('exec_watch');
    const v = monValue(this.procs.serviceId('db-client'), this.procs.captures('db-client'));
    for (const dir of ['/usr/bin', '/bin', '/usr/local/bin'])
      for (const name of ['mariadb', 'mysql', 'psql']) {
        const path = `${dir}/${name}`;
        if (existsSync(path)) map.update(execAllowKey('db-client', 0, path), v);
      }
  }

  private applyChanges(changes: MonitorChange[]): void {
    for (const c of changes) {
      try {
        if (c.entry) this.monitoredMap.update(c.pid, monValue(c.entry.service, c.entry.capture));
        else this.monitoredMap.delete(c.pid);
      } catch (err) {
        this.log.warn('cannot update the monitored set', { pid: c.pid, error: (err as Error).message });
      }
    }
  }

  private syncClock(): void {
    this.clockOffsetMs = Date.now() - Number(process.hrtime.bigint()) / 1e6;
  }

  private wall(ts: number): number {
    return Math.round((ts / 1e6 + this.clockOffsetMs) * 1000) / 1000;
  }

  private parentOf(ppid: number): TraceEvent['parent'] {
    const p = this.procs.get(ppid);
    if (p) return (p.asParent ??= { pid: ppid, comm: p.comm, service: p.service });
    let c = this.parentCache.get(ppid);
    if (!c) {
      let comm = '';
      try {
        comm = readFileSync(`/proc/${ppid}/comm`, 'utf8').trim();
      } catch {
        /* gone */
      }
      c = { pid: ppid, comm, service: '' };
      this.parentCache.set(ppid, c);
    }
    return c;
  }

  private publish<T extends EventType>(
    h: { ts: number; tgid: number; tid: number; ppid: number; uid: number; service: number; comm: string },
    type: T,
    data: EventData[T],
  ): void {
    const p = this.procs.get(h.tgid);
    const ev: EventOf<T> = {
      ts: this.wall(h.ts),
      type,
      service: p?.service || this.procs.serviceName(h.service),
      pid: h.tgid,
      tid: h.tid,
      ppid: h.ppid || p?.ppid || 0,
      uid: h.uid,
      comm: h.comm || p?.comm || '',
      data,
    };
    if (p?.instance) ev.instance = p.instance;
    if (ev.ppid) ev.parent = this.parentOf(ev.ppid);
    this.perType.set(type, (this.perType.get(type) ?? 0) + 1);
    this.bus.publish(ev as TraceEvent);
  }

  // Identical opens (same path, flags, result) share one data object
  // (read-only by type): services open the same files again and again, and
  // the store keeps a repeated object once per chunk instead of once per
  // event. A direct-mapped table by a hash of the path: a miss (a path not
  // seen lately) costs a hash and a compare, no map churn.
  private readonly openSlots: ({ path: string; bits: number; ret: number; data: FileOpenData } | undefined)[] = new Array(4096);
  private openData(r: { path: string; openFlags: number; ret: number; flags: number }): FileOpenData {
    const flags = r.flags & (TH_SENSITIVE | TH_KILLED); // < 8
    const bits = r.openFlags * 8 + flags;
    const path = r.path;
    let h = 0x811c9dc5 ^ r.ret;
    for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 16777619);
    const slot = (h ^ (h >>> 15)) & 4095;
    const hit = this.openSlots[slot];
    if (hit && hit.bits === bits && hit.ret === r.ret && hit.path === path) return hit.data;
    const data: FileOpenData = { path, flags: openFlags(r.openFlags), result: r.ret };
    if (r.ret < 0) data.error = ERRNO[-r.ret] ?? `errno ${-r.ret}`;
    if (path.charCodeAt(0) !== 47) data.relative = true;
    if (flags & TH_SENSITIVE) data.sensitive = true;
    if (flags & TH_KILLED) data.killed = true;
    this.openSlots[slot] = { path, bits, ret: r.ret, data };
    return data;
  }

  private onRecord(buf: Buffer, off: number, len: number): void {
    this.counts.records++;
    let r: KernelRecord;
    try {
      r = decodeRecord(buf, off, len);
    } catch (err) {
      this.counts.decodeErrors++;
      this.lastDecodeError = (err as Error).message;
      return;
    }
    switch (r.kind) {
      case TK.exec: {
        const change = this.procs.onExec(
          r.tgid,
          r.ppid,
          r.comm,
          r.filename,
          r.argv,
          r.uid,
          r.flags & TH_MONITORED ? this.procs.serviceName(r.service) || 'unknown' : '',
        );
        if (change) this.applyChanges([change]);
        if (!this.procs.get(r.tgid)?.monitored) {
          this.counts.discoveryExecs++;
          return;
        }
        const killed = (r.flags & TH_KILLED) !== 0;
        this.publish(r, 'process.exec', {
          filename: r.filename,
          argv: redactArgv(r.argv),
          ...(r.argsTruncated ? { argv_truncated: true } : {}),
          cgroup: r.cgroup,
          ...(killed ? { killed: true } : {}),
        });
        if (killed) {
          const svc = this.procs.serviceName(r.service);
          this.publish(r, 'response.kill', {
            action: 'kill',
            signal: 9,
            filename: r.filename,
            reason: `${r.filename} is not in the exec list of the enforce-mode profile of ${svc}`,
            enforced_service: svc,
          });
        }
        return;
      }
      case TK.fork:
        this.procs.onFork(r.tgid, r.child);
        this.publish(r, 'process.fork', { child: r.child });
        return;
      case TK.exit:
        this.publish(r, 'process.exit', { exit_code: (r.code >> 8) & 0xff, ...(r.code & 0x7f ? { signal: r.code & 0x7f } : {}) });
        this.procs.onExit(r.tgid);
        return;
      case TK.open: {
        const write = (r.openFlags & 0o1103) !== 0;
        const type = r.flags & TH_SENSITIVE && write ? 'file.write' : 'file.open';
        const killed = (r.flags & TH_KILLED) !== 0;
        this.publish(r, type, this.openData(r));
        if (killed) {
          const svc = this.procs.serviceName(r.service);
          this.publish(r, 'response.kill', {
            action: 'kill',
            signal: 9,
            path: r.path,
            reason: `${r.path} is under a deny_files prefix of the enforce-mode profile of ${svc}`,
            enforced_service: svc,
          });
        }
        return;
      }
      case TK.file:
        this.publish(r, r.op === TRACE_FILE_OP.TF_RENAME ? 'file.rename' : 'file.unlink', {
          path: r.path,
          ...(r.op === TRACE_FILE_OP.TF_RENAME ? { new_path: r.path2 } : {}),
          op: FILE_OPS[r.op as 1 | 2 | 3] as FileChangeData['op'],
          ...result(r.ret),
          ...(r.flags & TH_SENSITIVE ? { sensitive: true as const } : {}),
        });
        return;
      case TK.connect:
      case TK.accept: {
        this.sessions.onConnect(r);
        const fam = r.family === 2 ? 'ipv4' : r.family === 10 ? 'ipv6' : r.family === 1 ? 'unix' : String(r.family);
        const data: ConnectData = { fd: r.fd, family: fam, ...result(r.ret) };
        if (r.family === 2 || r.family === 10) {
          // a failed connect knows only the peer it asked for
          if (r.proto) data.protocol = r.proto === 6 ? 'tcp' : r.proto === 17 ? 'udp' : r.proto;
          if (r.lport) data.local = r.family === 10 ? `[${r.laddr}]:${r.lport}` : `${r.laddr}:${r.lport}`;
          data.remote = r.family === 10 ? `[${r.raddr}]:${r.rport}` : `${r.raddr}:${r.rport}`;
        } else if (r.unixPath) data.path = r.unixPath;
        const killed = (r.flags & TH_KILLED) !== 0;
        if (killed) data.killed = true;
        this.publish(r, r.kind === TK.connect ? 'net.connect' : 'net.accept', data);
        if (killed) {
          const svc = this.procs.serviceName(r.service);
          this.publish(r, 'response.kill', {
            action: 'kill',
            signal: 9,
            remote: data.remote,
            reason: `${String(data.remote)} is not among the peers of the enforce-mode profile of ${svc}`,
            enforced_service: svc,
          });
        }
        return;
      }
      case TK.close: {
        const info = this.sessions.onClose(r);
        this.publish(r, 'net.close', {
          fd: r.fd,
          role: r.role === TRACE_ROLE.ROLE_SERVER ? 'server' : 'client',
          bytes_in: r.bytesIn,
          bytes_out: r.bytesOut,
          duration_ms: Math.round((r.ts - r.openedNs) / 1e3) / 1e3,
          ...(info ?? {}),
        });
        return;
      }
      default:
        this.sessions.onData(r);
    }
  }

  private housekeeping(): void {
    const now = Date.now();
    this.sessions.sweep(now);
    // back-pressure: while the store is behind, leave records in the ring
    if (this.ring) {
      if (this.bus.saturated()) {
        if (this.ringActive) {
          this.ring.stop();
          this.ringActive = false;
          this.counts.paused++;
        }
      } else if (!this.ringActive) {
        this.ring.start();
        this.ringActive = true;
      }
    }
    this.findGreenlets(now);
    if (now - this.rate.at >= 5000) {
      this.rate = { at: now, published: this.bus.published, perSecond: ((this.bus.published - this.rate.published) * 1000) / (now - this.rate.at) };
      const alive = (pid: number): boolean => {
        try {
          process.kill(pid, 0);
          return true;
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'EPERM';
        }
      };
      for (const pid of this.procs.vanished(alive)) this.procs.onExit(pid, now);
      for (const pid of this.procs.prune(now)) {
        this.monitoredMap.delete(pid);
        this.pruneConns(pid);
      }
    }
  }

  private ringActive = true;

  // ---- greenlet: whose SQL is whose on an eventlet thread -------------------------------------
  /** pid → when to look at its memory map again for a greenlet library, and the wait after that */
  private readonly greenletChecks = new Map<number, { at: number; wait: number }>();
  /** greenlet library (device:inode) → the file, and the probe on it or why there is none */
  private readonly greenletLibs = new Map<string, { path: string; error?: string }>();

  /**
   * Monitored processes that capture (the Python services) are looked at a few times — at once,
   * then after 1, 2, 4 ... 64 s, and every 64 s after that — for a greenlet library in their
   * memory map (eventlet imports it at start, after the exec that made them monitored). The probe
   * goes on each library file once; every process that maps it fires it, and the kernel keeps
   * only the monitored ones'.
   */
  private findGreenlets(now: number): void {
    for (const { pid } of this.procs.live()) {
      if (!this.procs.get(pid)?.capture) continue;
      let c = this.greenletChecks.get(pid);
      if (!c) this.greenletChecks.set(pid, (c = { at: now, wait: 1000 }));
      if (c.at > now) continue;
      c.at = now + c.wait;
      c.wait = Math.min(c.wait * 2, 64_000);
      let maps = '';
      try {
        maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
      } catch {
        continue; // gone
      }
      for (const line of maps.split('\n')) {
        const path = line.slice(line.indexOf('/'));
        if (!line.includes('/') || !GREENLET_LIB.test(path)) continue;
        const f = line.split(/\s+/);
        const id = `${f[3]}:${f[4]}`;
        if (this.greenletLibs.has(id)) continue;
        const lib: { path: string; error?: string } = { path };
        this.greenletLibs.set(id, lib);
        try {
          // through the process's root: the path as the process sees it
          this.links.push(this.obj.program('trace_greenlet_in').attachUprobe({ binary: `/proc/${pid}/root${path}`, func: GREENLET_SWITCH_IN }));
          this.log.info('greenlet switches followed', { library: path, pid });
        } catch (err) {
          lib.error = (err as Error).message;
          this.log.warn('cannot follow greenlet switches: requests sharing an eventlet thread share their SQL', { library: path, error: lib.error });
        }
      }
    }
    for (const pid of this.greenletChecks.keys()) if (!this.procs.get(pid)?.monitored) this.greenletChecks.delete(pid);
  }

  private pruneConns(tgid: number): void {
    const conns = this.obj.map('conns');
    const gone: Buffer[] = [];
    for (const k of conns.keys() as Iterable<Buffer>) if (k.readUInt32LE(CONN_KEY.off.tgid) === tgid) gone.push(Buffer.from(k));
    for (const k of gone) conns.delete(k);
  }

  kernelCounters(): Record<(typeof COUNTERS)[number], number> {
    const m = this.obj.map('counters').perCpu(u32, u64);
    const out = {} as Record<(typeof COUNTERS)[number], number>;
    for (const name of COUNTERS) out[name] = Number(sumPerCpu(m.lookup(counterIndex(name)) ?? []));
    return out;
  }

  private keyScan(): { scans: number; misses: number } {
    const m = this.obj.map('counters').perCpu(u32, u64);
    const n = (i: number): number => Number(sumPerCpu(m.lookup(i) ?? []));
    return { scans: n(TRACE_COUNTER.TC_KEY_SCANS), misses: n(TRACE_COUNTER.TC_KEY_MISSES) };
  }

  /** Drain the ring now (tests and shutdown). */
  drain(): number {
    return this.ring?.drain() ?? 0;
  }

  status(): TracerStatus {
    const rs = this.ring?.stats();
    return {
      attached: this.links.map((l) => l.description ?? '').filter(Boolean),
      greenlet: [...this.greenletLibs.values()],
      monitoredProcesses: this.procs.monitoredCount(),
      services: this.procs.services(),
      records: this.counts.records,
      events: Object.fromEntries(this.perType),
      eventsPerSecond: Math.round(this.rate.perSecond),
      discoveryExecs: this.counts.discoveryExecs,
      lost: { ring: Number(rs?.lost ?? 0), decode: this.counts.decodeErrors, ...this.kernelCounters() },
      ring: { size: rs?.size ?? 0, pendingBytes: rs?.pendingBytes ?? 0, mode: rs?.mode ?? 'stopped', paused: this.counts.paused },
      sessions: this.sessions.status(),
      keyScan: this.keyScan(),
      tokensKnown: this.sessions.tokens.size,
      ...(this.lastDecodeError ? { lastDecodeError: this.lastDecodeError } : {}),
    };
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.ring) {
      this.ring.drain();
      this.ring.close();
      this.ring = undefined;
    }
    this.sessions.sweep(Number.MAX_SAFE_INTEGER);
    for (const l of this.links.splice(0)) {
      try {
        l.close();
      } catch {
        /* already gone */
      }
    }
    this.obj.close();
  }
}

/** monitored value (struct mon): the service id and whether to capture its sockets */
function monValue(service: number, capture: boolean): Buffer {
  const v = Buffer.alloc(MON.size);
  v.writeUInt32LE(service, MON.off.service);
  v.writeUInt32LE(capture ? TRACE_MON_FLAG.MON_CAPTURE : 0, MON.off.flags);
  return v;
}
