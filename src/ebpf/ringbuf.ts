// A zero-copy BPF ring buffer reader in pure JS over the mmapped ring.
//
// Layout (kernel/bpf/ringbuf.c): page 0 holds consumer_pos (we write it),
// page 1 producer_pos (the kernel writes it), then the data area mapped twice
// back to back so a record that wraps is still contiguous. Each record has an
// 8-byte header: u32 length with BUSY (bit 31) and DISCARD (bit 30) flags,
// u32 page offset; records are 8-byte aligned.
//
// Draining is bounded (records and milliseconds per tick) so the event loop
// is never held long; the wake-up is the ring fd's readiness on libuv's own
// poller (no thread, no per-event FFI call).
import { performance } from 'node:perf_hooks';
import { MapType } from './constants.js';
import { BpfError } from './errors.js';
import { type BpfMap, sumPerCpu } from './map.js';
import { mmapMap, PROT_READ, PROT_WRITE } from './memory.js';
import { c, type FdWatch, type Ptr, pollReadable, view } from './native.js';
import { u32 as u32Key, u64 } from './codec.js';

const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const LEN_MASK = 0x3fffffff;
const HDR = 8;

/** Called with the record's bytes at buf[offset .. offset+length): decode before returning. */
export type RecordHandler = (buf: Buffer, offset: number, length: number) => void;

export interface RingBufferOptions {
  /** Per-CPU array (key 0, u64) the kernel side bumps when a reserve fails. */
  lostCounter?: BpfMap;
  /** Most records handled per event-loop tick (default 16384). */
  maxRecordsPerTick?: number;
  /** Longest a tick may drain, ms (default 2). */
  maxTickMs?: number;
  /**
   * How the reader is woken:
   * - `adaptive` (default): in quiet periods it waits on the ring fd and
   *   handles the first record as soon as the kernel notifies (lowest
   *   latency); once wake-ups come back to back (a busy producer: the kernel
   *   notifies whenever the reader has caught up, one wake-up per record) it
   *   drains on a timer every `batchIntervalMs` instead, lagging on purpose
   *   so that the kernel stops notifying; the first empty ticks switch it back.
   * - `poll`: always wait on the fd.
   * - `{ intervalMs }`: always drain on a timer.
   */
  wake?: 'adaptive' | 'poll' | { intervalMs: number };
  /** Adaptive mode: timer period while busy, ms (default 5): the added latency under load. */
  batchIntervalMs?: number;
  /** A handler threw: the record is skipped and counted (default: ignore). */
  onError?: (err: unknown) => void;
}

export interface RingBufferStats {
  /** Records handed to the handler. */
  received: number;
  /** Records the producer discarded (bpf_ringbuf_discard). */
  discarded: number;
  /** Records the handler threw on. */
  handlerErrors: number;
  /** Events the kernel could not reserve room for (the lost counter), or null without one. */
  lost: bigint | null;
  /** Bytes waiting in the ring now. */
  pendingBytes: number;
  /** Size of the data area. */
  size: number;
  ticks: number;
  /** Current wake mode: waiting on the fd, or draining on a timer. */
  mode: 'poll' | 'timer' | 'stopped';
  /** Adaptive switches to timer mode so far. */
  batchSwitches: number;
}

export class RingBuffer {
  readonly size: number;
  readonly name: string;
  private readonly handler: RecordHandler;
  private readonly opts: Required<Omit<RingBufferOptions, 'lostCounter' | 'onError' | 'wake'>> & RingBufferOptions;
  private mode: 'poll' | 'timer' | 'stopped' = 'stopped';
  private lastWake = 0;
  private wakesInRow = 0;
  private quietTicks = 0;
  private batchSwitches = 0;
  private consumerPtr: Ptr;
  private producerPtr: Ptr;
  private readonly pageSize: number;
  private readonly consumerPos: BigUint64Array;
  private readonly producerPos: BigUint64Array;
  private readonly data: Buffer;
  private readonly header: Uint32Array;
  private cons: number;
  private poller: FdWatch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private counters = { received: 0, discarded: 0, handlerErrors: 0, ticks: 0 };
  private readonly fd: number;

  constructor(map: BpfMap, handler: RecordHandler, opts: RingBufferOptions = {}) {
    if (map.info.type !== MapType.ringbuf) {
      throw new BpfError(`map ${map.name} is a ${map.typeName} map, not a ring buffer`, { op: 'ring buffer', subject: map.name });
    }
    this.name = map.name;
    this.fd = map.fd;
    this.size = map.info.maxEntries;
    this.handler = handler;
    this.opts = { maxRecordsPerTick: 16384, maxTickMs: 2, batchIntervalMs: 5, ...opts };
    this.pageSize = c.getpagesize() as number;
    this.consumerPtr = this.mmap(this.pageSize, PROT_READ | PROT_WRITE, 0);
    try {
      this.producerPtr = this.mmap(this.pageSize + 2 * this.size, PROT_READ, this.pageSize);
    } catch (err) {
      c.munmap(this.consumerPtr, this.pageSize);
      throw err;
    }
    this.consumerPos = new BigUint64Array(view(this.consumerPtr, this.pageSize), 0, 1);
    const prodArea = view(this.producerPtr, this.pageSize + 2 * this.size);
    this.producerPos = new BigUint64Array(prodArea, 0, 1);
    this.data = Buffer.from(prodArea, this.pageSize, 2 * this.size);
    this.header = new Uint32Array(prodArea, this.pageSize, (2 * this.size) / 4);
    this.cons = Number(Atomics.load(this.consumerPos, 0));
  }

  private mmap(len: number, prot: number, offset: number): Ptr {
    return mmapMap(this.fd, len, prot, offset, { message: `cannot mmap ring buffer ${this.name}`, op: 'ring buffer mmap', subject: this.name });
  }

