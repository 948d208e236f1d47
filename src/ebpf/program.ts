// Programs: attach to every hook family the runtime supports, test-run with
// packet fixtures (BPF_PROG_TEST_RUN), read run statistics, pin and re-open.
import { existsSync, openSync, closeSync } from 'node:fs';
import { AttachType, ProgType, progTypeName, XdpAttached, XdpFlags } from './constants.js';
import { BpfError, NotSupportedError } from './errors.js';
import { nameField, objectInfo } from './info.js';
import { Link, TC_EGRESS, TC_INGRESS, TcFilter, type Attachment } from './link.js';
import { logMark, logSince } from './libbpf-log.js';
import { c, errno, libbpf, LinkCreateOpts, type Ptr, structSize, TcHook, TcOpts, TestRunOpts, UprobeOpts, XdpQueryOpts } from './native.js';
import { ifindexOf, withNetns } from './netns.js';

export interface TestRunOptions {
  /** Packet (or other input) bytes. */
  data?: Buffer;
  /** Program context (e.g. struct xdp_md). */
  ctx?: Buffer;
  /** Room for output data; default: input size + 256 (XDP may grow the head). */
  dataOutSize?: number;
  /** Run the program this many times (the duration is the average). */
  repeat?: number;
  /** e.g. TEST_RUN_XDP_LIVE_FRAMES */
  flags?: number;
  cpu?: number;
  batchSize?: number;
}

export interface TestRunResult {
  retval: number;
  data: Buffer;
  ctx: Buffer | undefined;
  /** Average run time per repetition, ns (measured by the kernel). */
  durationNs: number;
}

export interface ProgramStats {
  runCount: bigint;
  runTimeNs: bigint;
}

export interface ProgramInfo {
  id: number;
  type: number;
  typeName: string;
  name: string;
  tag: string;
  runCount: bigint;
  runTimeNs: bigint;
  verifiedInsns: number;
}

export type XdpMode = 'auto' | 'native' | 'generic';

export interface XdpAttachOptions {
  /** Native (driver) mode, generic (skb) mode, or native with generic fallback (default). */
  mode?: XdpMode;
  /** Network namespace (name under /run/netns, or a path) the interface lives in. */
  netns?: string;
}

export interface TcAttachOptions {
  direction: 'ingress' | 'egress';
  netns?: string;
  /** tcx links where the kernel has them (default), or classic clsact filters. */
  mode?: 'auto' | 'tcx' | 'clsact';
  /** clsact only: filter priority and handle (default 1 / 1). */
  priority?: number;
  handle?: number;
}

export interface UprobeOptions {
  /** Path of the ELF binary or shared library (libbpf also resolves e.g. "libc.so.6"). */
  binary: string;
  /** Function to probe (resolved from the ELF symbol table) ... */
  func?: string;
  /** ... or an offset in the file. */
  offset?: number;
  /** Only this process (default: every process that maps the binary). */
  pid?: number;
  retprobe?: boolean;
}

/** BPF_F_TEST_XDP_LIVE_FRAMES: XDP_TX / XDP_REDIRECT really transmit (a traffic generator). */
export const TEST_RUN_XDP_LIVE_FRAMES = 1 << 1;

const EOPNOTSUPP = 95;
const EINVAL = 22;
const ENODEV = 19;
const ENOENT = 2;

let tcxSupport: boolean | undefined;

/** tcx: link creation on a nonexistent ifindex is ENODEV where tcx exists, EINVAL where it does not. */
export function probeTcx(progFd: number): boolean {
  if (tcxSupport !== undefined) return tcxSupport;
  const fd = libbpf.bpf_link_create(progFd, 0x7fffffff, AttachType.tcx_ingress, linkOpts(0)) as number;
  if (fd >= 0) {
    c.close(fd);
    tcxSupport = true;
  } else {
    tcxSupport = fd === -ENODEV;
  }
  return tcxSupport;
}

