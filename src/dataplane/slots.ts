// The exact-match tables the fast path reads first (exp4_slots and
// exp6_slots in bpf/include/dataplane.h): open addressing in an array of
// slots that hold the key and the whole forwarding decision, written
// through the exp4_write / exp6_write programs so that each 8-byte word
// changes in a single store and the key's first word last. The hash map
// (exp_v4 / exp_v6) stays the complete table: it is written first and read
// last, so the fast path never sees less than the truth:
//  - an entry that finds no free slot within the probe window of its home
//    spills: it lives in the hash map only, and the SPILL flag makes the
//    program look there after the slots;
//  - an entry whose value changes is hidden from the slots (the UPDATING
//    flag on, so the hash map answers meanwhile), rewritten, and published
//    again.
import { ipv4, ipv6, type BpfMap, type Program } from '../ebpf/index.js';
import { DpConfigFlag, EXP4_BATCH, EXP4_PROBES, EXP6_BATCH, EXP6_PROBES, type ExposureValue } from './abi.js';
import { setConfigFlag } from './config-flags.js';

/** lowbias32 (Chris Wellons), as exp4_hash() in bpf/dataplane.bpf.c. */
export function exp4Hash(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** As exp6_hash(): the address's four 32-bit words (read little-endian), each mixed in. */
export function exp6Hash(addr: Buffer): number {
  const w = (i: number): number => addr.readUInt32LE(i * 4);
  return exp4Hash((w(3) ^ exp4Hash((w(2) ^ exp4Hash((w(1) ^ exp4Hash(w(0))) >>> 0)) >>> 0)) >>> 0);
}

/** Slots for `maxEntries`: a power of two at least twice as large (load ≤ 0.5 keeps probe chains short). */
export function slotTableSize(maxEntries: number): number {
  let n = 1024;
  while (n < maxEntries * 2) n *= 2;
  return n;
}

/** What differs between the IPv4 and the IPv6 table. */
interface Layout<A> {
  family: 'IPv4' | 'IPv6';
  probes: number;
  batch: number;
  /** 8-byte words per slot; the first is the key's (published last) */
  words: number;
  spill: number;
  updating: number;
  /** the key's identity (the slot's key bytes as text) */
  keyOf(addr: A): string;
  /** the key of a slot as the kernel holds it: undefined when empty, null when deleted */
  keyOfSlot(v: Buffer): string | null | undefined;
  home(addr: A): number;
  /** can this address live in a slot at all (its first word is neither marker) */
  slottable(addr: A): boolean;
  encode(addr: A, v: ExposureValue): bigint[];
  deleted: bigint[];
}

const macBytes = (m: string): number[] => m.split(':').map((x) => parseInt(x, 16));

/** A slot's words: the key's bytes, then dmac (6), vlan (2), port (1), id (3), zero padding (exp4_slot, exp6_slot). */
function slotWords(key: Buffer, v: ExposureValue, words: number): bigint[] {
  const b = Buffer.alloc(words * 8);
  key.copy(b, 0);
  const o = key.length;
  Buffer.from(macBytes(v.dmac)).copy(b, o);
  b.writeUInt16LE(v.vlan, o + 6);
  b[o + 8] = v.port;
  b.writeUIntLE(v.id, o + 9, 3);
  return Array.from({ length: words }, (_, i) => b.readBigUInt64LE(i * 8));
}

const V4: Layout<string> = {
  family: 'IPv4',
  probes: EXP4_PROBES,
  batch: EXP4_BATCH,
  words: 2,
  spill: DpConfigFlag.exp4Spill,
  updating: DpConfigFlag.exp4Updating,
  keyOf: (addr) => v4Bytes(addr).toString('hex'),
  keyOfSlot(v) {
    const k = v.readUInt32LE(0);
    return k === 0 ? undefined : k === 0xffffffff ? null : v.toString('hex', 0, 4);
  },
  home: (addr) => exp4Hash(v4Bytes(addr).readUInt32LE(0)),
  slottable(addr) {
    const k = v4Bytes(addr).readUInt32LE(0);
    return k !== 0 && k !== 0xffffffff;
  },
  encode: (addr, v) => slotWords(v4Bytes(addr), v, 2),
  deleted: [0xffffffffn, 0n],
};

const ALL_ONES = 0xffffffffffffffffn;

const V6: Layout<string> = {
  family: 'IPv6',
  probes: EXP6_PROBES,
  batch: EXP6_BATCH,
  words: 4,
  spill: DpConfigFlag.exp6Spill,
  updating: DpConfigFlag.exp6Updating,
  keyOf: (addr) => v6Bytes(addr).toString('hex'),
  keyOfSlot(v) {
    const hi = v.readBigUInt64LE(0);
    return hi === 0n ? undefined : hi === ALL_ONES ? null : v.toString('hex', 0, 16);
  },
  home: (addr) => exp6Hash(v6Bytes(addr)),
  slottable(addr) {
    const hi = v6Bytes(addr).readBigUInt64LE(0);
    return hi !== 0n && hi !== ALL_ONES;
  },
  encode: (addr, v) => slotWords(v6Bytes(addr), v, 4),
  deleted: [ALL_ONES, 0n, 0n, 0n],
};

function v4Bytes(addr: string): Buffer {
  const b = Buffer.alloc(4);
  ipv4.encode(addr, b, 0);
  return b;
}
function v6Bytes(addr: string): Buffer {
  const b = Buffer.alloc(16);
  ipv6.encode(addr, b, 0);
  return b;
}

interface Write {
  index: number;
  op: 1 | 2;
  w: bigint[];
}

/** One family's slot table, kept in step with its hash map. */
export class SlotTable {
  private readonly mask: number;
  /** slot index -> key, undefined (empty) or null (deleted) */
  private readonly slotKeys: (string | null | undefined)[];
  /** key -> slot index */
  private readonly where = new Map<string, number>();
  /** keys that live in the hash map only */
  private readonly spilled = new Set<string>();

  static ipv4(
    slots: BpfMap,
    pending: BpfMap,
    hash: BpfMap<string, ExposureValue>,
    config: BpfMap<number, { flags: number; pad: number }>,
    writer: Program,
  ): SlotTable {
    return new SlotTable(V4, slots, pending, hash, config, writer);
  }
  static ipv6(
    slots: BpfMap,
    pending: BpfMap,
    hash: BpfMap<string, ExposureValue>,
    config: BpfMap<number, { flags: number; pad: number }>,
    writer: Program,
  ): SlotTable {
    return new SlotTable(V6, slots, pending, hash, config, writer);
  }

  private constructor(
    private readonly layout: Layout<string>,
    slots: BpfMap,
    private readonly pending: BpfMap,
    private readonly hash: BpfMap<string, ExposureValue>,
    private readonly config: BpfMap<number, { flags: number; pad: number }>,
    private readonly writer: Program,
  ) {
    this.mask = slots.info.maxEntries - 1;
    this.slotKeys = new Array<string | null | undefined>(slots.info.maxEntries);
    // re-adopt: what the kernel holds is the truth
    for (const [k, v] of slots.dump() as [Buffer, Buffer][]) {
      const key = layout.keyOfSlot(v);
      const index = k.readUInt32LE(0);
      this.slotKeys[index] = key;
      if (typeof key === 'string') this.where.set(key, index);
    }
    // entries of the hash map without a slot: true spills, or an update a crash cut short (its
    // slot hidden, the updating flag left on); place what fits, then the flags say what is left
    const homeless = hash.dump().filter(([addr]) => !this.where.has(layout.keyOf(addr)));
    const writes = this.place(homeless);
    this.run(writes);
    this.setFlag(layout.spill, this.spilled.size > 0);
    this.setFlag(layout.updating, false);
  }

  /** Give each entry a free slot in its window (or spill it); returns the slot writes. */
  private place(entries: readonly (readonly [string, ExposureValue])[]): Write[] {
    const writes: Write[] = [];
    for (const [addr, value] of entries) {
      const key = this.layout.keyOf(addr);
      this.spilled.delete(key);
      const idx = this.layout.slottable(addr) ? this.freeSlot(addr) : undefined;
      if (idx === undefined) {
        this.spilled.add(key);
        continue;
      }
      writes.push({ index: idx, op: 1, w: this.layout.encode(addr, value) });
      this.slotKeys[idx] = key;
      this.where.set(key, idx);
    }
    return writes;
  }

  get size(): number {
    return this.slotKeys.length;
  }
  get spillCount(): number {
    return this.spilled.size;
  }

  private setFlag(flag: number, on: boolean): void {
    setConfigFlag(this.config, flag, on);
  }

  private run(writes: Write[]): void {
    const { batch: max, words } = this.layout;
    const size = 8 + 8 * words;
    for (let i = 0; i < writes.length; i += max) {
      const part = writes.slice(i, i + max);
      const batch = Buffer.alloc(8 + size * max);
      batch.writeUInt32LE(part.length, 0);
      part.forEach((w, j) => {
        const o = 8 + size * j;
        batch.writeUInt32LE(w.index, o);
        batch.writeUInt32LE(w.op, o + 4);
        w.w.forEach((x, n) => batch.writeBigUInt64LE(x, o + 8 + 8 * n));
      });
      this.pending.update(Buffer.alloc(4), batch);
      const r = this.writer.testRun({ ctx: Buffer.alloc(8) });
      if (r.retval !== 0) throw new Error(`${this.writer.name} refused a slot index (retval ${r.retval})`);
    }
  }

  private freeSlot(addr: string): number | undefined {
    const home = this.layout.home(addr);
    for (let i = 0; i < this.layout.probes; i++) {
      const idx = (home + i) & this.mask;
      if (typeof this.slotKeys[idx] !== 'string') return idx;
    }
    return undefined;
  }

  private clear(index: number): Write {
    this.slotKeys[index] = null;
    return { index, op: 2, w: this.layout.deleted };
  }

  /** Create or replace entries (the hash map first, then the slots). */
  updateBatch(entries: readonly (readonly [string, ExposureValue])[]): void {
    if (entries.length === 0) return;
    this.hash.updateBatch(entries);
    const changed = entries.filter(([addr]) => this.where.has(this.layout.keyOf(addr)));
    if (changed.length > 0) {
      // hide the slots being rewritten; the hash map (already updated) answers meanwhile
      this.setFlag(this.layout.updating, true);
      const hide: Write[] = [];
      for (const [addr] of changed) {
        const key = this.layout.keyOf(addr);
        hide.push(this.clear(this.where.get(key) as number));
        this.where.delete(key);
      }
      this.run(hide);
    }
    const writes = this.place(entries);
    if (this.spilled.size > 0) this.setFlag(this.layout.spill, true);
    this.run(writes);
    if (changed.length > 0) this.setFlag(this.layout.updating, false);
    if (this.spilled.size === 0) this.setFlag(this.layout.spill, false);
  }

  /** Remove entries (the slots first, then the hash map). Returns how many existed. */
  deleteBatch(addrs: readonly string[]): number {
    const writes: Write[] = [];
    for (const addr of addrs) {
      const key = this.layout.keyOf(addr);
      const idx = this.where.get(key);
      this.spilled.delete(key);
      if (idx === undefined) continue;
      writes.push(this.clear(idx));
      this.where.delete(key);
    }
    this.run(writes);
    const n = this.hash.deleteBatch(addrs as string[]);
    if (this.spilled.size === 0) this.setFlag(this.layout.spill, false);
    return n;
  }

  dump(): [string, ExposureValue][] {
    return this.hash.dump();
  }
}
