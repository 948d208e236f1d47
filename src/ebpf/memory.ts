// The memory of an array map created with BPF_F_MMAPABLE, mapped into this
// process: values read and written as plain memory, no syscall per element
// (cilium/ebpf's Map.Memory, libbpf's bpf_map__initial_value for .data).
// Element i starts at i * round_up(value_size, 8); the kernel's program sees
// the same bytes, so what a program writes concurrently is read as it lands
// (8-byte aligned words are never torn).
import { MapType } from './constants.js';
import { BpfError } from './errors.js';
import type { BpfMap } from './map.js';
import { address, c, errno, MAP_FAILED_ADDR, type Ptr, view } from './native.js';

export const PROT_READ = 1;
export const PROT_WRITE = 2;
const MAP_SHARED = 1;
/** BPF_F_MMAPABLE */
export const MAP_F_MMAPABLE = 1 << 10;

/**
 * A shared mapping of `len` bytes of a map's fd from `offset` (array maps,
 * ring buffers); a refusal is a BpfError with the errno and `what` it was for.
 */
export function mmapMap(fd: number, len: number, prot: number, offset: number, what: { message: string; op: string; subject: string }): Ptr {
  const p = c.mmap(null, len, prot, MAP_SHARED, fd, offset) as Ptr;
  if (!p || address(p) === MAP_FAILED_ADDR) throw new BpfError(what.message, { op: what.op, errno: errno(), subject: what.subject });
  return p;
}

export class MapMemory {
  /** Bytes per element (the value size rounded up to 8). */
  readonly stride: number;
  readonly entries: number;
  private readonly buf: Buffer;
  private ptr: Ptr | null;
  private readonly length: number;

  /** Map `map` (an ARRAY map made with BPF_F_MMAPABLE), read-only unless `writable`. */
  constructor(map: BpfMap<unknown, unknown>, opts: { writable?: boolean } = {}) {
    const { info } = map;
    const fail = (why: string, hint?: string): never => {
      throw new BpfError(`cannot map the memory of map ${info.name}: ${why}`, { op: 'map mmap', subject: info.name, hint });
    };
    if (info.type !== MapType.array) fail(`it is a ${map.typeName} map; only array maps can be mapped`);
    if ((info.flags & MAP_F_MMAPABLE) === 0) fail('it was created without BPF_F_MMAPABLE', 'set map_flags BPF_F_MMAPABLE in its definition');
    this.stride = Math.ceil(info.valueSize / 8) * 8;
    this.entries = info.maxEntries;
    const page = c.getpagesize() as number;
    this.length = Math.ceil((this.stride * this.entries) / page) * page;
    const p = mmapMap(map.fd, this.length, PROT_READ | (opts.writable ? PROT_WRITE : 0), 0, {
      message: `cannot map the memory of map ${info.name}`,
      op: 'map mmap',
      subject: info.name,
    });
    this.ptr = p;
    this.buf = Buffer.from(view(p, this.length), 0, this.stride * this.entries);
  }

  /** The mapped elements (touching them after close() would fault, so that throws). */
  get bytes(): Buffer {
    if (this.ptr === null) throw new BpfError('the map memory is closed', { op: 'map memory' });
    return this.buf;
  }

  /** Byte offset of element `index`. */
  offset(index: number): number {
    if (!Number.isInteger(index) || index < 0 || index >= this.entries) {
      throw new BpfError(`element ${index} is outside the map's ${this.entries} entries`, { op: 'map memory' });
    }
    return index * this.stride;
  }

  get closed(): boolean {
    return this.ptr === null;
  }

  /** Unmap (the map itself stays). Idempotent. */
  close(): void {
    if (this.ptr === null) return;
    c.munmap(this.ptr, this.length);
    this.ptr = null;
  }
}
