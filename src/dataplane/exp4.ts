// The IPv4 exact-match table the fast path reads first (see exp4_slots in
// bpf/include/dataplane.h): open addressing in an array of 16-byte slots,
// written through the exp4_write program so that each 8-byte word changes
// in a single store and the key word last. exp_v4 (a hash map) stays the
// complete table: it is written first and read last, so the fast path never
// sees less than the truth:
//  - an entry that finds no free slot within EXP4_PROBES of its home spills:
//    it lives in exp_v4 only, and DP_CFG_EXP4_SPILL makes the program look
//    there after the slots;
//  - an entry whose value changes is hidden from the slots (the updating flag
//    on, so exp_v4 answers meanwhile), rewritten, and published again.
import { ipv4, type BpfMap, type Program } from '../ebpf/index.js';
import { DpConfigFlag, EXP4_BATCH, EXP4_PROBES, type ExposureValue } from './abi.js';

const EMPTY = 0;
const DELETED = 0xffffffff;

/** Same mixing as exp4_hash() in bpf/dataplane.bpf.c, on the address's bytes read little-endian. */
export function exp4Hash(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

const keyOf = (addr: string): number => ipv4Bytes(addr).readUInt32LE(0);
function ipv4Bytes(addr: string): Buffer {
  const b = Buffer.alloc(4);
  ipv4.encode(addr, b, 0);
  return b;
}

/** Slots for `maxEntries`: a power of two at least twice as large (load ≤ 0.5 keeps probe chains short). */
export function exp4Size(maxEntries: number): number {
  let n = 1024;
  while (n < maxEntries * 2) n *= 2;
  return n;
}

function words(addr: string, v: ExposureValue): { w0: bigint; w1: bigint } {
  const b = Buffer.alloc(16);
  ipv4.encode(addr, b, 0);
  const m = v.dmac.split(':').map((x) => parseInt(x, 16));
  for (let i = 0; i < 6; i++) b[4 + i] = m[i] as number;
  b.writeUInt16LE(v.vlan, 10);
  b[12] = v.port;
  b.writeUIntLE(v.id, 13, 3);
  return { w0: b.readBigUInt64LE(0), w1: b.readBigUInt64LE(8) };
}

interface Write {
  index: number;
  op: 1 | 2;
  w0: bigint;
  w1: bigint;
}

export class Exp4Table {
  private readonly mask: number;
  /** slot index -> key (u32 LE of the address), EMPTY or DELETED */
  private readonly slotKeys: Uint32Array;
  /** key -> slot index */
  private readonly where = new Map<number, number>();
  /** keys that live in exp_v4 only */
  private readonly spilled = new Set<number>();

  constructor(
    slots: BpfMap,
    private readonly pending: BpfMap,
    private readonly hash: BpfMap<string, ExposureValue>,
    private readonly config: BpfMap<number, { flags: number; pad: number }>,
    private readonly writer: Program,
  ) {
    this.mask = slots.info.maxEntries - 1;
    this.slotKeys = new Uint32Array(slots.info.maxEntries);
    // re-adopt: what the kernel holds is the truth
    for (const [k, v] of slots.dump() as [Buffer, Buffer][]) {
      const key = v.readUInt32LE(0);
      const index = k.readUInt32LE(0);
      this.slotKeys[index] = key;
      if (key !== EMPTY && key !== DELETED) this.where.set(key, index);
    }
    // entries of exp_v4 without a slot: true spills, or an update a crash cut short (its slot
    // hidden, the updating flag left on); place what fits, then the flags say what is left
    const homeless = hash.dump().filter(([addr]) => !this.where.has(keyOf(addr)));
    const writes = this.place(homeless);
    this.run(writes);
    this.setFlag(DpConfigFlag.exp4Spill, this.spilled.size > 0);
    this.setFlag(DpConfigFlag.exp4Updating, false);
  }

  /** Give each entry a free slot in its window (or spill it); returns the slot writes. */
  private place(entries: readonly (readonly [string, ExposureValue])[]): Write[] {
    const writes: Write[] = [];
    for (const [addr, value] of entries) {
      const key = keyOf(addr);
      if (key === EMPTY || key === DELETED) throw new Error(`${addr} cannot be an exact exposure`);
      this.spilled.delete(key);
      const idx = this.freeSlot(key);
      if (idx === undefined) {
        this.spilled.add(key);
        continue;
      }
      const { w0, w1 } = words(addr, value);
      writes.push({ index: idx, op: 1, w0, w1 });
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
    const cfg = this.config.lookup(0) ?? { flags: 0, pad: 0 };
    const flags = on ? cfg.flags | flag : cfg.flags & ~flag;
    if (flags !== cfg.flags) this.config.update(0, { flags, pad: 0 });
  }

  private run(writes: Write[]): void {
    for (let i = 0; i < writes.length; i += EXP4_BATCH) {
      const part = writes.slice(i, i + EXP4_BATCH);
      const batch = Buffer.alloc(8 + 24 * EXP4_BATCH);
      batch.writeUInt32LE(part.length, 0);
      part.forEach((w, j) => {
        const o = 8 + 24 * j;
        batch.writeUInt32LE(w.index, o);
        batch.writeUInt32LE(w.op, o + 4);
        batch.writeBigUInt64LE(w.w0, o + 8);
        batch.writeBigUInt64LE(w.w1, o + 16);
      });
      this.pending.update(Buffer.alloc(4), batch);
      const r = this.writer.testRun({ ctx: Buffer.alloc(8) });
      if (r.retval !== 0) throw new Error(`exp4_write refused a slot index (retval ${r.retval})`);
    }
  }

  private freeSlot(key: number): number | undefined {
    const home = exp4Hash(key);
    for (let i = 0; i < EXP4_PROBES; i++) {
      const idx = (home + i) & this.mask;
      const k = this.slotKeys[idx] as number;
      if (k === EMPTY || k === DELETED) return idx;
    }
    return undefined;
  }

  /** Create or replace entries (exp_v4 first, then the slots). */
  updateBatch(entries: readonly (readonly [string, ExposureValue])[]): void {
    if (entries.length === 0) return;
    this.hash.updateBatch(entries);
    const changed = entries.filter(([addr]) => this.where.has(keyOf(addr)));
    if (changed.length > 0) {
      // hide the slots being rewritten; exp_v4 (already updated) answers meanwhile
      this.setFlag(DpConfigFlag.exp4Updating, true);
      this.run(changed.map(([addr]) => ({ index: this.where.get(keyOf(addr)) as number, op: 2 as const, w0: BigInt(DELETED), w1: 0n })));
      for (const [addr] of changed) {
        const key = keyOf(addr);
        this.slotKeys[this.where.get(key) as number] = DELETED;
        this.where.delete(key);
      }
    }
    const writes = this.place(entries);
    if (this.spilled.size > 0) this.setFlag(DpConfigFlag.exp4Spill, true);
    this.run(writes);
    if (changed.length > 0) this.setFlag(DpConfigFlag.exp4Updating, false);
    if (this.spilled.size === 0) this.setFlag(DpConfigFlag.exp4Spill, false);
  }

  /** Remove entries (the slots first, then exp_v4). Returns how many existed. */
  deleteBatch(addrs: readonly string[]): number {
    const writes: Write[] = [];
    for (const addr of addrs) {
      const key = keyOf(addr);
      const idx = this.where.get(key);
      this.spilled.delete(key);
      if (idx === undefined) continue;
      writes.push({ index: idx, op: 2, w0: BigInt(DELETED), w1: 0n });
      this.slotKeys[idx] = DELETED;
      this.where.delete(key);
    }
    this.run(writes);
    const n = this.hash.deleteBatch(addrs as string[]);
    if (this.spilled.size === 0) this.setFlag(DpConfigFlag.exp4Spill, false);
    return n;
  }

  dump(): [string, ExposureValue][] {
    return this.hash.dump();
  }
}
