// npm run bench -- audit [--json] [--rounds 5] [--verify-records 1000000] [--trials 5] [--no-services] [--no-tempest]
//
// The audit trail beside OpenStack's own, on one tempest identity run plus
// `openstack` client traffic against real Keystone (CADF notifications on,
// opt-outs cleared) and Neutron (keystonemiddleware's audit filter), both
// sending to RabbitMQ:
//   coverage        share of their audit events we also recorded (by request id;
//                   Keystone's deleted.* carry none: by verb, object and time)
//   field_agreement initiator user and project, action, outcome, target type
//   beyond          what we recorded that they did not, by kind; the injected
//                   out-of-band actions recorded
//   tamper          randomised tampering of the final log, each kind, caught by verify
//   crash_lost      acknowledged records missing after a SIGKILL under load
// and its cost on one core, interleaved rounds (median and spread):
//   records_per_s   events → CADF records → durable Merkle log, a checkpoint every second
//   verify_s        verifying a log of --verify-records records
//   bytes_per_record at rest (the real run's log, and the synthetic one)
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { apiEvent, type CadfEvent } from '../src/audit/cadf.js';
import { loadOrCreateKey, parseVerifierKey, verifierKey } from '../src/audit/checkpoint.js';
import { AuditLog } from '../src/audit/log.js';
import { AuditRecorder } from '../src/audit/module.js';
import { ProvenanceCache } from '../src/audit/provenance.js';
import { readPublishedDir } from '../src/audit/publish.js';
import { verifyLog } from '../src/audit/verify.js';
import { parseConfig } from '../src/config.js';
import type { EventOf, TraceEvent } from '../src/trace/event.js';
import type { AgentProcess } from '../test/helpers/agent.js';
import { until } from '../test/helpers/agent.js';
import { AuditBed, skipAuditBed } from '../test/helpers/audit-bed.js';
import { compare, type Ours } from '../test/helpers/audit-compare.js';
import { TAMPER_KINDS, tamper } from '../test/helpers/audit-tamper.js';
import type { OpenStack } from '../test/helpers/openstack.js';
import { runTempest, tempestMissing } from './tempest.js';

const run = promisify(execFile);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const spread = (xs: number[]) => ({ median: Math.round(median(xs)), min: Math.round(Math.min(...xs)), max: Math.round(Math.max(...xs)), rounds: xs.length });
const log = (s: string) => process.stderr.write(`audit: ${s}\n`);

type Rec = Ours & {
  seq: number;
  id: string;
  eventType: string;
  requestPath?: string;
  reason?: { reasonCode: string };
  target: { typeURI: string; id?: string; name?: string };
};

/** A Keystone API request event as the tracer gives it (the shape of the real ones). */
function syntheticEvent(i: number): EventOf<'http.request'> {
  return {
    type: 'http.request',
    ts: Date.now(),
    service: 'keystone',
    pid: process.pid,
    tid: process.pid,
    ppid: process.ppid,
    uid: 0,
    comm: 'uwsgi',
    data: {
      role: 'server',
      method: i % 5 === 0 ? 'POST' : 'GET',
      path: i % 5 === 0 ? '/v3/auth/tokens' : `/v3/users/${(i * 2654435761).toString(16).padStart(32, '0').slice(-32)}`,
      status: i % 17 === 0 ? 401 : 200,
      latency_ms: 12.5,
      request_bytes: 420,
      response_bytes: 1830,
      remote: '192.0.2.10:51234',
      user_agent: 'openstacksdk/0.101.0 keystoneauth1/5.0.0 python-requests/2.28.1 CPython/3.11.2',
      request_id: `req-${randomBytes(16)
        .toString('hex')
        .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')}`,
      user: 'admin',
      user_id: 'cf73f2f9211c4d238371e925c91d0f10',
      project: 'admin',
      project_id: 'd1f72959f1a94b91a5820c5634174a75',
      ...(i % 5 === 0 ? { auth_user: 'admin', auth_domain: 'default' } : {}),
    },
  };
}

