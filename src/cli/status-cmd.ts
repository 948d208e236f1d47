// `stackbpf status`: ask a running agent, through its local API, what it is
// doing — attachments, exposures, the last reconcile, BGP, OVN — and print it
// for a person (or as JSON).
import { readFileSync } from 'node:fs';

/** api.listen's default (src/config.ts), not imported from there: the CLI does not load the schema to start */
export const DEFAULT_API_ADDRESS = 'unix:/run/stackbpf/api.sock';
import type { DaemonStatus } from '../status.js';
import { request } from 'node:http';

/** The API address: --api wins, then the configuration file's api.listen, then the default. */
export async function apiAddress(opts: { api?: string; config?: string }): Promise<string> {
  if (opts.api) return opts.api;
  // loaded only when asked: the configuration's schema is not what a quick CLI call should pay for
  if (opts.config) return (await import('../config.js')).loadConfig(opts.config).api.listen;
  return DEFAULT_API_ADDRESS;
}

export function getJson(address: string, path: string, timeoutMs = 5000): Promise<unknown> {
  return requestJson(address, 'GET', path, undefined, timeoutMs);
}

/** http.request options for an API address: unix:/path or host:port. */
/**
 * A bearer token for the API, when one is given: $STACKBPF_TOKEN_FILE (a file
 * holding the token) — never on the command line, where every user sees it.
 * On the unix socket root needs none: the agent knows who connected.
 */
export function authHeaders(): Record<string, string> {
  const file = process.env.STACKBPF_TOKEN_FILE;
  if (!file) return {};
  const token = readFileSync(file, 'utf8').trim();
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function apiTarget(address: string): { socketPath: string } | { host: string; port: number } {
  return address.startsWith('unix:')
    ? { socketPath: address.slice(5) }
    : { host: address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, ''), port: Number(address.slice(address.lastIndexOf(':') + 1)) };
}

/**
 * A 'data' handler for a JSON-lines stream: each complete, non-empty line
 * to `onLine`, the rest kept for the next chunk; `false` from onLine stops it.
 */
export function lineSplitter(onLine: (line: string) => boolean | undefined): (chunk: string) => void {
  let buf = '';
  let stopped = false;
  return (chunk) => {
    if (stopped) return;
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      if (onLine(line) === false) {
        stopped = true;
        return;
      }
    }
  };
}

/**
 * Follow a JSON-lines stream of the agent (live events, alert changes).
 * `onLine` returns false to stop. Resolves with the exit status: 0 when the
 * stream ended, was stopped or interrupted (SIGINT), 1 when the agent could
 * not be reached or refused.
 */
export function followLines(address: string, path: string, command: string, onLine: (line: string) => boolean | undefined): Promise<number> {
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      resolve(code);
    };
    const req = request({ ...apiTarget(address), path, method: 'GET', headers: authHeaders() }, (res) => {
      if ((res.statusCode ?? 0) >= 400) {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          process.stderr.write(`stackbpf ${command}: the agent answered ${res.statusCode}: ${text.trim()}\n`);
          finish(1);
        });
        return;
      }
      res.setEncoding('utf8');
      res.on(
        'data',
        lineSplitter((line) => {
          if (onLine(line) !== false) return true;
          req.destroy();
          finish(0);
          return false;
        }),
      );
      res.on('end', () => finish(0));
    });
    req.on('error', (err) => {
      if (done) return;
      process.stderr.write(`stackbpf ${command}: cannot reach the agent at ${address}: ${err.message} (is \`stackbpf agent\` running?)\n`);
      finish(1);
    });
    process.once('SIGINT', () => {
      req.destroy();
      finish(0);
    });
    req.end();
  });
}

/** One API request; rejects with the agent's own error message on 4xx/5xx. */
export function requestJson(address: string, method: string, path: string, body?: unknown, timeoutMs = 5000, raw = false): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(
      { ...apiTarget(address), path, method, timeout: timeoutMs, headers: { 'content-type': 'application/json', ...authHeaders() } },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 400) {
            let msg = text.slice(0, 300);
            try {
              msg = (JSON.parse(text) as { error?: string }).error ?? msg;
            } catch {
              /* not JSON */
            }
            reject(new Error(`${path} answered ${res.statusCode}: ${msg}`));
          } else if (raw) resolve(text);
          else
            try {
              resolve(JSON.parse(text));
            } catch {
              reject(new Error(`${path}: the answer is not JSON`));
            }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) =>
      reject(new Error(`cannot reach the agent at ${address}: ${err.message} (is \`stackbpf agent\` running? --api or --config say where it listens)`)),
    );
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

type Status = DaemonStatus;

function mb(n: number): string {
  return `${(n / 1048576).toFixed(1)} MB`;
}

