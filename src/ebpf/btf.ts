// Read struct layouts and data-section variables from BTF (an object's own, or
// the kernel's). Used to set constants before load and to check that the
// TypeScript codecs mirror the C ABI byte for byte.
import { BpfError } from './errors.js';
import { cstring, libbpf, type Ptr, view } from './native.js';

export const BtfKind = {
  int: 1,
  ptr: 2,
  array: 3,
  struct: 4,
  union: 5,
  enum: 6,
  fwd: 7,
  typedef: 8,
  volatile: 9,
  const: 10,
  restrict: 11,
  func: 12,
  func_proto: 13,
  var: 14,
  datasec: 15,
  float: 16,
  decl_tag: 17,
  type_tag: 18,
  enum64: 19,
} as const;

export interface BtfMember {
  name: string;
  /** Offset in bytes (bit-fields: offsetBits % 8 != 0). */
  offset: number;
  offsetBits: number;
  bitfieldSize: number;
  /** Resolved size in bytes of the member's type. */
  size: number;
}

export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}

export interface BtfVariable {
  name: string;
  offset: number;
  size: number;
}

export class Btf {
  private constructor(
    private ptr: Ptr,
    private readonly owned: boolean,
    readonly origin: string,
  ) {}

  /** The object's BTF (owned by the object: valid while it is open). */
  static fromObjectPtr(ptr: Ptr, origin: string): Btf {
    return new Btf(ptr, false, origin);
  }

  /** The running kernel's BTF (/sys/kernel/btf/vmlinux). */
  static vmlinux(): Btf {
    const ptr = libbpf.btf__load_vmlinux_btf();
    if (!ptr) throw new BpfError('cannot load the kernel BTF', { op: 'btf', hint: 'this kernel needs CONFIG_DEBUG_INFO_BTF=y' });
    return new Btf(ptr, true, 'vmlinux');
  }

  close(): void {
    if (this.owned && this.ptr) libbpf.btf__free(this.ptr);
    this.ptr = null;
  }

  private typeWords(id: number, words: number): Uint32Array {
    const p = libbpf.btf__type_by_id(this.ptr, id);
    if (!p) throw new BpfError(`BTF type ${id} not found in ${this.origin}`, { op: 'btf' });
    return new Uint32Array(view(p, words * 4));
  }

  private header(id: number): { nameOff: number; kind: number; vlen: number; kindFlag: boolean; sizeOrType: number } {
    const w = this.typeWords(id, 3);
    const info = w[1] as number;
    return { nameOff: w[0] as number, kind: (info >>> 24) & 0x1f, vlen: info & 0xffff, kindFlag: info >>> 31 === 1, sizeOrType: w[2] as number };
  }

  private find(name: string, kind: number): number {
    const id = libbpf.btf__find_by_name_kind(this.ptr, name, kind) as number;
    return id;
  }

  private name(off: number): string {
    return cstring(libbpf.btf__name_by_offset(this.ptr, off));
  }

  /** Layout of `struct name`, or undefined when the BTF has no such struct. */
  struct(name: string): BtfStruct | undefined {
    const id = this.find(name, BtfKind.struct);
    if (id < 0) return undefined;
    const h = this.header(id);
    const w = this.typeWords(id, 3 + h.vlen * 3);
    const members: BtfMember[] = [];
    for (let i = 0; i < h.vlen; i++) {
      const base = 3 + i * 3;
      const off = w[base + 2] as number;
      const offsetBits = h.kindFlag ? off & 0xffffff : off;
      const bitfieldSize = h.kindFlag ? off >>> 24 : 0;
      const size = Number(libbpf.btf__resolve_size(this.ptr, w[base + 1] as number));
      members.push({ name: this.name(w[base] as number), offsetBits, offset: Math.floor(offsetBits / 8), bitfieldSize, size });
    }
    return { name, size: h.sizeOrType, members };
  }

  /** Values of `enum name` (32-bit enums), or undefined when the BTF has no such enum. */
  enum(name: string): Map<string, number> | undefined {
    const id = this.find(name, BtfKind.enum);
    if (id < 0) return undefined;
    const h = this.header(id);
    const w = this.typeWords(id, 3 + h.vlen * 2);
    const out = new Map<string, number>();
    for (let i = 0; i < h.vlen; i++) {
      const v = w[3 + i * 2 + 1] as number;
      out.set(this.name(w[3 + i * 2] as number), h.kindFlag ? v | 0 : v);
    }
    return out;
  }

  /** Variables of a data section (".rodata", ".bss", ".data"). */
  datasec(section: string): BtfVariable[] {
    const id = this.find(section, BtfKind.datasec);
    if (id < 0) return [];
    const h = this.header(id);
    const w = this.typeWords(id, 3 + h.vlen * 3);
    const out: BtfVariable[] = [];
    for (let i = 0; i < h.vlen; i++) {
      const base = 3 + i * 3;
      const varHeader = this.header(w[base] as number);
      out.push({ name: this.name(varHeader.nameOff), offset: w[base + 1] as number, size: w[base + 2] as number });
    }
    return out;
  }

  /** Number of types (for diagnostics). */
  get typeCount(): number {
    return libbpf.btf__type_cnt(this.ptr) as number;
  }
}
