// Latency histograms. Two kinds:
// - OtelHistogram: the explicit buckets OpenTelemetry's HTTP and database
//   semantic conventions advise for durations in seconds, with sum and count,
//   for /metrics and OTLP.
// - LogHistogram: log-spaced buckets (8 per doubling, so a quantile read from
//   it is within ~4.5% of the true one) for p50/p95/p99 in `top`, the
//   baselines and the slowest fingerprints.

/** OpenTelemetry's advised boundaries for `http.server.request.duration` and friends (seconds). */
export const OTEL_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] as const;

export class OtelHistogram {
  /** per bucket (not cumulative), the last one is +Inf */
  readonly counts = new Float64Array(OTEL_DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < OTEL_DURATION_BUCKETS.length && seconds > (OTEL_DURATION_BUCKETS[i] as number)) i++;
    (this.counts as Float64Array)[i] = (this.counts[i] as number) + 1;
    this.sum += seconds;
    this.count++;
  }
}

const PER_DOUBLING = 8;
const MIN_MS = 0.001;

/** Sparse: a route's latencies fill a few dozen buckets, so memory follows what was seen. */
export class LogHistogram {
  private readonly counts = new Map<number, number>();
  count = 0;
  sum = 0;
  max = 0;

  static index(ms: number): number {
    if (!(ms > MIN_MS)) return 0;
    return Math.floor(Math.log2(ms / MIN_MS) * PER_DOUBLING) + 1;
  }

  /** the middle of bucket i, in ms (geometric) */
  static value(i: number): number {
    if (i === 0) return MIN_MS;
    return MIN_MS * 2 ** ((i - 0.5) / PER_DOUBLING);
  }

  observe(ms: number): void {
    const i = LogHistogram.index(ms);
    this.counts.set(i, (this.counts.get(i) ?? 0) + 1);
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  add(o: LogHistogram): void {
    for (const [i, n] of o.counts) this.counts.set(i, (this.counts.get(i) ?? 0) + n);
    this.count += o.count;
    this.sum += o.sum;
    if (o.max > this.max) this.max = o.max;
  }

  clear(): void {
    this.counts.clear();
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }

  /** q in [0, 1]; undefined when empty */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (const i of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(i) as number;
      if (seen >= rank) return Math.min(LogHistogram.value(i), this.max);
    }
    return this.max;
  }

  get mean(): number | undefined {
    return this.count ? this.sum / this.count : undefined;
  }
}

/**
 * A LogHistogram over a sliding time window: `slots` histograms of `slotMs`
 * each, the oldest cleared as time moves on. `window(ms)` merges the slots
 * that cover the last `ms`.
 */
export class WindowedHistogram {
  private readonly slots: LogHistogram[];
  private readonly starts: number[];

  constructor(
    private readonly slotMs: number,
    count: number,
  ) {
    this.slots = Array.from({ length: count }, () => new LogHistogram());
    this.starts = new Array(count).fill(-1);
  }

  observe(ms: number, at: number): void {
    const n = Math.floor(at / this.slotMs);
    const i = n % this.slots.length;
    if (this.starts[i] !== n) {
      (this.slots[i] as LogHistogram).clear();
      this.starts[i] = n;
    }
    (this.slots[i] as LogHistogram).observe(ms);
  }

  /** the samples of [now - fromMs, now - toMs) merged (slot granularity) */
  window(now: number, fromMs: number, toMs = 0): LogHistogram {
    const out = new LogHistogram();
    const hi = Math.floor((now - toMs) / this.slotMs);
    const lo = Math.floor((now - fromMs) / this.slotMs);
    for (let i = 0; i < this.slots.length; i++) {
      const n = this.starts[i] as number;
      if (n < 0) continue;
      if (toMs === 0 ? n >= lo && n <= hi : n >= lo && n < hi) out.add(this.slots[i] as LogHistogram);
    }
    return out;
  }
}