export function formatStatus(s: Status): string {
  const out: string[] = [];
  const t = s.trace;
  if (t && 'attached' in t) {
    const lost = Object.entries(t.lost ?? {}).filter(([, n]) => n > 0);
    out.push(
      `tracing     ${t.attached.length} programs attached, ${t.monitoredProcesses} processes monitored: ${
        Object.entries(t.services ?? {})
          .map(([k, n]) => `${k} ${n}`)
          .join(', ') || 'no service found yet'
      }`,
    );
    out.push(
      `  events    ${Object.values(t.events ?? {}).reduce((a, b) => a + b, 0)} (${t.eventsPerSecond}/s): ${
        Object.entries(t.events ?? {})
          .map(([k, n]) => `${k} ${n}`)
          .join(', ') || 'none yet'
      }`,
    );
    out.push(
      `  lost      ${lost.length ? lost.map(([k, n]) => `${k} ${n}`).join(', ') : 'nothing'}; ring ${t.ring ? `${mb(t.ring.pendingBytes)} of ${mb(t.ring.size)} waiting, back-pressure pauses ${t.ring.paused}` : '-'}; ${t.sessions?.open ?? 0} connections tracked`,
    );
    // RabbitMQ: oslo.messaging messages decoded, and what could not be
    const a = t.sessions?.amqp;
    if (a?.messages)
      out.push(
        `  amqp      ${a.messages} messages, ${a.oslo} oslo.messaging; ids not seen ${a.ids_missing}, frame streams out of step ${a.desyncs}, kernel key scans ${t.keyScan?.scans ?? 0} (${t.keyScan?.misses ?? 0} found none)`,
      );
    // greenlet libraries: probed (requests sharing an eventlet thread told apart), or why not
    for (const g of t.greenlet ?? []) out.push(`  greenlet  ${g.path}: ${g.error ? `NOT FOLLOWED (${g.error})` : 'switches followed'}`);
  } else out.push(`tracing     ${t?.state ?? 'off'}${t && 'error' in t && t.error ? `: ${t.error}` : ''}`);
  const st = s.storage;
  if (st?.state === 'on')
    out.push(
      `storage     ${st.rows} events, ${mb(st.bytes ?? 0)} in ${st.segments} segments at ${st.path}${st.oldestTs ? `, oldest ${new Date(st.oldestTs).toISOString()}` : ''}${st.writeErrors ? `, WRITE ERRORS ${st.writeErrors}` : ''}`,
    );
  else out.push('storage     off');
  const an = s.analytics;
  if (an?.state === 'on')
    out.push(
      `analytics   ${an.active} alerts firing, ${an.raised} raised, ${an.resolved} resolved${an.suppressed ? `, ${an.suppressed} suppressed by the rate limit` : ''}; ${an.failedAuthentications} failed Keystone authentications seen`,
    );
  else if (an) out.push('analytics   off');
  if (an?.state === 'on' && an.enforcement && Object.keys(an.enforcement).length) {
    const rules = Object.entries(an.enforcement).map(
      ([svc, r]) =>
        `${svc} (${
          Object.entries(r)
            .map(([k, n]) => `${k} ${n}`)
            .join(', ') || 'nothing listed'
        })`,
    );
    out.push(
      `enforcing   ${rules.join('; ')}: SIGKILL from the tracepoints; BPF LSM deny ${an.lsmDeny?.available ? 'available' : `unavailable (${an.lsmDeny?.detail ?? 'not probed'})`}`,
    );
  }
  const ac = s.accounting;
  if (ac?.state === 'on') {
    const problems = [
      ac.domainErrors.length ? `${ac.domainErrors.length} unreadable domain files (${ac.domainErrors.map((e) => e.error).join('; ')})` : '',
      ac.orphanTaps.length ? `taps with no domain: ${ac.orphanTaps.join(', ')}` : '',
      ac.tapErrors.length ? `taps not counted: ${ac.tapErrors.join('; ')}` : '',
      ac.regressions ? `${ac.regressions} regressions` : '',
      ac.kernelLost.tapUnknown ? `${ac.kernelLost.tapUnknown} frames on uncounted taps` : '',
      ac.kernelLost.disk ? `${ac.kernelLost.disk} disk requests not tracked` : '',
      ac.lastError ? `last error: ${ac.lastError}` : '',
    ].filter(Boolean);
    const pub = ac.publish
      ? `; bus ${ac.publish.url} ${ac.publish.connected ? 'connected' : 'DISCONNECTED'}, ${ac.publish.published} published, ${ac.publish.queued} queued, ${ac.publish.dropped} dropped`
      : '';
    out.push(
      `accounting  ${ac.instances} instances, ${ac.taps} taps, ${ac.services} services; reading ${ac.lastReadingMs.toFixed(1)} ms; ${ac.store.rows} rows${pub}${problems.length ? `; ${problems.join('; ')}` : ''}`,
    );
  } else if (ac) out.push(`accounting  ${ac.state}${'error' in ac && ac.error ? `: ${ac.error}` : ''}`);
  const pf = s.performance;
  if (pf?.state === 'on') {
    const otlp = pf.otlp
      ? `; OTLP ${pf.otlp.endpoint}: ${pf.otlp.exported} exports, ${pf.otlp.failed} failed${pf.otlp.lastError ? ` (${pf.otlp.lastError})` : ''}`
      : '';
    const lost = [
      pf.pending_dropped ? `${pf.pending_dropped} requests not explained (flood)` : '',
      pf.children_dropped ? `${pf.children_dropped} statements/calls dropped` : '',
      pf.route_overflow ? `${pf.route_overflow} requests under {other} routes` : '',
    ].filter(Boolean);
    out.push(
      `performance ${pf.explained} requests explained, ${pf.stitched} calls stitched, ${pf.routes} routes; ${pf.findings_open} open findings${otlp}${lost.length ? `; ${lost.join('; ')}` : ''}`,
    );
  } else if (pf) out.push(`performance ${pf.state}${'error' in pf && pf.error ? `: ${pf.error}` : ''}`);
  if (s.api) {
    const refused = Object.entries(s.api.refused).filter(([, n]) => n > 0);
    out.push(
      `api         ${s.api.listen}; ${s.api.changes} changes made through it; refused ${refused.length ? refused.map(([k, n]) => `${k} ${n}`).join(', ') : 'nothing'}`,
    );
  }
  if (s.pipeline) {
    out.push(
      `pipeline    ${s.pipeline.published} published; ${s.pipeline.consumers.map((c) => `${c.name} ${c.queued}/${c.capacity} queued, ${c.dropped} dropped`).join('; ')}${s.pipeline.droppedByClosedStreams ? `; closed streams dropped ${s.pipeline.droppedByClosedStreams}` : ''}`,
    );
  }
  if (s.dataplane === 'off') {
    out.push('dataplane   off (no dataplane.provider_interfaces)');
    return out.join('\n');
  }
  out.push(`exposures   ${s.exposures} installed`);
  out.push(`attached    ${(s.attachments ?? []).map((a) => `${a.hook} on ${a.ifname}`).join(', ') || 'nothing'}`);
  const lr = s.lastReconcile;
  out.push(
    `reconcile   ${
      lr
        ? `${lr.at} ${
            lr.error
              ? `FAILED: ${lr.error}`
              : Object.entries(lr.result ?? {})
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ')
          }`
        : 'not yet'
    }`,
  );
  if (s.bgp)
    out.push(
      `bgp         ${s.bgp.configured ? 'configured' : 'NOT configured'}, ${s.bgp.announced} announced${s.bgp.lastError ? `, last error: ${s.bgp.lastError}` : ''}`,
    );
  else out.push('bgp         off (no bgp: section)');
  const o = s.ovn;
  if (o) {
    out.push(
      `ovn         ${o.mode.toUpperCase()} mode, ${o.ready ? 'ready' : 'NOT ready (nothing is withdrawn until it is)'}, ${o.exposures} exposures, chassis ${o.chassis.join(' / ') || '(unknown)'}, bridges ${
        Object.entries(o.bridgeMappings)
          .map(([n, b]) => `${n}:${b}`)
          .join(',') || '(none)'
      }`,
    );
    out.push(
      `  database  ${o.ovn.state} ${o.ovn.remote ?? ''} (${o.ovn.method ?? '-'}), full syncs ${o.ovn.fullSyncs}, resumed ${o.ovn.resumed}, disconnects ${o.ovn.disconnects}, malformed ${o.ovn.malformed}${o.ovn.lastError ? `, last error: ${o.ovn.lastError}` : ''}`,
    );
    if (o.ovs) out.push(`  local ovs ${o.ovs.state} ${o.ovs.remote ?? ''}`);
    out.push(
      `  rows      ${Object.entries(o.ovn.rows)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ')}; last recompute ${o.lastRecomputeMs.toFixed(1)} ms`,
    );
    for (const p of o.pending.slice(0, 10)) out.push(`  pending   ${p.owner} ${p.prefix}: ${p.why}`);
    for (const c of o.conflicts.slice(0, 10)) out.push(`  conflict  ${c.owner} ${c.prefix}: ${c.why}`);
  } else out.push('ovn         off (no ovn: section)');
  const v = Object.entries(s.verdicts ?? {})
    .filter(([, c]) => c.packets !== '0')
    .map(([k, c]) => `${k} ${c.packets}`);
  out.push(`xdp         ${v.join(', ') || 'no packets yet'}`);
  const blocks = s.blocks ?? [];
  out.push(`blocks      ${blocks.length ? `${blocks.length} source(s) dropped at XDP` : 'none'}`);
  for (const b of blocks.slice(0, 10))
    out.push(`  ${b.prefix.padEnd(20)} ${b.packets} packets dropped, ${b.expires ? `until ${b.expires}` : 'until removed'}: ${b.reason}`);
  return out.join('\n');
}

export async function runStatus(opts: { api?: string; config?: string; json?: boolean }): Promise<number> {
  let status: unknown;
  try {
    status = await getJson(await apiAddress(opts), '/v1/status');
  } catch (err) {
    process.stderr.write(`stackbpf status: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(opts.json ? `${JSON.stringify(status)}\n` : `${formatStatus(status as Status)}\n`);
  return 0;
}
