// `stackbpf alerts`: the running agent's alerts — stored ones (GET
// /v1/alerts), those firing now (--active), or changes as they happen
// (--follow, GET /v1/alerts/stream) — as a table or JSON lines.
import type { Alert } from '../analytics/alerts.js';
import { apiAddress, followLines, getJson } from './status-cmd.js';
import { parseSince } from './trace-cmd.js';

export interface AlertsOptions {
  api?: string;
  config?: string;
  since?: string;
  rule?: string;
  active?: boolean;
  follow?: boolean;
  json?: boolean;
  limit?: string;
}

export function formatAlert(a: Alert, change?: string): string {
  const t = new Date(a.lastTs).toISOString().replace('T', ' ').slice(0, 19);
  return `${t} ${(change ?? a.state).padEnd(9)} ${a.severity.padEnd(8)} ${a.rule.padEnd(28)} ${(a.service || '-').padEnd(12)} ${a.summary}${a.mitre ? ` [${a.mitre}]` : ''} (x${a.count})`;
}

export async function runAlerts(o: AlertsOptions): Promise<number> {
  let address: string;
  try {
    address = await apiAddress(o);
  } catch (err) {
    process.stderr.write(`stackbpf alerts: ${(err as Error).message}\n`);
    return 2;
  }
  if (!o.follow) {
    const q = new URLSearchParams();
    try {
      if (o.active) q.set('active', '1');
      if (o.since) q.set('since', String(parseSince(o.since)));
      if (o.rule) q.set('rule', o.rule);
      q.set('limit', o.limit ?? '100');
    } catch (err) {
      process.stderr.write(`stackbpf alerts: ${(err as Error).message}\n`);
      return 2;
    }
    try {
      const alerts = (await getJson(address, `/v1/alerts?${q}`)) as Alert[];
      for (const a of alerts.reverse()) process.stdout.write(o.json ? `${JSON.stringify(a)}\n` : `${formatAlert(a)}\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`stackbpf alerts: ${(err as Error).message}\n`);
      return 1;
    }
  }
  return followLines(address, '/v1/alerts/stream', 'alerts', (line) => {
    const m = JSON.parse(line) as { change: string; alert: Alert };
    if (o.rule && !m.alert.rule.startsWith(o.rule)) return undefined;
    process.stdout.write(o.json ? `${line}\n` : `${formatAlert(m.alert, m.change)}\n`);
    return undefined;
  });
}