function linkOpts(flags: number): Record<string, unknown> {
  return {
    sz: structSize(LinkCreateOpts),
    flags,
    iter_info: null,
    iter_info_len: 0,
    target_btf_id: 0,
    _union: [0, 0, 0, 0, 0],
  };
}

/** A loaded BPF program. */
export class Program {
  readonly name: string;
  readonly type: number;
  readonly section: string;
  private readonly ptr: Ptr | null;
  private readonly ownFd: number;

  constructor(name: string, type: number, section: string, handle: { ptr: Ptr } | { fd: number }) {
    this.name = name;
    this.type = type;
    this.section = section;
    this.ptr = 'ptr' in handle ? handle.ptr : null;
    this.ownFd = 'fd' in handle ? handle.fd : -1;
  }

  /** Re-open a program pinned on bpffs. */
  static fromPin(path: string): Program {
    const fd = libbpf.bpf_obj_get(path) as number;
    if (fd < 0) throw new BpfError(`cannot open pinned program ${path}`, { op: 'program open pin', errno: -fd, subject: path });
    const info = programInfoByFd(fd);
    return new Program(info.name, info.type, '', { fd });
  }

  get typeName(): string {
    return progTypeName(this.type);
  }

  get fd(): number {
    const fd = this.ptr !== null ? (libbpf.bpf_program__fd(this.ptr) as number) : this.ownFd;
    if (fd < 0) {
      throw new BpfError(`program ${this.name} is not loaded (autoload off, or its object is not loaded or closed)`, {
        op: 'program',
        subject: this.name,
      });
    }
    return fd;
  }

  private requirePtr(what: string): Ptr {
    if (this.ptr === null) {
      throw new BpfError(`${what} needs the program's object; program ${this.name} was re-opened from a pin`, {
        op: what,
        subject: this.name,
        hint: 'load the object again and attach its program',
      });
    }
    return this.ptr;
  }

  private libbpfLink(kind: Link['kind'], description: string, call: () => Ptr): Link {
    const mark = logMark();
    const ptr = call();
    if (ptr === null || ptr === 0n || ptr === undefined) {
      const e = errno();
      throw new BpfError(`cannot attach program ${this.name} to ${description}`, {
        op: `attach ${kind}`,
        errno: e,
        subject: this.name,
        libbpfLog: logSince(mark),
      });
    }
    return new Link(kind, description, { ptr });
  }

  pin(path: string): void {
    const ret = libbpf.bpf_obj_pin(this.fd, path) as number;
    if (ret < 0) throw new BpfError(`cannot pin program ${this.name} at ${path}`, { op: 'program pin', errno: -ret, subject: path });
  }

  /** XDP on an interface (optionally in another network namespace); reports the mode used. */
  attachXdp(ifname: string, opts: XdpAttachOptions = {}): Link {
    const mode = opts.mode ?? 'auto';
    const ifindex = ifindexOf(ifname, opts.netns);
    const where = `xdp on ${ifname}${opts.netns ? ` (netns ${opts.netns})` : ''}`;
    return withNetns(opts.netns, () => {
      const tries: [number, 'native' | 'generic'][] =
        mode === 'native'
          ? [[XdpFlags.drvMode, 'native']]
          : mode === 'generic'
            ? [[XdpFlags.skbMode, 'generic']]
            : [
                [XdpFlags.drvMode, 'native'],
                [XdpFlags.skbMode, 'generic'],
              ];
      let last = 0;
      for (const [flags, label] of tries) {
        const fd = libbpf.bpf_link_create(this.fd, ifindex, AttachType.xdp, linkOpts(flags)) as number;
        if (fd >= 0) {
          const used = queryXdpMode(ifindex) ?? label;
          return new Link('xdp', `${where}, ${used} mode`, { fd }, { xdpMode: used });
        }
        last = -fd;
        if (last !== EOPNOTSUPP && last !== EINVAL) break;
      }
      throw new BpfError(`cannot attach program ${this.name} as ${where} (mode ${mode})`, {
        op: 'attach xdp',
        errno: last,
        subject: this.name,
        hint: last === 16 ? 'another XDP program is attached in that mode: detach it first (ip link set dev IF xdp off)' : undefined,
      });
    });
  }