/** Events → records → the log, a checkpoint each second, for `seconds`: records per second. */
function costRound(dir: string, seconds: number, appendOnly: boolean): number {
  const d = mkdtempSync(join(dir, 'cost-'));
  try {
    const { key } = loadOrCreateKey(join(d, 'k'), 'stackbpf-audit-bench');
    const l = new AuditLog(join(d, 'audit.db'), 'stackbpf.audit/bench');
    const cfg = parseConfig({}).audit;
    const rec = new AuditRecorder({ node: 'bench', id: '8b5d5c94-b1c4-5670-bece-cece1f5b48bc' }, new ProvenanceCache('bench'), cfg);
    const batch = Array.from({ length: 5000 }, (_, i) => syntheticEvent(i)) as TraceEvent[];
    const prebuilt = appendOnly ? rec.records(batch) : [];
    let n = 0;
    const start = process.hrtime.bigint();
    let lastCp = start;
    const end = start + BigInt(seconds * 1e9);
    for (let now = start; now < end; now = process.hrtime.bigint()) {
      n += l.add(appendOnly ? prebuilt.map((e) => ({ ...e, id: crypto.randomUUID() })) : rec.records(batch)).length;
      if (now - lastCp > 1_000_000_000n) {
        l.checkpoint(key);
        lastCp = now;
      }
    }
    l.checkpoint(key);
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    l.close();
    return n / s;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

async function cost(dir: string, rounds: number, verifyRecords: number): Promise<Record<string, unknown>> {
  const full: number[] = [];
  const append: number[] = [];
  for (let r = 0; r < rounds; r++) {
    full.push(costRound(dir, 3, false));
    append.push(costRound(dir, 3, true));
    log(`cost round ${r + 1}/${rounds}: ${Math.round(full.at(-1) as number)} records/s (append only ${Math.round(append.at(-1) as number)})`);
  }
  // a log of verifyRecords records, a checkpoint every 100,000, then verified from scratch
  const d = mkdtempSync(join(dir, 'verify-'));
  try {
    const { key } = loadOrCreateKey(join(d, 'k'), 'stackbpf-audit-bench');
    const l = new AuditLog(join(d, 'audit.db'), 'stackbpf.audit/bench');
    const prov = {
      node: 'bench',
      pid: process.pid,
      uid: 0,
      comm: 'uwsgi',
      service: 'keystone',
      exe: '/usr/bin/uwsgi',
      exe_sha256: 'a'.repeat(64),
      cgroup: '/system.slice/keystone.service',
    };
    const observer = { node: 'bench', id: '8b5d5c94-b1c4-5670-bece-cece1f5b48bc' };
    let made = 0;
    const t0 = Date.now();
    while (made < verifyRecords) {
      const n = Math.min(10_000, verifyRecords - made);
      const evs: CadfEvent[] = [];
      for (let i = 0; i < n; i++) evs.push(apiEvent(syntheticEvent(made + i), observer, prov));
      l.add(evs);
      made += n;
      if (made % 100_000 === 0 || made === verifyRecords) l.checkpoint(key);
    }
    l.db.pragma('wal_checkpoint(TRUNCATE)');
    l.close();
    log(`built a log of ${made} records in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const bytes = statSync(join(d, 'audit.db')).size;
    const v = new AuditLog(join(d, 'audit.db'), undefined, { append: false });
    const t1 = process.hrtime.bigint();
    const rep = verifyLog(v, { key: parseVerifierKey(verifierKey(key)) });
    const verifyS = Number(process.hrtime.bigint() - t1) / 1e9;
    v.close();
    if (!rep.ok || rep.records.valid !== verifyRecords) throw new Error(`the synthetic log did not verify: ${JSON.stringify(rep.problems.slice(0, 3))}`);
    return {
      records_per_s: spread(full),
      append_only_per_s: spread(append),
      verify_s: Math.round(verifyS * 100) / 100,
      verify_records: verifyRecords,
      bytes_per_record_synthetic: Math.round(bytes / verifyRecords),
    };
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

async function services(dir: string, trials: number, tempest: boolean): Promise<Record<string, unknown>> {
  const bed = await AuditBed.start({ checkpointSeconds: 5 });
  try {
    const os = bed.os as OpenStack;
    const agent = bed.agent as AgentProcess;
    const started = Date.now();
    let tempestResult: unknown;
    if (tempest) {
      log('tempest identity tests…');
      tempestResult = await runTempest(join(dir, 'tempest'), os.keystoneUrl, os.password);
      log(`tempest: ${JSON.stringify(tempestResult)}`);
    }
    log('openstack client traffic…');
    const osc = (args: string[]) => os.openstack(args);
    await osc(['token', 'issue', '-f', 'json']);
    for (let i = 0; i < 3; i++) {
      const name = `bench-${randomBytes(3).toString('hex')}`;
      await osc(['project', 'create', '-f', 'json', name]);
      await osc(['user', 'create', '-f', 'json', '--project', name, '--password', randomBytes(8).toString('hex'), name]);
      await osc(['user', 'list', '-f', 'json']);
      await osc(['user', 'set', '--description', 'bench', name]);
      await osc(['user', 'delete', name]);
      await osc(['project', 'delete', name]);
      const net = JSON.parse(await osc(['network', 'create', '-f', 'json', name])).id as string;
      await osc(['network', 'list', '-f', 'json']);
      await osc(['network', 'show', '-f', 'json', net]);
      await osc(['network', 'set', '--description', 'bench', net]);
      await osc(['network', 'delete', net]);
    }
    // rejected and failed: a wrong password, no token, a bad token at Neutron
    for (let i = 0; i < 3; i++)
      await fetch(`${os.keystoneUrl}/auth/tokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: 'wrong' } } } },
        }),
      }).then((r) => r.text());
    await fetch(`${os.keystoneUrl}/users`).then((r) => r.text());
    await fetch(`${os.neutronUrl}/v2.0/networks`, { headers: { 'x-auth-token': 'gAAAAAnot-a-token' } }).then((r) => r.text());
    // below the API: what neither of them sees
    await bed.outOfBand(randomBytes(4).toString('hex'));
    // settle: both sides stop growing
    const records = async (): Promise<Rec[]> => (await agent.api('GET', '/v1/audit?limit=10000')).json as Rec[];
    let last = -1;
    await until(
      'the records to settle',
      async () => {
        const n = (await records()).length + (bed.tap?.audits().length ?? 0);
        const same = n === last;
        last = n;
        return same;
      },
      60_000,
      3000,
    );
    const all = (await records()).filter((r) => Date.parse(String(r.eventTime).replace(/(\.\d{3})\d*\+0000$/, '$1Z')) >= started - 1000);
    const theirs = (bed.tap?.audits() ?? []).filter((n) => Date.parse(String(n.payload.eventTime).replace(/(\.\d{3})\d*\+0000$/, '$1Z')) >= started - 1000);
    const api = all.filter((r) => r.eventType === 'activity' && r.requestPath !== undefined);
    const cmp = compare(api, theirs);
    const theirRids = new Set(theirs.map((n) => n.payload.initiator?.request_id).filter(Boolean));
    const theirTargets = new Set(theirs.map((n) => n.payload.target?.id).filter(Boolean));
    const beyond: Record<string, number> = {};
    const add = (k: string) => {
      beyond[k] = (beyond[k] ?? 0) + 1;
    };
    for (const r of all) {
      if (r.requestPath !== undefined) {
        if (theirRids.has(r.initiator.request_id) || (r.action === 'delete' && theirTargets.has(r.target.id))) continue;
        const code = Number(r.reason?.reasonCode);
        add(code === 401 || code === 403 ? 'api_rejected' : r.action.startsWith('read') ? 'api_read' : r.outcome === 'failure' ? 'api_failed' : 'api_other');
      } else if (r.target.typeURI === 'data/database') add('database_write');
      else if (r.target.typeURI === 'data/config' || r.target.typeURI === 'data/security/policy') add('file_change');
      else if (r.target.typeURI === 'compute/process') add('management_command');
      else add(r.eventType === 'monitor' ? 'gap' : 'agent');
    }
    const injected = [
      all.some((r) => r.target.typeURI === 'data/database' && r.target.name === 'keystone'),
      all.some((r) => r.target.name === join(os.dir, 'policy.yaml')),
      all.some((r) => r.target.typeURI === 'compute/process' && JSON.stringify(r.target).includes('fernet_rotate')),
    ];
    log(`compared: ${JSON.stringify({ theirs: cmp.theirs, matched: cmp.matched, coverage: cmp.coverage, field_agreement: cmp.field_agreement })}`);
    log(`disagreements: ${JSON.stringify(cmp.pairs, null, 1)}`);
    log(`unmatched: ${JSON.stringify(cmp.unmatched, null, 1)}`);
    writeFileSync(join(tmpdir(), 'stackbpf-audit-compare.json'), JSON.stringify({ cmp, ours: api, theirs }, null, 1));

    // SIGKILL under load
    let stop = false;
    const token = await os.authToken();
    const load = (async () => {
      while (!stop)
        await Promise.all(
          Array.from({ length: 8 }, () =>
            fetch(`${os.keystoneUrl}/users`, { headers: { 'x-auth-token': token } })
              .then((r) => r.text())
              .catch(() => ''),
          ),
        );
    })();
    await new Promise((r) => setTimeout(r, 3000));
    const acknowledged = new Set((await records()).map((r) => r.id));
    await agent.stop('SIGKILL');
    stop = true;
    await load;
    await agent.start(bed.config);
    const have = new Set((await records()).map((r) => r.id));
    const crashLost = [...acknowledged].filter((id) => !have.has(id)).length;
    await new Promise((r) => setTimeout(r, 6000));
    await agent.stop(); // a clean stop: its last checkpoint covers every record

    // tampering, randomised, on copies of the final log
    const pub = readPublishedDir(bed.published, `stackbpf.audit/${bed.node}`);
    const key = parseVerifierKey(pub.key as string);
    const untouched = new AuditLog(bed.db, undefined, { append: false });
    const clean = verifyLog(untouched, { key, published: pub.notes });
    untouched.close();
    let detected = 0;
    let done = 0;
    const missed: string[] = [];
    for (let t = 0; t < trials; t++)
      for (const kind of TAMPER_KINDS) {
        const copy = join(dir, `tamper-${t}-${kind}.db`);
        await run('sqlite3', [bed.db, `.backup ${copy}`]);
        const what = tamper(copy, kind, (n) => Math.floor(Math.random() * n), bed.node, bed.keyFile);
        const l = new AuditLog(copy, undefined, { append: false });
        const r = verifyLog(l, { key, published: pub.notes });
        l.close();
        done++;
        if (!r.ok) detected++;
        else missed.push(what);
        rmSync(copy, { force: true });
      }
    const st =
      statSync(bed.db).size +
      (() => {
        try {
          return statSync(`${bed.db}-wal`).size;
        } catch {
          return 0;
        }
      })();
    const n = untouched ? clean.records.total : 0;
    return {
      tempest: tempestResult,
      their_events: {
        keystone: theirs.filter((x) => x.publisher_id.startsWith('identity')).length,
        keystonemiddleware: theirs.filter((x) => x.event_type.startsWith('audit.http')).length,
      },
      coverage: Math.round(cmp.coverage * 10000) / 10000,
      field_agreement: Math.round(cmp.field_agreement * 10000) / 10000,
      matched: cmp.matched,
      matched_by_target: cmp.matched_by_target,
      matched_by_time: cmp.matched_by_time,
      consequences: cmp.consequences,
      disagreements: cmp.disagreements,
      disagreement_kinds: cmp.pairs,
      unmatched_examples: cmp.unmatched.slice(0, 8),
      our_api_records: api.length,
      beyond,
      injected_recorded: injected.filter(Boolean).length,
      injected: injected.length,
      untouched_verifies: clean.ok,
      untouched_checkpoints: clean.checkpoints,
      tamper_detected: detected,
      tamper_trials: done,
      ...(missed.length ? { tamper_missed: missed.slice(0, 5) } : {}),
      crash_acknowledged: acknowledged.size,
      crash_lost: crashLost,
      bytes_per_record: n ? Math.round(st / n) : null,
    };
  } finally {
    await bed.stop();
  }
}

export const bench = {
  summary: "the audit trail beside Keystone's and keystonemiddleware's own: coverage, agreement, beyond, tampering, SIGKILL, cost",
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: {
        rounds: { type: 'string', default: '5' },
        'verify-records': { type: 'string', default: '1000000' },
        trials: { type: 'string', default: '5' },
        'no-services': { type: 'boolean' },
        'no-tempest': { type: 'boolean' },
      },
    });
    const dir = mkdtempSync(join(tmpdir(), 'stackbpf-bench-audit-'));
    try {
      const out: Record<string, unknown> = {};
      if (!values['no-services']) {
        if (skipAuditBed) throw new Error(`audit bench: ${skipAuditBed} (or run with --no-services for the cost figures only)`);
        const tp = !values['no-tempest'] && !tempestMissing();
        Object.assign(out, await services(dir, Number(values.trials), tp));
      }
      Object.assign(out, await cost(dir, Number(values.rounds), Number(values['verify-records'])));
      out.cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1];
      return out;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
