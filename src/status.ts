import type { CollectorStatus } from './accounting/collector.js';
import type { PublisherStatus } from './accounting/publisher.js';
// What `GET /v1/status` answers, `stackbpf status` prints and /metrics reads:
// one type, shared by the daemon, the API and the CLI. Each module fills its
// part (ModuleDefinition's instance status(), or offStatus() when it is off).
import type { Analytics } from './analytics/engine.js';
import type { ExposureStatus } from './exposure/controller.js';
import type { PerfStats } from './perf/engine.js';
import type { StoreStats } from './store/store.js';
import type { ConsumerStats } from './trace/bus.js';
import type { TracerStatus } from './trace/tracer.js';

export interface BlockStatus {
  prefix: string;
  reason: string;
  id: number;
  packets: string;
  bytes: string;
  expires: string | null;
}

export interface EnforcementStatus {
  enforcedInKernel: string[];
  enforcement: Record<string, { exec?: number; files_deny?: number; peers?: number }>;
  lsmDeny: { available: boolean; detail: string };
  enforcementErrors: string[];
}

export type AnalyticsStatus = ReturnType<Analytics['status']>;

export interface AccountingStatus extends CollectorStatus {
  state: 'on';
  instancesAccounted: { uuid: string; name: string; pid: number; project?: string; taps: string[]; disks: string[] }[];
  kernelLost: { tapUnknown: number; disk: number };
  /** the control plane's cost per project: requests waiting to be attributed, dropped (queues full) */
  controlPlane: { pending: number; dropped: number; projects: number };
  errors: number;
  lastError?: string;
  store: { rows: number; written: number; path: string };
  publish?: PublisherStatus;
}

export interface DaemonStatus extends Partial<ExposureStatus> {
  dataplane: 'on' | 'off';
  trace: TracerStatus | { state: 'off' | 'failed'; error?: string };
  storage: (StoreStats & { state: 'on' }) | { state: 'off' };
  analytics: (AnalyticsStatus & Partial<EnforcementStatus> & { state: 'on' }) | { state: 'off' };
  /** sources dropped at XDP: by an operator or a detector's response (with the data plane) */
  blocks?: BlockStatus[];
  pipeline: { published: number; consumers: ConsumerStats[]; droppedByClosedStreams: number };
  /** the API: where it listens, requests refused by reason, changes made through it */
  api?: { listen: string; refused: Record<string, number>; changes: number };
  /** resource accounting (accounting module) */
  accounting?: AccountingStatus | { state: 'off' | 'failed'; error?: string };
  /** request latency, breakdown and findings (performance module) */
  performance?:
    | (PerfStats & { state: 'on'; otlp?: { endpoint: string; exported: number; failed: number; lastError?: string } })
    | { state: 'off' | 'failed'; error?: string };
  /** the audit trail (audit module) */
  audit?: Record<string, unknown> | { state: 'off' | 'failed'; error?: string };
  /** every module, and whether it runs */
  modules: Record<string, 'on' | 'off' | 'failed'>;
  startedAt: string;
}
