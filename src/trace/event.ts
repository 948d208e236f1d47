// The events the tracer produces, after decoding, enrichment and redaction.
// This is what is queued, stored, streamed and printed; nothing secret may
// reach it (see ./redact.ts).

export const EVENT_TYPES = [
  'process.exec',
  'process.fork',
  'process.exit',
  'file.open',
  'file.write',
  'file.unlink',
  'file.rename',
  'net.connect',
  'net.accept',
  'net.close',
  'http.request',
  'sql.login',
  'sql.query',
  'response.kill',
  'response.block',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface TraceEvent {
  /** wall-clock time, ms since the epoch (µs precision) */
  ts: number;
  type: EventType;
  /** the process's service ('' when it is not a known one) */
  service: string;
  instance?: string;
  pid: number;
  tid: number;
  ppid: number;
  uid: number;
  comm: string;
  /** process-tree context: the parent as the tracer knows it */
  parent?: { pid: number; comm: string; service: string };
  /** type-specific fields */
  data: Record<string, unknown>;
}

/** Filters shared by the live stream, the store query and the CLI. */
export interface EventFilter {
  service?: string;
  type?: string; // exact type, or a family prefix like "http" / "file."
  pid?: number;
  pathPrefix?: string;
}

export function eventPath(ev: TraceEvent): string | undefined {
  const d = ev.data;
  return (d.path as string | undefined) ?? (d.filename as string | undefined);
}

export function matches(ev: TraceEvent, f: EventFilter): boolean {
  if (f.service !== undefined && ev.service !== f.service) return false;
  if (f.pid !== undefined && ev.pid !== f.pid && ev.ppid !== f.pid) return false;
  if (f.type !== undefined && ev.type !== f.type && !ev.type.startsWith(f.type.endsWith('.') ? f.type : `${f.type}.`)) return false;
  if (f.pathPrefix !== undefined) {
    const p = eventPath(ev);
    if (p === undefined || !p.startsWith(f.pathPrefix)) return false;
  }
  return true;
}
