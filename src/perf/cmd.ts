// `stackbpf top`, `stackbpf why`, `stackbpf slow`: the performance module's
// API (GET /v1/requests...) as tables and trees.
import { apiAddress, getJson } from '../cli/status-cmd.js';
import { parseSince } from '../cli/trace-cmd.js';
import type { Call, Cause, Explained, Finding } from './engine.js';

interface Common {
  api?: string;
  config?: string;
  json?: boolean;
}

type TopRow = { service: string; route: string; rate: number; errors: number; p50_ms?: number; p99_ms?: number; sql_per_request: number };

const ms = (v: number | undefined): string => (v === undefined ? '-' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);

function positive(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: expected a positive number, got "${v}"`);
  return n;
}

export function formatTop(rows: TopRow[], width = 120): string {
  const routeW = Math.max(20, Math.min(60, width - 70));
  const lines = [
    `${'SERVICE'.padEnd(16)} ${'ROUTE'.padEnd(routeW)} ${'REQ/S'.padStart(7)} ${'ERR'.padStart(5)} ${'P50'.padStart(10)} ${'P99'.padStart(10)} ${'SQL/REQ'.padStart(8)}`,
  ];
  for (const r of rows) {
    const route = r.route.length > routeW ? `${r.route.slice(0, routeW - 1)}…` : r.route;
    lines.push(
      `${r.service.slice(0, 16).padEnd(16)} ${route.padEnd(routeW)} ${r.rate.toFixed(2).padStart(7)} ${String(r.errors).padStart(5)} ${ms(r.p50_ms).padStart(10)} ${ms(r.p99_ms).padStart(10)} ${r.sql_per_request.toFixed(1).padStart(8)}`,
    );
  }
  if (rows.length === 0) lines.push('no requests in the window');
  return `${lines.join('\n')}\n`;
}

export async function runTop(o: Common & { window?: string; interval?: string; once?: boolean; service?: string }): Promise<number> {
  let address: string;
  let windowS: number;
  let intervalS: number;
  try {
    windowS = positive(o.window, 'window', 60);
    intervalS = positive(o.interval, 'interval', 2);
    address = await apiAddress(o);
  } catch (err) {
    process.stderr.write(`stackbpf top: ${(err as Error).message}\n`);
    return 2;
  }
  const once = o.once || o.json || !process.stdout.isTTY;
  for (;;) {
    try {
      let rows = (await getJson(address, `/v1/requests/top?window=${windowS}`)) as TopRow[];
      if (o.service) rows = rows.filter((r) => r.service === o.service);
      if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
      else {
        if (!once) process.stdout.write('\x1b[H\x1b[2J');
        if (!once) process.stdout.write(`stackbpf top — last ${windowS} s, every ${intervalS} s (Ctrl-C to stop)\n\n`);
        process.stdout.write(formatTop(rows, process.stdout.columns ?? 120));
      }
    } catch (err) {
      process.stderr.write(`stackbpf top: ${(err as Error).message}\n`);
      return 1;
    }
    if (once) return 0;
    await new Promise((r) => setTimeout(r, intervalS * 1000));
  }
}

type Tree = Explained & { children: Tree[] };

function causeLine(c: Cause, indent: string): string[] {
  const out = [`${indent}cause: ${c.component} — ${c.detail} (${Math.round(c.share * 100)}% of the request)`];
  if (c.via) out.push(...causeLine(c.via, `${indent}  in ${c.via.service} (${c.via.request}): `.replace(/: $/, ' ')));
  return out;
}

export function formatTree(t: Tree, indent = ''): string[] {
  const who = [t.user ? `user ${t.user}` : '', t.project ? `project ${t.project}` : ''].filter(Boolean).join(', ');
  const out = [`${indent}${t.service} ${t.method} ${t.route}  → ${t.status ?? 'unanswered'}  ${ms(t.duration_ms)}  [${t.key}]${who ? `  ${who}` : ''}`];
  const i2 = `${indent}  `;
  const parts = [
    `SQL ${ms(t.sql.total_ms)} (${t.sql.count} statements)`,
    `calls ${ms(t.calls.reduce((a, c) => a + c.ms, 0))} (${t.calls.length})`,
    t.cpu_ms !== undefined ? `on CPU ${ms(t.cpu_ms)}` : '',
    t.runq_ms !== undefined ? `waiting for a CPU ${ms(t.runq_ms)}` : '',
    t.blocked_ms !== undefined ? `blocked ${ms(t.blocked_ms)}` : '',
  ].filter(Boolean);
  out.push(`${i2}${parts.join(' · ')}${t.shared_thread ? '  (another request shared the thread: shares may include it)' : ''}`);
  if (t.queued_ms !== undefined) out.push(`${i2}before it: ${ms(t.queued_ms)} accepted but unread, waiting for a free greenthread of the server's pool`);
  if (t.sql.slowest) out.push(`${i2}slowest SQL ${ms(t.sql.slowest.ms)}: ${t.sql.slowest.fingerprint}`);
  if (t.sql.repeated && t.sql.repeated.count > 2)
    out.push(`${i2}repeated ${t.sql.repeated.count}× (${ms(t.sql.repeated.total_ms)}): ${t.sql.repeated.fingerprint}`);
  for (const c of t.calls as Call[]) {
    const child = t.children.find((x) => x.key === c.child);
    const q = c.queue_ms !== undefined ? `, reached its worker after ${ms(c.queue_ms)}` : '';
    const how = c.kind === 'amqp' ? (c.cast ? ' (cast, not waited for)' : ' (RPC call)') : '';
    out.push(
      `${i2}→ ${c.peer_service ?? c.peer} ${c.method} ${c.route ?? ''} ${c.cast ? '' : (c.status ?? 'unanswered')} ${ms(c.ms)} at +${ms(c.offset_ms)}${q}${how}`.replace(
        / {2,}/g,
        ' ',
      ),
    );
    if (child) out.push(...formatTree(child, `${i2}    `));
  }
  out.push(...causeLine(t.cause, i2));
  return out;
}