  /** Handle up to `max` committed records now; returns how many were handled. */
  drain(max = Number.MAX_SAFE_INTEGER): number {
    if (this.closed) return 0;
    const size = this.size;
    const header = this.header;
    const data = this.data;
    const handler = this.handler;
    let cons = this.cons;
    let handled = 0;
    let sinceStore = 0;
    let prod = Number(Atomics.load(this.producerPos, 0));
    let off = cons % size; // kept in [0, size): no division per record
    while (handled < max) {
      if (cons >= prod) {
        prod = Number(Atomics.load(this.producerPos, 0));
        if (cons >= prod) break;
      }
      const hdr = Atomics.load(header, off >>> 2);
      if (hdr & BUSY) break; // reserved, not committed yet: its commit will wake us
      const len = hdr & LEN_MASK;
      const step = (len + HDR + 7) & ~7;
      const at = off + HDR;
      cons += step;
      off += step;
      if (off >= size) off -= size;
      if (hdr & DISCARD) {
        this.counters.discarded++;
      } else {
        handled++;
        try {
          handler(data, at, len);
        } catch (err) {
          this.counters.handlerErrors++;
          this.opts.onError?.(err);
        }
      }
      // free space for the producer regularly, not only at the end of a batch
      if (++sinceStore === 256) {
        Atomics.store(this.consumerPos, 0, BigInt(cons));
        sinceStore = 0;
      }
    }
    if (cons !== this.cons) Atomics.store(this.consumerPos, 0, BigInt(cons));
    this.cons = cons;
    this.counters.received += handled;
    return handled;
  }

  /** One bounded tick: records and time both capped. Returns records handled. */
  private tick(): number {
    this.counters.ticks++;
    const deadline = performance.now() + this.opts.maxTickMs;
    let left = this.opts.maxRecordsPerTick;
    while (left > 0) {
      const n = this.drain(Math.min(left, 1024));
      left -= n;
      if (n < 1024 || performance.now() >= deadline) break;
    }
    return this.opts.maxRecordsPerTick - left;
  }

  private onPollWake(): void {
    this.tick();
    if ((this.opts.wake ?? 'adaptive') !== 'adaptive') return;
    const now = performance.now();
    this.wakesInRow = now - this.lastWake < 1 ? this.wakesInRow + 1 : 0;
    this.lastWake = now;
    if (this.wakesInRow >= 8) this.toTimer(this.opts.batchIntervalMs);
  }

  private onTimer(): void {
    this.timer = undefined;
    if (this.mode !== 'timer') return;
    const n = this.tick();
    if ((this.opts.wake ?? 'adaptive') === 'adaptive') {
      this.quietTicks = n === 0 ? this.quietTicks + 1 : 0;
      if (this.quietTicks >= 2) {
        this.toPoll();
        return;
      }
    }
    // behind: carry on in the next loop iteration instead of waiting a period
    const behind = this.pendingBytes() > 0 && n > 0;
    this.schedule(behind ? 0 : this.interval);
  }

  private interval = 5;
  private immediate: NodeJS.Immediate | undefined;

  private schedule(ms: number): void {
    if (ms === 0) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.onTimer();
      });
      if (this.unrefd) this.immediate.unref();
      return;
    }
    this.timer = setTimeout(() => this.onTimer(), ms);
    if (this.unrefd) this.timer.unref();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  private toPoll(): void {
    this.clearTimers();
    this.wakesInRow = 0;
    this.mode = 'poll';
    // level-triggered: while records remain, the next loop iteration calls again
    if (this.poller) this.poller.start();
    else this.poller = pollReadable(this.fd, () => this.onPollWake());
    if (this.unrefd) this.poller.unref();
  }

  private toTimer(intervalMs: number): void {
    this.poller?.stop();
    this.quietTicks = 0;
    this.mode = 'timer';
    if (this.opts.wake === undefined || this.opts.wake === 'adaptive') this.batchSwitches++;
    this.interval = Math.max(1, intervalMs);
    this.schedule(this.interval);
  }

  private unrefd = false;

  /** Start consuming on the event loop. */
  start(): this {
    if (this.closed) throw new BpfError(`ring buffer ${this.name} is closed`, { op: 'ring buffer' });
    if (this.mode !== 'stopped') return this;
    const wake = this.opts.wake ?? 'adaptive';
    if (typeof wake === 'object') this.toTimer(wake.intervalMs);
    else this.toPoll();
    return this;
  }

  /** Stop consuming (records stay in the ring). */
  stop(): void {
    this.poller?.close();
    this.poller = undefined;
    this.clearTimers();
    this.mode = 'stopped';
  }

  /** Let the process exit even while consuming. */
  unref(): this {
    this.unrefd = true;
    this.poller?.unref();
    this.timer?.unref();
    this.immediate?.unref();
    return this;
  }

  pendingBytes(): number {
    if (this.closed) return 0;
    return Number(Atomics.load(this.producerPos, 0)) - this.cons;
  }

  stats(): RingBufferStats {
    let lost: bigint | null = null;
    if (this.opts.lostCounter) {
      const m = this.opts.lostCounter.perCpu(u32Key, u64);
      lost = sumPerCpu(m.lookup(0) ?? []);
    }
    return { ...this.counters, lost, pendingBytes: this.pendingBytes(), size: this.size, mode: this.mode, batchSwitches: this.batchSwitches };
  }

  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    c.munmap(this.producerPtr, this.pageSize + 2 * this.size);
    c.munmap(this.consumerPtr, this.pageSize);
    this.producerPtr = null;
    this.consumerPtr = null;
  }
}
