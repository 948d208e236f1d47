// `stackbpf usage`: GET /v1/usage of the running agent, as a table or JSON.
import { apiAddress, getJson } from '../cli/status-cmd.js';
import { parseSince } from '../cli/trace-cmd.js';
import type { UsageRow } from './store.js';

export interface UsageOptions {
  api?: string;
  config?: string;
  project?: string;
  instance?: string;
  service?: string;
  meter?: string;
  since?: string;
  by?: string;
  json?: boolean;
}

const human = (v: number, unit: string): string => {
  if (unit === 'B') {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = v;
    while (Math.abs(x) >= 1024 && i < u.length - 1) {
      x /= 1024;
      i++;
    }
    return `${i ? x.toFixed(1) : x} ${u[i]}`;
  }
  if (unit === 'ns') return v >= 1e9 ? `${(v / 1e9).toFixed(3)} s` : `${(v / 1e6).toFixed(3)} ms`;
  return `${Math.round(v * 1000) / 1000} ${unit}`;
};

export async function runUsage(o: UsageOptions): Promise<number> {
  const q = new URLSearchParams();
  let address: string;
  try {
    if (o.by && o.by !== 'meter' && o.by !== 'destination') throw new Error(`--by: expected meter or destination, got "${o.by}"`);
    for (const k of ['project', 'instance', 'service', 'meter', 'by'] as const) if (o[k]) q.set(k, o[k] as string);
    q.set('since', String(parseSince(o.since ?? '1h')));
    address = await apiAddress(o);
  } catch (err) {
    process.stderr.write(`stackbpf usage: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const body = await getJson(address, `/v1/usage?${q}`);
    if (o.json) {
      process.stdout.write(`${JSON.stringify(body)}\n`);
      return 0;
    }
    if (o.by === 'destination') {
      const d = body as Record<string, Record<string, { incoming: number; outgoing: number }>>;
      for (const [project, classes] of Object.entries(d)) {
        process.stdout.write(`${project}\n`);
        for (const [cls, v] of Object.entries(classes))
          process.stdout.write(`  ${cls.padEnd(12)} in ${human(v.incoming, 'B').padStart(12)}   out ${human(v.outgoing, 'B').padStart(12)}\n`);
      }
      return 0;
    }
    const rows = (body as UsageRow[]).filter((r) => !/\.(north_south|east_west|node|non_ip|before)$/.test(r.meter));
    if (!rows.length) {
      process.stdout.write('no usage recorded in the window\n');
      return 0;
    }
    process.stdout.write(`${'RESOURCE'.padEnd(64)} ${'METER'.padEnd(32)} ${'USED'.padStart(16)}  PROJECT\n`);
    for (const r of rows)
      process.stdout.write(`${r.resource_id.padEnd(64)} ${r.meter.padEnd(32)} ${human(r.volume, r.unit).padStart(16)}  ${r.project_id ?? r.service ?? '-'}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`stackbpf usage: ${(err as Error).message}\n`);
    return 1;
  }
}