  /** TC ingress or egress: a tcx link where the kernel offers it, else a clsact filter. */
  attachTc(ifname: string, opts: TcAttachOptions): Attachment {
    const ifindex = ifindexOf(ifname, opts.netns);
    const where = `tc ${opts.direction} on ${ifname}${opts.netns ? ` (netns ${opts.netns})` : ''}`;
    const mode = opts.mode ?? 'auto';
    const useTcx = mode === 'tcx' || (mode === 'auto' && probeTcx(this.fd));
    if (mode === 'tcx' && !probeTcx(this.fd)) throw new NotSupportedError('tcx', 'BPF_LINK_CREATE does not know BPF_TCX_INGRESS');
    return withNetns(opts.netns, () => {
      if (useTcx) {
        const type = opts.direction === 'ingress' ? AttachType.tcx_ingress : AttachType.tcx_egress;
        const fd = libbpf.bpf_link_create(this.fd, ifindex, type, linkOpts(0)) as number;
        if (fd < 0) throw new BpfError(`cannot attach program ${this.name} as ${where} (tcx)`, { op: 'attach tcx', errno: -fd, subject: this.name });
        return new Link('tcx', `${where}, tcx`, { fd });
      }
      const attachPoint = opts.direction === 'ingress' ? TC_INGRESS : TC_EGRESS;
      const hook = { sz: structSize(TcHook), ifindex, attach_point: attachPoint, parent: 0 };
      const created = libbpf.bpf_tc_hook_create(hook) as number;
      if (created < 0 && created !== -17) {
        throw new BpfError(`cannot create the clsact qdisc on ${ifname}`, { op: 'tc hook', errno: -created, subject: ifname });
      }
      const tcOpts = {
        sz: structSize(TcOpts),
        prog_fd: this.fd,
        flags: 0,
        prog_id: 0,
        handle: opts.handle ?? 1,
        priority: opts.priority ?? 1,
      };
      const ret = libbpf.bpf_tc_attach(hook, tcOpts) as number;
      if (ret < 0) throw new BpfError(`cannot attach program ${this.name} as ${where} (clsact)`, { op: 'attach tc', errno: -ret, subject: this.name });
      const ns = opts.netns;
      return new TcFilter({ ifindex, attachPoint }, { handle: tcOpts.handle, priority: tcOpts.priority }, `${where}, clsact`, (fn) => withNetns(ns, fn));
    });
  }

  /** A classic tracepoint (tracefs category/name), e.g. syscalls/sys_enter_openat. */
  attachTracepoint(category: string, name: string): Link {
    const ptr = this.requirePtr('attach tracepoint');
    if (!existsSync(`/sys/kernel/tracing/events/${category}/${name}`) && !existsSync(`/sys/kernel/debug/tracing/events/${category}/${name}`)) {
      const tracefs = existsSync('/sys/kernel/tracing/events');
      throw new BpfError(`tracepoint ${category}/${name} does not exist`, {
        op: 'attach tracepoint',
        errno: ENOENT,
        subject: this.name,
        hint: tracefs ? 'list them under /sys/kernel/tracing/events' : 'tracefs is not mounted: call ensureMounted("tracefs") first',
      });
    }
    return this.libbpfLink('tracepoint', `tracepoint ${category}/${name}`, () => libbpf.bpf_program__attach_tracepoint(ptr, category, name));
  }

  /** A raw tracepoint by name, e.g. sched_process_exit. */
  attachRawTracepoint(name: string): Link {
    const ptr = this.requirePtr('attach raw_tp');
    return this.libbpfLink('raw_tp', `raw_tp ${name}`, () => libbpf.bpf_program__attach_raw_tracepoint(ptr, name));
  }

