// `stackbpf trace`: the running agent's events, live (GET /v1/events/stream)
// or from its store (GET /v1/events with --since), filtered, as a table for
// people or JSON lines for tools.
import type { TraceEvent } from '../trace/event.js';
import { apiAddress, followLines, getJson } from './status-cmd.js';

export interface TraceOptions {
  api?: string;
  config?: string;
  service?: string;
  type?: string;
  pid?: string;
  path?: string;
  since?: string;
  limit?: string;
  json?: boolean;
  count?: string;
}

/** "90s", "10m", "2h", "1d" or an ISO date → ms since the epoch. */
export function parseSince(v: string, now = Date.now()): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(v);
  if (m) return now - Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new Error(`--since: expected a duration like 10m / 2h / 1d or a date, got "${v}"`);
  return t;
}

function summary(e: TraceEvent): string {
  const { type, data: d } = e;
  switch (type) {
    case 'process.exec':
      return d.argv.join(' ');
    case 'process.fork':
      return `child ${d.child}`;
    case 'process.exit':
      return `exit ${d.exit_code}${d.signal ? ` signal ${d.signal}` : ''}`;
    case 'file.open':
    case 'file.write':
      return `${d.path} ${d.flags} ${d.error ?? `= ${d.result}`}`;
    case 'file.unlink':
      return `${d.path} ${d.error ?? `= ${d.result}`}`;
    case 'file.rename':
      return `${d.path} -> ${d.new_path} ${d.error ?? ''}`;
    case 'net.connect':
    case 'net.accept':
      return `${d.remote ?? d.path ?? d.family} ${d.error ?? ''}`;
    case 'net.close':
      return `${String(d.remote ?? '')} in ${d.bytes_in} out ${d.bytes_out} ${String(d.protocol ?? '')}`;
    case 'http.request':
      return `${d.method} ${d.path} ${d.status} ${d.latency_ms} ms${d.user ? ` user=${d.user}` : d.auth_user ? ` auth_user=${d.auth_user}` : ''}${d.project ? ` project=${d.project}` : ''}`;
    case 'sql.login':
      return `login ${d.db_user ?? ''}@${d.database ?? ''} ${d.result}`;
    case 'sql.query':
      return `${String(d.statement ?? d.command).slice(0, 100)} (${d.latency_ms} ms, ${d.result}${d.error_code ? ` ${d.error_code}` : ''})`;
    case 'rpc.call':
      if (d.protocol === 'amqp')
        return `amqp ${d.role} ${d.kind ?? ''} ${d.target ?? ''} ${d.method}${d.kind === 'cast' ? '' : ` (${d.latency_ms} ms${d.failed ? ', failed' : ''})`}`;
      return `${d.protocol} ${d.method} ${d.target ?? ''}${d.tables?.length ? ` ${d.tables.join(',')}` : ''} (${d.latency_ms} ms)`;
  }
  return JSON.stringify(d);
}

export function formatRow(e: TraceEvent): string {
  const t = new Date(e.ts).toISOString().slice(11, 23);
  return `${t} ${(e.service || '-').padEnd(16)} ${String(e.pid).padStart(7)} ${e.type.padEnd(13)} ${summary(e)}`;
}

function query(o: TraceOptions): string {
  const q = new URLSearchParams();
  if (o.service) q.set('service', o.service);
  if (o.type) q.set('type', o.type);
  if (o.pid) q.set('pid', o.pid);
  if (o.path) q.set('path', o.path);
  return q.toString();
}

export async function runTrace(o: TraceOptions): Promise<number> {
  let address: string;
  try {
    address = await apiAddress(o);
  } catch (err) {
    process.stderr.write(`stackbpf trace: ${(err as Error).message}\n`);
    return 2;
  }
  const print = (e: TraceEvent): void => {
    process.stdout.write(o.json ? `${JSON.stringify(e)}\n` : `${formatRow(e)}\n`);
  };
  if (o.pid !== undefined && !/^\d+$/.test(o.pid)) {
    process.stderr.write(`stackbpf trace: --pid: expected a process id, got "${o.pid}"\n`);
    return 2;
  }
  if (o.since) {
    let since: number;
    try {
      since = parseSince(o.since);
    } catch (err) {
      process.stderr.write(`stackbpf trace: ${(err as Error).message}\n`);
      return 2;
    }
    try {
      const events = (await getJson(address, `/v1/events?${query(o)}&since=${since}&limit=${o.limit ?? 1000}`)) as TraceEvent[];
      for (const e of events.sort((a, b) => a.ts - b.ts)) print(e);
      return 0;
    } catch (err) {
      process.stderr.write(`stackbpf trace: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const max = o.count ? Number(o.count) : Infinity;
  if (!(max > 0)) {
    process.stderr.write(`stackbpf trace: --count: expected a positive number\n`);
    return 2;
  }
  if (!o.json) process.stdout.write(`${'TIME'.padEnd(12)} ${'SERVICE'.padEnd(16)} ${'PID'.padStart(7)} ${'TYPE'.padEnd(13)} WHAT\n`);
  let seen = 0;
  return followLines(address, `/v1/events/stream?${query(o)}`, 'trace', (line) => {
    print(JSON.parse(line) as TraceEvent);
    return ++seen < max;
  });
}
