// Per-exposure counters: one stripe per possible CPU in the memory-mappable
// array exp_stats (bpf/dataplane.bpf.c), counter (cpu, id) at
// cpu * stride + id, each a struct counter { u64 packets; u64 bytes }. Read and
// zeroed through the mapping: no syscall per exposure or CPU.
import { type BpfMap, MapMemory } from '../ebpf/index.js';

export interface CounterValue {
  packets: bigint;
  bytes: bigint;
}

const COUNTER_SIZE = 16;

export class StripedCounters {
  private readonly mem: MapMemory;

  constructor(
    map: BpfMap<unknown, unknown>,
    readonly stride: number,
    readonly cpus: number,
  ) {
    if (map.info.valueSize !== COUNTER_SIZE) throw new Error(`map ${map.name}: counters are ${COUNTER_SIZE} bytes, the map's values ${map.info.valueSize}`);
    if (map.info.maxEntries < stride * cpus) throw new Error(`map ${map.name}: ${map.info.maxEntries} entries, ${cpus} CPUs x ${stride} needed`);
    this.mem = new MapMemory(map, { writable: true });
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.stride) throw new RangeError(`exposure id ${id} outside 0..${this.stride - 1}`);
  }

  /** Packets and bytes of exposure `id`, summed over CPUs. */
  read(id: number): CounterValue {
    this.check(id);
    const b = this.mem.bytes;
    let packets = 0n;
    let bytes = 0n;
    for (let cpu = 0; cpu < this.cpus; cpu++) {
      const off = (cpu * this.stride + id) * COUNTER_SIZE;
      packets += b.readBigUInt64LE(off);
      bytes += b.readBigUInt64LE(off + 8);
    }
    return { packets, bytes };
  }

  /** Start exposure `id` from zero (before the id is published in a table). */
  zero(id: number): void {
    this.check(id);
    const b = this.mem.bytes;
    for (let cpu = 0; cpu < this.cpus; cpu++) {
      const off = (cpu * this.stride + id) * COUNTER_SIZE;
      b.fill(0, off, off + COUNTER_SIZE);
    }
  }

  close(): void {
    this.mem.close();
  }
}
