// What each project costs the control plane: per project and service, the
// API requests it made and what serving them cost there — the worker's CPU
// time while serving them, and the SQL statements they ran and their time.
//
// Attribution, from the tracer's events (its identity of each request's
// user and project, from the token):
// - A request is the interval [request, request + latency] on the worker
//   process that answered it (the http.request event, server side), and
//   belongs to the project of the token it carried (a request with none, or a
//   failed authentication, to "unauthenticated").
// - SQL: the statements the same worker process ran inside that interval.
// - CPU: the worker process's CPU over the interval, interpolated from the
//   kernel's per-process CPU read each second (the accounting iterator).
// - A worker that serves one request at a time (uwsgi, Keystone's and
//   Neutron's API under Apache or uwsgi) makes both exact up to the reading's
//   interpolation. An eventlet worker serves many at once: SQL and CPU inside
//   overlapping requests of one process are split evenly between them — an
//   approximation, said so here and in docs/accounting.md.
import type { TraceEvent } from '../trace/event.js';

interface Req {
  pid: number;
  service: string;
  project: string;
  start: number;
  end: number;
}

export interface ControlTotals {
  project: string;
  service: string;
  requests: number;
  cpuNs: number;
  sqlStatements: number;
  sqlNs: number;
}

const MAX_PENDING = 100_000;
const MAX_SQL_PER_PID = 20_000;
const SQL_KEEP_MS = 30_000;

export class ControlCost {
  private readonly pending: Req[] = [];
  private readonly sql = new Map<number, { ts: number; ms: number }[]>();
  private readonly totals = new Map<string, ControlTotals>();
  /** requests and statements dropped because a queue was full, counted */
  dropped = 0;

  constructor(
    /** the cumulative CPU of a process at a time (ns), from the readings; undefined when unknown */
    private readonly cpuAt: (pid: number, ts: number) => number | undefined,
    /** the totals a previous run stored, so a restart continues them */
    private readonly base: (key: string, meter: string) => number | undefined,
  ) {}

  onEvents(batch: TraceEvent[]): void {
    for (const e of batch) {
      if (e.type === 'http.request') {
        const d = e.data;
        if (d.role !== 'server') continue;
        if (this.pending.length >= MAX_PENDING) {
          this.dropped++;
          continue;
        }
        // by the project's id (names repeat across domains); a request no token vouches for
        // (a failed authentication, an anonymous version query) is nobody's
        const project = d.project_id ?? 'unauthenticated';
        // the event is stamped with the request's start
        this.pending.push({ pid: e.pid, service: e.service, project, start: e.ts, end: e.ts + (d.latency_ms ?? 0) });
      } else if (e.type === 'sql.query') {
        let l = this.sql.get(e.pid);
        if (!l) this.sql.set(e.pid, (l = []));
        if (l.length >= MAX_SQL_PER_PID) {
          l.shift();
          this.dropped++;
        }
        l.push({ ts: e.ts, ms: e.data.latency_ms });
      }
    }
  }

  /** Attribute the requests that ended before `upTo` (their SQL has arrived, a CPU reading follows them). */
  settle(upTo: number): void {
    const ready = this.pending.filter((r) => r.end <= upTo);
    if (!ready.length) {
      this.trim(upTo);
      return;
    }
    const keep = this.pending.filter((r) => r.end > upTo);
    this.pending.length = 0;
    this.pending.push(...keep);
    const byPid = new Map<number, Req[]>();
    for (const r of ready) {
      let l = byPid.get(r.pid);
      if (!l) byPid.set(r.pid, (l = []));
      l.push(r);
    }
    for (const [pid, reqs] of byPid) {
      const all = [...reqs, ...keep.filter((k) => k.pid === pid)];
      const sql = this.sql.get(pid) ?? [];
      for (const r of reqs) {
        const overlapping = Math.max(1, all.filter((o) => o.start < r.end && o.end > r.start).length);
        let n = 0;
        let ms = 0;
        for (const q of sql) {
          if (q.ts < r.start || q.ts > r.end) continue;
          const share = all.filter((o) => q.ts >= o.start && q.ts <= o.end).length || 1;
          n += 1 / share;
          ms += q.ms / share;
        }
        const c0 = this.cpuAt(pid, r.start);
        const c1 = this.cpuAt(pid, r.end);
        const cpu = c0 !== undefined && c1 !== undefined && c1 >= c0 ? (c1 - c0) / overlapping : 0;
        const t = this.total(r.project, r.service);
        t.requests++;
        t.cpuNs += cpu;
        t.sqlStatements += n;
        t.sqlNs += ms * 1e6;
      }
    }
    this.trim(upTo);
  }

  private trim(upTo: number): void {
    for (const [pid, l] of this.sql) {
      const i = l.findIndex((q) => q.ts >= upTo - SQL_KEEP_MS);
      if (i < 0) this.sql.delete(pid);
      else if (i > 0) l.splice(0, i);
    }
  }

  private total(project: string, service: string): ControlTotals {
    const key = `${project}:${service}`;
    let t = this.totals.get(key);
    if (!t) {
      t = {
        project,
        service,
        requests: this.base(key, 'api.requests') ?? 0,
        cpuNs: this.base(key, 'api.cpu') ?? 0,
        sqlStatements: this.base(key, 'api.sql.statements') ?? 0,
        sqlNs: this.base(key, 'api.sql.time') ?? 0,
      };
      this.totals.set(key, t);
    }
    return t;
  }

  list(): ControlTotals[] {
    return [...this.totals.values()];
  }

  pendingCount(): number {
    return this.pending.length;
  }
}
