// Decoded events fan out to consumers (the store, live streams, the
// analytics of later features) through one bounded queue each. Every queue
// counts what it drops. A consumer that must not lose events (the store)
// asks for back-pressure: while its queue is nearly full the tracer stops
// draining the ring buffer, so events wait in kernel memory instead, and
// only a full ring loses them (counted by the kernel). Consumers that can
// lose (a slow `stackbpf trace` client) drop their oldest events instead.
import type { TraceEvent } from './event.js';

export type FullPolicy = 'backpressure' | 'drop-oldest';

export interface ConsumerOptions {
  name: string;
  capacity: number;
  policy: FullPolicy;
  /** most events handed to the handler at once */
  batch?: number;
  handle(batch: TraceEvent[]): void | Promise<void>;
}

export interface ConsumerStats {
  name: string;
  policy: FullPolicy;
  queued: number;
  capacity: number;
  delivered: number;
  dropped: number;
  errors: number;
}

class Consumer {
  private buf: (TraceEvent | undefined)[];
  private head = 0;
  private len = 0;
  delivered = 0;
  dropped = 0;
  errors = 0;
  busy = false;
  closed = false;

  constructor(readonly opts: ConsumerOptions) {
    this.buf = new Array(opts.capacity);
  }

  get queued(): number {
    return this.len;
  }

  offer(ev: TraceEvent): void {
    const cap = this.opts.capacity;
    if (this.len === cap) {
      this.dropped++;
      if (this.opts.policy === 'backpressure') return; // the newest is lost; the tracer should have paused
      this.head = (this.head + 1) % cap;
      this.len--;
    }
    this.buf[(this.head + this.len) % cap] = ev;
    this.len++;
  }

  take(max: number): TraceEvent[] {
    const n = Math.min(max, this.len);
    const out = new Array<TraceEvent>(n);
    const cap = this.opts.capacity;
    for (let i = 0; i < n; i++) {
      const j = (this.head + i) % cap;
      out[i] = this.buf[j] as TraceEvent;
      this.buf[j] = undefined;
    }
    this.head = (this.head + n) % cap;
    this.len -= n;
    return out;
  }
}

export class EventBus {
  private readonly consumers = new Set<Consumer>();
  private scheduled = false;
  published = 0;
  /**
   * Events lost before they reached the bus (the tracer's ring buffer full, records it could not
   * decode): set by the producer, read by consumers that must account for every loss (the audit
   * trail records a gap).
   */
  upstreamLost: () => number = () => 0;

  subscribe(opts: ConsumerOptions): () => void {
    if (!Number.isInteger(opts.capacity) || opts.capacity < 1) throw new RangeError(`consumer ${opts.name}: capacity must be a positive integer`);
    const c = new Consumer(opts);
    this.consumers.add(c);
    return () => {
      c.closed = true;
      this.consumers.delete(c);
    };
  }

  publish(ev: TraceEvent): void {
    this.published++;
    for (const c of this.consumers) c.offer(ev);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** True while a back-pressure consumer's queue is above `fraction` of its capacity. */
  saturated(fraction = 0.8): boolean {
    for (const c of this.consumers) if (c.opts.policy === 'backpressure' && c.queued > c.opts.capacity * fraction) return true;
    return false;
  }

  /** Hand queued events to every consumer not busy with an earlier batch. */
  flush(): void {
    this.scheduled = false;
    let more = false;
    for (const c of this.consumers) {
      if (c.busy || c.queued === 0) continue;
      const batch = c.take(c.opts.batch ?? 4096);
      let r: void | Promise<void>;
      try {
        r = c.opts.handle(batch);
      } catch {
        c.errors++;
        c.dropped += batch.length; // the batch is lost: counted, never silent
        continue;
      }
      c.delivered += batch.length;
      if (r && typeof (r as Promise<void>).then === 'function') {
        c.busy = true;
        (r as Promise<void>).then(
          () => {
            c.busy = false;
            if (c.queued > 0 && !c.closed) this.schedule();
          },
          () => {
            c.busy = false;
            c.errors++;
            c.dropped += batch.length;
            c.delivered -= batch.length;
            if (c.queued > 0 && !c.closed) this.schedule();
          },
        );
      } else if (c.queued > 0) more = true;
    }
    if (more) this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Wait until every queue is empty (or the timeout passes). */
  async drain(timeoutMs = 10_000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      this.flush();
      let pending = 0;
      for (const c of this.consumers) pending += c.queued + (c.busy ? 1 : 0);
      if (pending === 0) return true;
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  stats(): ConsumerStats[] {
    return [...this.consumers].map((c) => ({
      name: c.opts.name,
      policy: c.opts.policy,
      queued: c.queued,
      capacity: c.opts.capacity,
      delivered: c.delivered,
      dropped: c.dropped,
      errors: c.errors,
    }));
  }
}
