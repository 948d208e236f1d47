// The performance module's configuration section (docs/performance.md).
import { bool, defaultedSection, int, num, str } from '../schema.js';

export const performanceSection = defaultedSection({
  enabled: bool(true),
  settle_ms: int(200, 60_000, 1500).describe('a request is explained this long after it ended (its last SQL and calls are decoded by then)'),
  max_requests: int(100, 1_000_000, 20_000).describe('explained requests kept in memory for `why` and `slow` (the oldest go first, counted)'),
  slow_ms: num(0, 3_600_000, 500).describe('`stackbpf slow` lists requests at least this long unless told otherwise'),
  route_values: int(2, 100_000, 50).describe('distinct words one path position may take before it is a parameter'),
  max_routes: int(10, 100_000, 500).describe('routes per service; more are counted under {other}'),
  max_fingerprints: int(10, 100_000, 500).describe('SQL fingerprints per service with metrics of their own; more are counted under "other"'),
  n_plus_one: int(2, 100_000, 25).describe('one fingerprint this many times in one request (pool pings excepted) is an N+1 finding'),
  baseline: defaultedSection({
    learn_seconds: int(10, 86400, 600).describe('a baseline is the p95 of this much history before the recent window'),
    recent_seconds: int(1, 3600, 10).describe('the recent window compared with the baseline'),
    min_samples: int(1, 100_000, 5).describe('samples needed in the recent window (and 4× as many in the baseline) before a finding'),
    factor: num(1, 1000, 2).describe('recent p95 beyond baseline × factor …'),
    min_delta_ms: num(0, 3_600_000, 25).describe('… and beyond it by at least this much'),
  }),
  otlp: defaultedSection({
    endpoint: str().optional().describe('OTLP/HTTP metrics endpoint (e.g. http://127.0.0.1:4318/v1/metrics); off when unset'),
    interval_seconds: int(1, 3600, 15).describe('how often metrics are exported'),
  }),
}).describe('request latency, breakdown and findings from the traced events (docs/performance.md)');
