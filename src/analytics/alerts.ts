// Alerts: what a detector raises, de-duplicated and rate-limited, stored
// and streamed. An alert is keyed by rule + subject (e.g. the source
// address of a brute force): while it fires, further hits update it (count,
// last seen, a bounded list of evidence) instead of raising new ones; a
// detector resolves it when the behaviour stops.
import { randomUUID } from 'node:crypto';
import type { TraceEvent } from '../trace/event.js';
import { alertRule, type RuleId } from './rules.js';

export type Severity = 'low' | 'medium' | 'high' | 'critical';

export interface Evidence {
  ts: number;
  type: string;
  pid: number;
  service: string;
  summary: string;
}

export interface Alert {
  id: string;
  /** first seen (ms since the epoch) */
  ts: number;
  lastTs: number;
  rule: RuleId;
  severity: Severity;
  service: string;
  /** what the alert is about: a source address, a user, a process */
  subject: string;
  summary: string;
  /** MITRE ATT&CK technique, where one fits */
  mitre?: string;
  state: 'firing' | 'resolved';
  resolvedTs?: number;
  count: number;
  evidence: Evidence[];
  /** rule-specific figures (failures in the window, distinct users, ...) */
  details: Record<string, unknown>;
}

export type AlertSink = (alert: Alert, change: 'raised' | 'updated' | 'resolved') => void;

export const MAX_EVIDENCE = 20;

/** The host part of "addr:port" / "[v6]:port". */
export function hostOf(addr: string): string {
  if (addr.startsWith('[')) return addr.slice(1, addr.indexOf(']'));
  const i = addr.lastIndexOf(':');
  return i > 0 && addr.indexOf(':') === i ? addr.slice(0, i) : addr;
}

export function evidenceOf(ev: TraceEvent): Evidence {
  const { type, data: d } = ev;
  let summary: string;
  if (type === 'http.request')
    summary = `${d.method} ${d.path} ${d.status}${d.auth_user ? ` auth_user=${d.auth_user}` : ''}${d.remote ? ` from ${d.remote}` : ''}`;
  else if (type === 'sql.query') summary = String(d.statement ?? d.command).slice(0, 200);
  else if (type === 'process.exec') summary = (d.argv ?? []).join(' ').slice(0, 200);
  else summary = JSON.stringify(d).slice(0, 200);
  return { ts: ev.ts, type: ev.type, pid: ev.pid, service: ev.service, summary };
}

/** What a detector hands to raise(): severity and technique default to the rule's (src/analytics/rules.ts). */
export type RaiseInput = Pick<Alert, 'rule' | 'service' | 'subject' | 'summary' | 'evidence' | 'details' | 'ts'> & Partial<Pick<Alert, 'severity' | 'mitre'>>;

/** Keeps the firing alerts, de-duplicates, rate-limits raises per rule, hands changes to the sinks. */
export class AlertManager {
  private readonly firing = new Map<string, Alert>();
  private readonly sinks = new Set<AlertSink>();
  private readonly raisedAt = new Map<string, number[]>();
  counters = { raised: 0, updated: 0, resolved: 0, suppressed: 0 };

  constructor(private readonly opts: { maxRaisesPerRulePerMinute: number } = { maxRaisesPerRulePerMinute: 60 }) {}

  subscribe(sink: AlertSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  private notify(a: Alert, change: 'raised' | 'updated' | 'resolved'): void {
    for (const s of this.sinks) {
      try {
        s(a, change);
      } catch {
        /* a sink's failure is its own; the others still get the alert */
      }
    }
  }

  /** Raise, or update the alert already firing for this rule and subject. */
  raise(r: RaiseInput): Alert | undefined {
    const key = `${r.rule}\0${r.subject}`;
    const cur = this.firing.get(key);
    if (cur) {
      cur.lastTs = Math.max(cur.lastTs, r.ts);
      cur.count++;
      cur.details = r.details;
      cur.summary = r.summary;
      for (const e of r.evidence) if (!cur.evidence.some((x) => x.ts === e.ts && x.pid === e.pid && x.summary === e.summary)) cur.evidence.push(e);
      if (cur.evidence.length > MAX_EVIDENCE) cur.evidence.splice(0, cur.evidence.length - MAX_EVIDENCE);
      this.counters.updated++;
      this.notify(cur, 'updated');
      return cur;
    }
    const times = (this.raisedAt.get(r.rule) ?? []).filter((t) => r.ts - t < 60_000);
    if (times.length >= this.opts.maxRaisesPerRulePerMinute) {
      this.counters.suppressed++;
      this.raisedAt.set(r.rule, times);
      return undefined;
    }
    times.push(r.ts);
    this.raisedAt.set(r.rule, times);
    const a: Alert = {
      id: randomUUID(),
      ts: r.ts,
      lastTs: r.ts,
      rule: r.rule,
      severity: r.severity ?? alertRule(r.rule).severity,
      service: r.service,
      subject: r.subject,
      summary: r.summary,
      mitre: r.mitre ?? alertRule(r.rule).mitre,
      state: 'firing',
      count: 1,
      evidence: r.evidence.slice(-MAX_EVIDENCE),
      details: r.details,
    };
    this.firing.set(key, a);
    this.counters.raised++;
    this.notify(a, 'raised');
    return a;
  }

  resolve(rule: string, subject: string, ts: number): void {
    const key = `${rule}\0${subject}`;
    const a = this.firing.get(key);
    if (!a) return;
    this.firing.delete(key);
    a.state = 'resolved';
    a.resolvedTs = ts;
    this.counters.resolved++;
    this.notify(a, 'resolved');
  }

  /** Resolve alerts of these rules whose last hit is older than quietMs. */
  expire(rules: readonly RuleId[], quietMs: number, now: number): void {
    for (const a of [...this.firing.values()]) if (rules.includes(a.rule) && now - a.lastTs > quietMs) this.resolve(a.rule, a.subject, now);
  }

  active(): Alert[] {
    return [...this.firing.values()];
  }
}