  /** tp_btf (and fentry/fexit/LSM): the target was fixed at load time from the section name. */
  attachTrace(): Link {
    const ptr = this.requirePtr('attach trace');
    return this.libbpfLink('tp_btf', this.section, () => libbpf.bpf_program__attach_trace(ptr));
  }

  attachUprobe(opts: UprobeOptions): Link {
    const ptr = this.requirePtr('attach uprobe');
    if (opts.binary.includes('/') && !existsSync(opts.binary)) {
      throw new BpfError(`uprobe target ${opts.binary} does not exist`, { op: 'attach uprobe', errno: ENOENT, subject: this.name });
    }
    const what = `${opts.retprobe ? 'uretprobe' : 'uprobe'} ${opts.binary}:${opts.func ?? `+${opts.offset ?? 0}`}${opts.pid ? ` pid ${opts.pid}` : ''}`;
    const uopts = {
      sz: structSize(UprobeOpts),
      ref_ctr_offset: 0,
      bpf_cookie: 0,
      retprobe: opts.retprobe ?? false,
      func_name: opts.func ?? null,
    };
    return this.libbpfLink('uprobe', what, () => libbpf.bpf_program__attach_uprobe_opts(ptr, opts.pid ?? -1, opts.binary, opts.offset ?? 0, uopts));
  }

  /** A cgroup hook (cgroup v2 directory); the attach type comes from the section. */
  attachCgroup(cgroupPath: string): Link {
    const ptr = this.requirePtr('attach cgroup');
    let fd: number;
    try {
      fd = openSync(cgroupPath, 'r');
    } catch (err) {
      throw new BpfError(`cannot open cgroup ${cgroupPath}: ${(err as Error).message}`, {
        op: 'attach cgroup',
        subject: this.name,
        hint: 'give a cgroup v2 directory, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified',
      });
    }
    try {
      return this.libbpfLink('cgroup', `cgroup ${cgroupPath} (${this.section})`, () => libbpf.bpf_program__attach_cgroup(ptr, fd));
    } finally {
      closeSync(fd); // the link holds its own reference to the cgroup
    }
  }

  /** An iterator program (SEC("iter/task") ...): read it with `Link.readIter()`. */
  attachIter(): Link {
    const ptr = this.requirePtr('attach iter');
    return this.libbpfLink('iter', this.section, () => libbpf.bpf_program__attach_iter(ptr, null));
  }

  /** Attach by section name (tp_btf/..., tracepoint/a/b, raw_tp/...). */
  attach(): Link {
    const ptr = this.requirePtr('attach');
    return this.libbpfLink('other', this.section, () => libbpf.bpf_program__attach(ptr));
  }

  private testRunOpts(o: TestRunOptions): { opts: Record<string, unknown>; out: Buffer; ctxOut: Buffer | undefined } {
    const data = o.data;
    // live frames (XDP): packets really leave; the kernel takes no output buffers
    const live = ((o.flags ?? 0) & TEST_RUN_XDP_LIVE_FRAMES) !== 0;
    // syscall programs run once on their context and give nothing back but retval
    const syscall = this.type === ProgType.syscall;
    const out = Buffer.alloc(live || syscall ? 0 : (o.dataOutSize ?? (data ? data.length + 256 : 0)));
    const ctxOut = o.ctx && !live && !syscall ? Buffer.alloc(o.ctx.length) : undefined;
    const opts = {
      sz: structSize(TestRunOpts),
      data_in: data ?? null,
      data_out: out.length > 0 ? out : null,
      data_size_in: data?.length ?? 0,
      data_size_out: out.length,
      ctx_in: o.ctx ?? null,
      ctx_out: ctxOut ?? null,
      ctx_size_in: o.ctx?.length ?? 0,
      ctx_size_out: ctxOut?.length ?? 0,
      retval: 0,
      repeat: syscall ? 0 : (o.repeat ?? 1),
      duration: 0,
      flags: o.flags ?? 0,
      cpu: o.cpu ?? 0,
      batch_size: o.batchSize ?? 0,
    };
    return { opts, out, ctxOut };
  }

