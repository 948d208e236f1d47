// Prometheus exposition through prom-client: each module registers its own
// metrics (ModuleDefinition.metrics) on the daemon's registry; these helpers
// mirror figures the agent already counts, read when Prometheus scrapes.
import { Counter, Gauge, type Registry } from 'prom-client';

type Samples = [Record<string, string>, number][];

/** A counter whose value is a monotonic figure read at scrape time (one sample per label set). */
export function counterFrom(registry: Registry, name: string, help: string, read: () => number | Samples | undefined, labelNames: string[] = []): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      const v = read();
      if (v === undefined) return;
      this.reset();
      if (typeof v === 'number') this.inc(v);
      else for (const [labels, n] of v) this.inc(labels, Number.isFinite(n) ? n : 0);
    },
  });
}

/** A gauge read at scrape time. */
export function gaugeFrom(registry: Registry, name: string, help: string, read: () => number | Samples | undefined, labelNames: string[] = []): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      const v = read();
      if (v === undefined) return;
      this.reset();
      if (typeof v === 'number') this.set(v);
      else for (const [labels, n] of v) this.set(labels, Number.isFinite(n) ? n : 0);
    },
  });
}
