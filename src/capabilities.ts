// The narrow interfaces modules offer each other (ModuleContext.provide /
// need). A module sees another only through one of these; each names what
// the consumer may do, nothing more.
import type { Alert, AlertSink } from './analytics/alerts.js';
import type { ServiceProfile } from './analytics/profile.js';
import type { BlockRule, BlockRuleState } from './dataplane/blocklist.js';
import type { QueryOptions } from './store/store.js';
import type { TraceEvent } from './trace/event.js';
import type { KernelRules } from './trace/enforcement.js';

/** The event store (storage module): stored events and alerts, and tables of other modules. */
export interface EventStoreAccess {
  query(q: QueryOptions): TraceEvent[];
  each(q: { service?: string; since?: number; until?: number }): Iterable<TraceEvent>;
  saveAlert(a: Alert): void;
  alerts(q: { since?: number; rule?: string; state?: string; limit?: number }): unknown[];
  /** a module's own tables, created and migrated forward in order (versions kept per module) */
  migrateModule(module: string, steps: ((db: import('better-sqlite3').Database) => void)[]): import('better-sqlite3').Database;
}

/** Source prefixes dropped at XDP (exposure module: the blocklist lives in the data plane's maps). */
export interface SourceBlocker {
  add(rule: BlockRule): { id: number; prefix: string };
  remove(prefix: string): boolean;
  list(): BlockRuleState[];
}

/** Kill-on-violation rules in the tracer's kernel maps (tracing module). */
export interface KernelEnforcer {
  set(service: string, rules: KernelRules | undefined): void;
  services(): string[];
  summary(): Record<string, { exec?: number; files_deny?: number; peers?: number }>;
}

/** Alerts and profiles (analytics module). */
export interface AlertFeed {
  subscribe(sink: AlertSink): () => void;
  /** record a change made to an alert after it was raised (e.g. the response taken) */
  save(alert: Alert): void;
  profiles(): ServiceProfile[];
  /** called after the profile files were (re)loaded; returns errors to report with the reload */
  onProfilesLoaded(cb: () => string[]): void;
  /** analytics.bruteforce settings the response policy reads */
  bruteforceResponse(): { blockSeconds: number; trustedProxies: string[] };
  /** the unauthorized-access detectors' answer: block the source of the rules in ACCESS_SOURCE_RULES */
  accessResponse(): { blockSeconds: number; trustedProxies: string[] };
}

/** Looks at a request's target and body before the body is dropped (analytics: SQL injection). */
export type RequestInspector = (target: string, body: string, contentType: string) => unknown[];

/** The traced services' live processes (tracing module: identity from what a process cannot forge). */
export type ServiceProcesses = () => { pid: number; service: string }[];

export interface Capabilities {
  events: EventStoreAccess;
  blocker: SourceBlocker;
  enforcer: KernelEnforcer;
  alerts: AlertFeed;
  requestInspector: RequestInspector;
  serviceProcesses: ServiceProcesses;
}