  private testRunResult(ret: number, opts: Record<string, unknown>, out: Buffer, ctxOut: Buffer | undefined): TestRunResult {
    if (ret < 0) {
      throw new BpfError(`test run of program ${this.name} failed`, {
        op: 'test run',
        errno: -ret,
        subject: this.name,
        hint: -ret === 22 ? 'the input is too short or too long for this program type, or a flag is not allowed' : undefined,
      });
    }
    return {
      retval: opts.retval as number,
      data: out.subarray(0, opts.data_size_out as number),
      ctx: ctxOut,
      durationNs: opts.duration as number,
    };
  }

  /** Run the program on the given input in the kernel (BPF_PROG_TEST_RUN). */
  testRun(o: TestRunOptions = {}): TestRunResult {
    const { opts, out, ctxOut } = this.testRunOpts(o);
    const ret = libbpf.bpf_prog_test_run_opts(this.fd, opts) as number;
    return this.testRunResult(ret, opts, out, ctxOut);
  }

  /** As testRun, on a worker thread: the event loop keeps running meanwhile. */
  testRunAsync(o: TestRunOptions = {}): Promise<TestRunResult> {
    const { opts, out, ctxOut } = this.testRunOpts(o);
    return new Promise((resolve, reject) => {
      libbpf.bpf_prog_test_run_opts.async(this.fd, opts, (err: unknown, ret: number) => {
        if (err) return reject(err);
        try {
          resolve(this.testRunResult(ret, opts, out, ctxOut));
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  info(): ProgramInfo {
    return programInfoByFd(this.fd);
  }

  /** Run count and total run time; non-zero only while BPF stats are enabled. */
  stats(): ProgramStats {
    const i = this.info();
    return { runCount: i.runCount, runTimeNs: i.runTimeNs };
  }
}

export function programInfoByFd(fd: number): ProgramInfo {
  const { buf, len } = objectInfo(fd, 256, 'program');
  const type = buf.readUInt32LE(0);
  return {
    type,
    typeName: progTypeName(type),
    id: buf.readUInt32LE(4),
    tag: buf.subarray(8, 16).toString('hex'),
    name: nameField(buf, 64),
    runTimeNs: buf.readBigUInt64LE(192),
    runCount: buf.readBigUInt64LE(200),
    verifiedInsns: len >= 220 ? buf.readUInt32LE(216) : 0,
  };
}

/** Which XDP mode is attached on an ifindex (in the current namespace). */
export function queryXdpMode(ifindex: number): 'native' | 'generic' | 'offload' | undefined {
  const q = { sz: structSize(XdpQueryOpts), prog_id: 0, drv_prog_id: 0, hw_prog_id: 0, skb_prog_id: 0, attach_mode: 0 };
  const ret = libbpf.bpf_xdp_query(ifindex, 0, q) as number;
  if (ret < 0) return undefined;
  switch (q.attach_mode) {
    case XdpAttached.drv:
      return 'native';
    case XdpAttached.skb:
      return 'generic';
    case XdpAttached.hw:
      return 'offload';
    default:
      return undefined;
  }
}

/** Enable the kernel's BPF run-time statistics while the handle is open. */
export function enableStats(): { close(): void } {
  const fd = libbpf.bpf_enable_stats(0 /* BPF_STATS_RUN_TIME */) as number;
  if (fd < 0) throw new BpfError('cannot enable BPF statistics', { op: 'enable stats', errno: -fd });
  let open = true;
  return {
    close() {
      if (open) c.close(fd);
      open = false;
    },
  };
}
