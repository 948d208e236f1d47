// Links: a program attached to a hook. A link held by fd detaches when its
// last reference goes; pinned on bpffs it outlives the process, and a
// restarted process re-opens it and swaps the program in place.
import { existsSync, readSync, unlinkSync } from 'node:fs';
import { linkTypeName, LinkType } from './constants.js';
import { BpfError } from './errors.js';
import { objectInfo } from './info.js';
import { c, libbpf, LinkUpdateOpts, type Ptr, structSize, TcHook, TcOpts } from './native.js';

export type LinkKind = 'xdp' | 'tcx' | 'tracepoint' | 'raw_tp' | 'tp_btf' | 'uprobe' | 'cgroup' | 'perf_event' | 'tracing' | 'iter' | 'other';

export interface LinkInfo {
  id: number;
  type: number;
  typeName: string;
  progId: number;
  /** XDP and tcx links: the interface (in the namespace it was attached in). */
  ifindex?: number;
}

const kindOfLinkType = (t: number): LinkKind => {
  switch (t) {
    case LinkType.xdp:
      return 'xdp';
    case LinkType.tcx:
      return 'tcx';
    case LinkType.raw_tracepoint:
      return 'raw_tp';
    case LinkType.tracing:
      return 'tracing';
    case LinkType.cgroup:
      return 'cgroup';
    case LinkType.perf_event:
      return 'perf_event';
    case LinkType.iter:
      return 'iter';
    default:
      return 'other';
  }
};

/** Anything that can be detached: a BPF link, or a classic TC filter. */
export interface Attachment {
  readonly kind: LinkKind | 'tc';
  /** Human description: where and how it is attached. */
  readonly description: string;
  detach(): void;
}

/** A BPF link, from libbpf (`struct bpf_link *`) or a bare link fd. */
export class Link implements Attachment {
  readonly kind: LinkKind;
  readonly description: string;
  /** XDP: the mode the kernel actually used. */
  readonly xdpMode: 'native' | 'generic' | 'offload' | undefined;
  private ptr: Ptr | null;
  private rawFd: number;
  private pinnedAt: string | undefined;
  private closed = false;

  constructor(
    kind: LinkKind,
    description: string,
    handle: { ptr: Ptr } | { fd: number },
    extra: { xdpMode?: 'native' | 'generic' | 'offload'; pinnedAt?: string } = {},
  ) {
    this.kind = kind;
    this.description = description;
    this.ptr = 'ptr' in handle ? handle.ptr : null;
    this.rawFd = 'fd' in handle ? handle.fd : -1;
    this.xdpMode = extra.xdpMode;
    this.pinnedAt = extra.pinnedAt;
  }

  /** Re-open a link pinned on bpffs (it stays attached meanwhile). */
  static fromPin(path: string): Link {
    const fd = libbpf.bpf_obj_get(path) as number;
    if (fd < 0) throw new BpfError(`cannot open pinned link ${path}`, { op: 'link open pin', errno: -fd, subject: path });
    let info: LinkInfo;
    try {
      info = linkInfoByFd(fd);
    } catch (err) {
      c.close(fd);
      throw err;
    }
    return new Link(kindOfLinkType(info.type), `${info.typeName} link ${info.id} (pinned at ${path})`, { fd }, { pinnedAt: path });
  }

  get fd(): number {
    if (this.closed) throw new BpfError(`link (${this.description}) is closed`, { op: 'link' });
    return this.ptr !== null ? (libbpf.bpf_link__fd(this.ptr) as number) : this.rawFd;
  }

  get pinPath(): string | undefined {
    return this.pinnedAt;
  }

  info(): LinkInfo {
    return linkInfoByFd(this.fd);
  }

  /** Pin on bpffs: the attachment then survives this process. */
  pin(path: string): void {
    const ret = libbpf.bpf_obj_pin(this.fd, path) as number;
    if (ret < 0) throw new BpfError(`cannot pin link (${this.description}) at ${path}`, { op: 'link pin', errno: -ret, subject: path });
    this.pinnedAt = path;
  }

