// SQL-injection alerts: from requests whose values break out of a SQL
// context (found by the tracer's request inspection, ./sqli.ts) and from
// statements a service sent that carry injection structure.
import type { TraceEvent } from '../trace/event.js';
import { type AlertManager, evidenceOf, hostOf } from './alerts.js';
import type { ValueFinding } from './sqli.js';
import { inspectStatement } from './sqli.js';

export class SqliDetector {
  requests = 0;
  statements = 0;

  constructor(private readonly alerts: AlertManager) {}

  onEvent(ev: TraceEvent): void {
    if (ev.type === 'http.request' && Array.isArray(ev.data.sqli) && ev.data.role === 'server') {
      const found = ev.data.sqli as ValueFinding[];
      this.requests++;
      const src = hostOf(String(ev.data.remote ?? 'unknown'));
      this.alerts.raise({
        rule: 'sqli.request',
        service: ev.service,
        subject: src,
        summary: `SQL injection attempt against ${ev.service || 'a service'} from ${src}: ${found.map((f) => `${f.where} (${f.findings.join(', ')})`).join('; ')}`,
        evidence: [evidenceOf(ev)],
        details: { source: src, method: ev.data.method, path: ev.data.path, status: ev.data.status, values: found },
        ts: ev.ts,
      });
      return;
    }
    if (ev.type === 'sql.query' && typeof ev.data.statement === 'string') {
      const f = inspectStatement(ev.data.statement, ev.data.statement_truncated === true);
      if (f.length === 0) return;
      this.statements++;
      this.alerts.raise({
        rule: 'sqli.statement',
        service: ev.service,
        subject: `${ev.service}:${ev.pid}`,
        summary: `${ev.service || 'a process'} (pid ${ev.pid}) sent a statement with injection structure: ${f.join(', ')}`,
        evidence: [evidenceOf(ev)],
        details: { findings: f, statement: ev.data.statement, database: ev.data.database },
        ts: ev.ts,
      });
    }
  }
}
