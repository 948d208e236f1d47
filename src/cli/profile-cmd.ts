// `stackbpf profile learn|show|diff|apply`: service profiles of a running
// agent (docs/analytics.md). Learning reads the agent's stored events.
import { apiAddress, requestJson } from './status-cmd.js';
import { parseSince } from './trace-cmd.js';

export interface ProfileOptions {
  api?: string;
  config?: string;
  since?: string;
  until?: string;
  service?: string;
  mode?: string;
  json?: boolean;
}

export async function runProfile(action: string | undefined, args: string[], o: ProfileOptions): Promise<number> {
  const fail = (msg: string, code = 1): number => {
    process.stderr.write(`stackbpf profile: ${msg}\n`);
    return code;
  };
  let address: string;
  try {
    address = await apiAddress(o);
  } catch (err) {
    return fail((err as Error).message, 2);
  }
  const out = (v: unknown): void => void process.stdout.write(typeof v === 'string' ? v : `${JSON.stringify(v, null, o.json ? undefined : 2)}\n`);
  try {
    switch (action) {
      case 'learn': {
        const body: Record<string, unknown> = { since: parseSince(o.since ?? '1h') };
        if (o.until) body.until = parseSince(o.until);
        if (o.service) body.services = o.service.split(',');
        if (o.mode) body.mode = o.mode;
        const r = (await requestJson(address, 'POST', '/v1/profiles/learn', body, 120_000)) as {
          learned: { service: string; mode: string; events: number; counts: Record<string, number> }[];
          files: string[];
          errors: string[];
        };
        if (o.json) out(r);
        else {
          for (const l of r.learned)
            out(
              `${l.service.padEnd(24)} ${l.mode.padEnd(8)} from ${l.events} events: ${Object.entries(l.counts)
                .map(([k, n]) => `${k} ${n}`)
                .join(', ')}\n`,
            );
          out(`written: ${r.files.join(', ')}\n`);
          for (const e of r.errors) out(`refused: ${e}\n`);
        }
        return 0;
      }
      case 'show': {
        if (!args[0]) {
          const r = (await requestJson(address, 'GET', '/v1/profiles')) as {
            profiles: { service: string; mode: string; learned?: { events: number; to: string } }[];
            errors: string[];
            dir: string;
          };
          if (o.json) out(r);
          else {
            out(`profiles in ${r.dir}\n`);
            for (const p of r.profiles)
              out(`${p.service.padEnd(24)} ${p.mode.padEnd(8)} ${p.learned ? `learned from ${p.learned.events} events up to ${p.learned.to}` : ''}\n`);
            for (const e of r.errors) out(`refused: ${e}\n`);
          }
          return 0;
        }
        out(
          (await requestJson(address, 'GET', `/v1/profiles/${encodeURIComponent(args[0])}${o.json ? '' : '?format=yaml'}`, undefined, 5000, !o.json)) as string,
        );
        return 0;
      }
      case 'diff': {
        if (!args[0]) return fail('diff needs a service: stackbpf profile diff SERVICE [--since 10m]', 2);
        const q = new URLSearchParams({ since: String(parseSince(o.since ?? '10m')) });
        if (o.until) q.set('until', String(parseSince(o.until)));
        const r = (await requestJson(address, 'GET', `/v1/profiles/${encodeURIComponent(args[0])}/diff?${q}`, undefined, 60_000)) as {
          kind: string;
          value: string;
          count: number;
          first: number;
        }[];
        if (o.json) out(r);
        else if (r.length === 0) out(`${args[0]}: nothing outside its profile\n`);
        else for (const d of r) out(`${new Date(d.first).toISOString()} ${d.kind.padEnd(12)} x${String(d.count).padEnd(6)} ${d.value}\n`);
        return r.length === 0 ? 0 : 3;
      }
      case 'apply': {
        const r = (await requestJson(address, 'POST', '/v1/profiles/reload')) as { loaded: string[]; errors: string[] };
        if (o.json) out(r);
        else {
          out(`in force: ${r.loaded.join(', ') || 'none'}\n`);
          for (const e of r.errors) out(`refused: ${e}\n`);
        }
        return r.errors.length ? 1 : 0;
      }
      default:
        return fail(`unknown action "${action ?? ''}": learn, show, diff or apply`, 2);
    }
  } catch (err) {
    return fail((err as Error).message);
  }
}