  /** Remove the pin (the link stays attached while this process holds it). */
  unpin(): void {
    if (this.pinnedAt && existsSync(this.pinnedAt)) unlinkSync(this.pinnedAt);
    this.pinnedAt = undefined;
  }

  /**
   * Run a BPF iterator link (iter/task, iter/bpf_map, ...) once: a fresh
   * iterator over what the kernel holds now, read to its end. The program's
   * output (bpf_seq_write, bpf_seq_printf) is returned; what it does to maps
   * has happened when this returns.
   */
  readIter(chunk = 64 * 1024): Buffer {
    if (this.kind !== 'iter') throw new BpfError(`link (${this.description}) is not an iterator`, { op: 'iter read' });
    const fd = libbpf.bpf_iter_create(this.fd) as number;
    if (fd < 0) throw new BpfError(`cannot create an iterator from link (${this.description})`, { op: 'iter create', errno: -fd });
    const parts: Buffer[] = [];
    try {
      for (;;) {
        const buf = Buffer.allocUnsafe(chunk);
        let n: number;
        try {
          n = readSync(fd, buf, 0, chunk, null);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EAGAIN' || code === 'EINTR') continue;
          throw new BpfError(`reading iterator (${this.description}) failed: ${(err as Error).message}`, { op: 'iter read' });
        }
        if (n === 0) break;
        parts.push(n === chunk ? buf : buf.subarray(0, n));
      }
    } finally {
      c.close(fd);
    }
    return Buffer.concat(parts);
  }

  /** Atomically replace the attached program; traffic never sees a gap. */
  update(programFd: number): void {
    const ret = libbpf.bpf_link_update(this.fd, programFd, { sz: structSize(LinkUpdateOpts), flags: 0, old_prog_fd: 0 }) as number;
    if (ret < 0) throw new BpfError(`cannot replace the program of link (${this.description})`, { op: 'link update', errno: -ret });
  }

  /**
   * Let go of this process's reference. A pinned link stays attached (the
   * pin holds it); an unpinned one detaches as its last fd closes.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ptr !== null) {
      libbpf.bpf_link__destroy(this.ptr); // closes the link fd (and a perf event fd)
      this.ptr = null;
    } else if (this.rawFd >= 0) {
      c.close(this.rawFd);
    }
  }

  /** Detach for good: remove the pin, then drop the reference. */
  detach(): void {
    if (this.closed) return;
    this.unpin();
    this.close();
  }
}

export function linkInfoByFd(fd: number): LinkInfo {
  const { buf } = objectInfo(fd, 64, 'link');
  const type = buf.readUInt32LE(0);
  const info: LinkInfo = { type, typeName: linkTypeName(type), id: buf.readUInt32LE(4), progId: buf.readUInt32LE(8) };
  if (type === LinkType.xdp || type === LinkType.tcx) info.ifindex = buf.readUInt32LE(16);
  return info;
}

export const TC_INGRESS = 1;
export const TC_EGRESS = 2;

/** A classic TC (clsact + cls_bpf) filter, for kernels without tcx. Not pinnable. */
export class TcFilter implements Attachment {
  readonly kind = 'tc' as const;
  readonly description: string;
  private done = false;

  constructor(
    private readonly hook: { ifindex: number; attachPoint: number },
    private readonly ids: { handle: number; priority: number },
    description: string,
    private readonly inNetns: <T>(fn: () => T) => T,
  ) {
    this.description = description;
  }

  get handle(): number {
    return this.ids.handle;
  }
  get priority(): number {
    return this.ids.priority;
  }

  detach(): void {
    if (this.done) return;
    this.done = true;
    const ret = this.inNetns(
      () =>
        libbpf.bpf_tc_detach(
          { sz: structSize(TcHook), ifindex: this.hook.ifindex, attach_point: this.hook.attachPoint, parent: 0 },
          { sz: structSize(TcOpts), prog_fd: 0, flags: 0, prog_id: 0, handle: this.ids.handle, priority: this.ids.priority },
        ) as number,
    );
    // ENOENT: the interface or filter is already gone, which is what detach wants
    if (ret < 0 && ret !== -2 && ret !== -19) {
      throw new BpfError(`cannot detach TC filter (${this.description})`, { op: 'tc detach', errno: -ret });
    }
  }
}