export async function runWhy(o: Common, positionals: string[]): Promise<number> {
  const id = positionals[0];
  if (!id || positionals.length > 1) {
    process.stderr.write('stackbpf why: expected one request id (X-OpenStack-Request-ID, or a key from `stackbpf slow`)\n');
    return 2;
  }
  let address: string;
  try {
    address = await apiAddress(o);
  } catch (err) {
    process.stderr.write(`stackbpf why: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const t = (await getJson(address, `/v1/requests/${encodeURIComponent(id)}`)) as Tree;
    if (o.json) {
      process.stdout.write(`${JSON.stringify(t)}\n`);
      return 0;
    }
    const lines = formatTree(t);
    if (t.findings.length) {
      const fs = (await getJson(address, '/v1/requests/findings')) as Finding[];
      for (const k of t.findings) {
        const f = fs.find((x) => x.key === k);
        if (f) lines.push(`  finding: ${f.kind} — ${f.detail}`);
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`stackbpf why: ${(err as Error).message}\n`);
    return 1;
  }
}

export async function runSlow(o: Common & { service?: string; since?: string; 'min-ms'?: string; limit?: string }): Promise<number> {
  const q = new URLSearchParams();
  let address: string;
  try {
    q.set('since', String(parseSince(o.since ?? '10m')));
    if (o.service) q.set('service', o.service);
    if (o['min-ms'] !== undefined) q.set('min_ms', String(positive(o['min-ms'], 'min-ms', 0)));
    q.set('limit', String(positive(o.limit, 'limit', 20)));
    address = await apiAddress(o);
  } catch (err) {
    process.stderr.write(`stackbpf slow: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const requests = (await getJson(address, `/v1/requests?${q}`)) as Explained[];
    const findings = (
      (await getJson(address, `/v1/requests/findings?open=true${o.service ? `&service=${encodeURIComponent(o.service)}` : ''}`)) as Finding[]
    ).filter((f) => f.open);
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ requests, findings })}\n`);
      return 0;
    }
    if (!requests.length) process.stdout.write('no slow requests in the window\n');
    for (const r of requests)
      process.stdout.write(
        `${ms(r.duration_ms).padStart(10)}  ${r.service} ${r.method} ${r.route} → ${r.status ?? 'unanswered'}  [${r.key}]\n            ${r.cause.component}: ${r.cause.detail}\n`,
      );
    if (findings.length) {
      process.stdout.write('\nopen findings:\n');
      for (const f of findings)
        process.stdout.write(`  ${f.kind.padEnd(17)} ${f.detail}${f.evidence.length ? `  (e.g. ${f.evidence.slice(-3).join(', ')})` : ''}\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`stackbpf slow: ${(err as Error).message}\n`);
    return 1;
  }
}
