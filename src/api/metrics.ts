// Prometheus exposition through prom-client: each module registers its own
// metrics (ModuleDefinition.metrics) on the daemon's registry; these helpers
// mirror figures the agent already counts, read when Prometheus scrapes.
import { Counter, Gauge, type Registry } from 'prom-client';

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
