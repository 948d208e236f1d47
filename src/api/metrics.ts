// Prometheus exposition through prom-client: each module registers its own
// metrics (ModuleDefinition.metrics) on the daemon's registry; these helpers
// mirror figures the agent already counts, read when Prometheus scrapes.
import { Counter, Gauge, type Registry } from 'prom-client';
import { OTEL_DURATION_BUCKETS, type OtelHistogram } from '../perf/hist.js';

type Samples = [Record<string, string>, number][];
type Read = () => number | Samples | undefined;

/** A metric whose samples are read at scrape time: a counter's are monotonic figures the agent keeps. */
function mirror(kind: 'counter' | 'gauge', registry: Registry, name: string, help: string, read: Read, labelNames: string[]): void {
  const set = (m: Counter | Gauge, labels: Record<string, string> | undefined, n: number): void => {
    const v = Number.isFinite(n) ? n : 0;
    if (m instanceof Counter) {
      if (labels) m.inc(labels, v);
      else m.inc(v);
    } else if (labels) m.set(labels, v);
    else m.set(v);
  };
  const opts = {
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: Counter | Gauge) {
      const v = read();
      if (v === undefined) return;
      this.reset();
      if (typeof v === 'number') set(this, undefined, v);
      else for (const [labels, n] of v) set(this, labels, n);
    },
  };
  if (kind === 'counter') new Counter(opts);
  else new Gauge(opts);
}

export function counterFrom(registry: Registry, name: string, help: string, read: Read, labelNames: string[] = []): void {
  mirror('counter', registry, name, help, read, labelNames);
}

export function gaugeFrom(registry: Registry, name: string, help: string, read: Read, labelNames: string[] = []): void {
  mirror('gauge', registry, name, help, read, labelNames);
}

/**
 * A histogram whose buckets the agent keeps (OtelHistogram: OpenTelemetry's
 * advised duration buckets), exposed as Prometheus' _bucket/_sum/_count.
 */
export function histogramFrom(
  registry: Registry,
  name: string,
  help: string,
  read: () => Iterable<{ labels: Record<string, string>; h: OtelHistogram }> | undefined,
): void {
  registry.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const { labels, h } of read() ?? []) {
        let cum = 0;
        OTEL_DURATION_BUCKETS.forEach((le, i) => {
          cum += h.counts[i] as number;
          values.push({ labels: { ...labels, le }, value: cum, metricName: `${name}_bucket` });
        });
        values.push({ labels: { ...labels, le: '+Inf' }, value: h.count, metricName: `${name}_bucket` });
        values.push({ labels, value: h.sum, metricName: `${name}_sum` });
        values.push({ labels, value: h.count, metricName: `${name}_count` });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  } as never);
}
