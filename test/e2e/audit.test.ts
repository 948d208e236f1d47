// The audit trail against real components: Keystone (its CADF notifications
// on, the opt-outs cleared) and Neutron (keystonemiddleware's audit filter in
// its pipeline) on MariaDB, both sending to a real RabbitMQ; the `openstack`
// client; the `mariadb` client, a policy.yaml edit and a keystone-manage run
// below the API. Our records are compared with theirs by request id, every
// exported record must be accepted by pycadf, no secret may reach the log,
// the log must verify against what was published (directory and bus), a
// tampered copy must not, and a SIGKILL under load must lose no acknowledged
// record and leave a gap record.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { AgentProcess } from '../helpers/agent.js';
import { until } from '../helpers/agent.js';
import { AuditBed, skipAuditBed } from '../helpers/audit-bed.js';
import { compare, type Ours } from '../helpers/audit-compare.js';
import { tamper } from '../helpers/audit-tamper.js';
import { skipKernel } from '../helpers/kernel.js';
import type { NotificationTap } from '../helpers/notifications.js';
import type { OpenStack } from '../helpers/openstack.js';

const run = promisify(execFile);
/** run a command with `input` on its stdin; its exit code and stdout */
const pipe = (cmd: string, args: string[], input: string): Promise<{ code: number; out: string }> =>
  new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (b) => (out += b));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, out }));
    c.stdin.end(input);
  });
const cli = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');
const helpers = join(import.meta.dirname, '..', '..', '..', 'test', 'helpers');
const skip = skipAuditBed;
if (skip && !skipKernel) process.stdout.write(`# SKIP audit e2e: ${skip}\n`);

type Rec = Ours & {
  seq: number;
  id: string;
  eventType: string;
  requestPath?: string;
  reason?: { reasonType: string; reasonCode: string };
  target: { typeURI: string; name?: string; id: string; tables?: string[]; argv?: string[] };
  attachments?: { name: string; content: Record<string, unknown> }[];
};

const attachment = (r: Rec, name: string) => r.attachments?.find((a) => a.name === name)?.content as Record<string, any> | undefined;

describe('e2e: the audit trail on real Keystone and Neutron, beside their own audit', { skip, timeout: 900_000 }, () => {
  let bed: AuditBed;
  let os: OpenStack;
  let agent: AgentProcess;
  let tap: NotificationTap;
  let work = '';
  let node = '';
  const secrets: string[] = [];
  const requestIds: Record<string, string> = {};
  let adminId = '';
  let adminProject = '';
  let token = '';

  const records = async (q = ''): Promise<Rec[]> => (await agent.api('GET', `/v1/audit?limit=10000${q}`)).json as Rec[];
  const db = () => bed.db;
  const amqpUrl = () => bed.amqpUrl;
  const stackbpf = (args: string[]) =>
    run(process.execPath, [cli, ...args], { maxBuffer: 64 << 20 }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    );

  /** a Keystone call as the admin; the answer's request id kept under `name` */
  const keystone = async (name: string, method: string, path: string, body?: unknown, tok = token): Promise<any> => {
    const res = await fetch(`${os.keystoneUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(tok ? { 'x-auth-token': tok } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    requestIds[name] = res.headers.get('x-openstack-request-id') ?? '';
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, token: res.headers.get('x-subject-token') };
  };

  before(async () => {
    bed = await AuditBed.start();
    os = bed.os as OpenStack;
    agent = bed.agent as AgentProcess;
    tap = bed.tap as NotificationTap;
    work = bed.work;
    node = bed.node;
    secrets.push(os.password, os.dbPassword);
  });

  after(async () => {
    await bed?.stop();
  });

  test('API activity: create, list, update, delete and a failed authentication, as Keystone and keystonemiddleware record them', async () => {
    const auth = await keystone('authenticate', 'POST', '/auth/tokens', {
      auth: {
        identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: os.password } } },
        scope: { project: { name: 'admin', domain: { id: 'default' } } },
      },
    });
    assert.equal(auth.status, 201);
    token = auth.token as string;
    secrets.push(token);
    adminId = auth.json.token.user.id;
    adminProject = auth.json.token.project.id;
    const bad = await keystone(
      'authenticate-failed',
      'POST',
      '/auth/tokens',
      { auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: 'not-the-password' } } } } },
      '',
    );
    assert.equal(bad.status, 401);
    const userPassword = `Pw-${randomBytes(9).toString('hex')}`;
    secrets.push(userPassword);
    const created = await keystone('create', 'POST', '/users', {
      user: { name: `audit-${randomBytes(3).toString('hex')}`, password: userPassword, domain_id: 'default' },
    });
    assert.equal(created.status, 201);
    const uid = created.json.user.id as string;
    assert.equal((await keystone('list', 'GET', '/users')).status, 200);
    assert.equal((await keystone('update', 'PATCH', `/users/${uid}`, { user: { description: 'audited' } })).status, 200);
    assert.equal((await keystone('delete', 'DELETE', `/users/${uid}`)).status, 204);
    // Neutron through the openstack client (keystonemiddleware audits these)
    const net = JSON.parse(await os.openstack(['network', 'create', '-f', 'json', `audit-net-${randomBytes(2).toString('hex')}`])).id as string;
    await os.openstack(['network', 'list', '-f', 'json']);
    await os.openstack(['network', 'set', '--description', 'audited', net]);
    await os.openstack(['network', 'delete', net]);

    const want = (r: Rec, name: string) => r.initiator.request_id === requestIds[name];
    let ours: Rec[] = [];
    await until(
      'our records of every call',
      async () => {
        ours = await records('&kind=api');
        return (
          Object.keys(requestIds).every((n) => ours.some((r) => want(r, n))) && ours.filter((r) => r.requestPath?.startsWith('/v2.0/networks')).length >= 4
        );
      },
      30_000,
    );
    const one = (name: string) => ours.find((r) => want(r, name)) as Rec;
    assert.deepEqual(
      ['authenticate', 'authenticate-failed', 'create', 'list', 'update', 'delete'].map((n) => [n, one(n).action, one(n).outcome, one(n).target.typeURI]),
      [
        ['authenticate', 'authenticate', 'success', 'service/security/account/user'],
        ['authenticate-failed', 'authenticate', 'failure', 'service/security/account/user'],
        ['create', 'create', 'success', 'data/security/account/user'],
        ['list', 'read/list', 'success', 'data/security/account/user'],
        ['update', 'update', 'success', 'data/security/account/user'],
        ['delete', 'delete', 'success', 'data/security/account/user'],
      ],
    );
    for (const n of ['create', 'list', 'update', 'delete']) {
      assert.equal(one(n).initiator.user_id, adminId, n);
      assert.equal(one(n).initiator.project_id, adminProject, n);
    }
    assert.equal(one('authenticate-failed').initiator.name, 'admin');
    assert.equal(one('authenticate-failed').reason?.reasonCode, '401');
    assert.equal(one('update').target.id, uid);
    const neutron = ours.filter((r) => r.requestPath?.startsWith('/v2.0/networks'));
    assert.deepEqual(
      new Set(neutron.map((r) => `${r.action} ${r.target.typeURI}`)),
      new Set([
        'create service/network/networks',
        'read/list service/network/networks',
        'update service/network/networks/network',
        'delete service/network/networks/network',
        ...neutron.filter((r) => r.action === 'read').map((r) => `read ${r.target.typeURI}`),
      ]),
    );

    // theirs: every Keystone and keystonemiddleware audit event, matched by request id
    await until('their events', () => tap.audits().some((n) => n.event_type === 'identity.user.deleted' && n.payload.target?.id === uid), 20_000);
    await new Promise((r) => setTimeout(r, 2000));
    ours = await records('&kind=api');
    const cmp = compare(ours, tap.audits());
    process.stdout.write(`# audit e2e: ${JSON.stringify({ ...cmp, examples: cmp.examples.slice(0, 5) })}\n`);
    assert.ok(cmp.theirs >= 8, `their events: ${cmp.theirs}`);
    assert.deepEqual(cmp.unmatched, [], 'every event of theirs is one of ours');
    assert.deepEqual(cmp.examples, [], 'every field agrees');
    // what they did not record: the list (Keystone notifies no reads)
    assert.ok(!tap.audits().some((n) => n.payload.initiator?.request_id === requestIds.list));
  });

  test('below the API: a mariadb client update of Keystone’s database, a policy.yaml edit, keystone-manage', async () => {
    const marker = randomBytes(4).toString('hex');
    const policy = await bed.outOfBand(marker);
    let recs: Rec[] = [];
    await until(
      'the three records',
      async () => {
        recs = await records();
        return (
          recs.some((r) => r.target.typeURI === 'data/database') &&
          recs.some((r) => r.target.name === policy) &&
          recs.some((r) => r.target.typeURI === 'compute/process' && r.target.argv?.includes('fernet_rotate'))
        );
      },
      30_000,
    );
    const dbw = recs.find((r) => r.target.typeURI === 'data/database') as Rec;
    assert.equal(dbw.action, 'update');
    assert.equal(dbw.target.name, 'keystone');
    assert.deepEqual(dbw.target.tables, ['project']);
    const dbProv = attachment(dbw, 'provenance') as Record<string, any>;
    assert.match(dbProv.exe, /\/(mariadb|mysql)$/);
    assert.equal(dbProv.exe_sha256, createHash('sha256').update(readFileSync(dbProv.exe)).digest('hex'));
    assert.equal(dbProv.uid, 0);
    assert.ok(dbProv.cgroup, 'a cgroup');
    const stmt = attachment(dbw, 'statement') as Record<string, any>;
    assert.match(stmt.fingerprint, /^UPDATE project SET description = \? WHERE name = \?$/i);
    assert.ok(!JSON.stringify(dbw).includes(marker), 'the statement’s values are not kept');

    const pw = recs.find((r) => r.target.name === policy) as Rec;
    assert.equal(pw.target.typeURI, 'data/security/policy');
    assert.equal(pw.action, 'update');
    assert.equal((attachment(pw, 'provenance') as Record<string, any>).pid, process.pid);
    assert.equal((attachment(pw, 'provenance') as Record<string, any>).exe, process.execPath);

    const km = recs.find((r) => r.target.typeURI === 'compute/process' && r.target.argv?.includes('fernet_rotate')) as Rec;
    assert.equal(km.action, 'start');
    assert.ok(km.target.argv?.some((a) => a.endsWith('keystone-manage')));
    // the key rotation it made is recorded too: files in Keystone's key repository
    assert.ok(recs.some((r) => r.target.typeURI === 'data/config' && r.target.name?.startsWith(join(os.dir, 'fernet-keys'))));
    // and the mariadb client run itself, with its password redacted
    const client = recs.find((r) => r.target.typeURI === 'compute/process' && /\/(mariadb|mysql)$/.test(r.target.name ?? '')) as Rec;
    assert.ok(client, 'the client run is recorded');
    assert.ok(!JSON.stringify(client).includes(os.dbPassword));
  });

  test('every exported record is accepted by pycadf, and no secret is in the log or what was published', async () => {
    const exp = await stackbpf(['audit', 'export', '--format', 'cadf', '--db', db()]);
    assert.equal(exp.code, 0, exp.err);
    const lines = exp.out.trim().split('\n');
    assert.ok(lines.length >= 15, `${lines.length} records`);
    const v = await pipe('/usr/bin/python3', [join(helpers, 'cadf-validate.py')], exp.out);
    const summary = JSON.parse(v.out.trim());
    assert.equal(summary.events, lines.length);
    assert.deepEqual(summary.bad, []);
    assert.equal(summary.valid, lines.length);
    assert.equal(summary.roundtrip, lines.length);
    // byte for byte: the files at rest (the database, its WAL) and the published checkpoints
    const files = [db(), `${db()}-wal`, ...(await run('find', [bed.published, '-type', 'f'])).stdout.trim().split('\n')].filter((f) => f && existsSync(f));
    for (const f of files) {
      const bytes = readFileSync(f);
      for (const s of secrets) assert.equal(bytes.indexOf(s), -1, `a secret (${s.slice(0, 4)}…) is in ${f}`);
    }
    assert.ok(!exp.out.includes(os.password) && !exp.out.includes(token));
  });

  test('verify: the log checks against the directory and the bus it was published to; a tampered copy does not', async () => {
    await new Promise((r) => setTimeout(r, 2500)); // a checkpoint after the last records
    const dir = await stackbpf(['audit', 'verify', '--db', db(), '--published', bed.published]);
    assert.equal(dir.code, 0, dir.out + dir.err);
    assert.match(dir.out, /(\d+)\/\1 checkpoints valid/);
    assert.match(dir.out, /(\d+)\/\1 records valid/);
    assert.match(dir.out, /(\d+)\/\1 published checkpoints match the log/);
    const key = (await stackbpf(['audit', 'key', '--config', bed.agentConfigFile])).out.trim();
    const bus = await stackbpf(['audit', 'verify', '--db', db(), '--bus', amqpUrl(), '--key', key, '--json']);
    assert.equal(bus.code, 0, bus.out + bus.err);
    const br = JSON.parse(bus.out);
    assert.ok(br.published.total >= 3, `${br.published.total} checkpoints read from the bus`);
    assert.equal(br.published.valid, br.published.total);

    // an inclusion proof, checked by a verifier that has the public key only
    const last = (await records('&kind=api'))[0] as Rec;
    const proof = await stackbpf(['audit', 'proof', last.id, '--db', db(), '--key', key, '--json']);
    assert.equal(proof.code, 0, proof.err);
    const checked = await pipe('/usr/bin/python3', [join(helpers, 'audit-proof-check.py'), key], proof.out);
    assert.match(checked.out, /^ok leaf \d+ of \d+/);

    // the database rewritten after its checkpoints were published, re-signed with the node's own key
    const copy = join(work, 'tampered.db');
    await run('sqlite3', [db(), `.backup ${copy}`]);
    tamper(copy, 'rewritten-after-publish', (n) => Math.floor(n / 2), node, bed.keyFile);
    const local = await stackbpf(['audit', 'verify', '--db', copy, '--key', key]);
    assert.equal(local.code, 0, 'self-consistent under the node key: only what was published shows it');
    const caught = await stackbpf(['audit', 'verify', '--db', copy, '--published', bed.published]);
    assert.equal(caught.code, 1, caught.out);
    assert.match(caught.out, /rewritten after it was published/);
    copyFileSync(db(), join(work, 'untouched.db'));
  });

  test('a configuration change (SIGHUP) is recorded with the hashes of both configurations', async () => {
    const file = bed.agentConfigFile;
    const conf = parseYaml(readFileSync(file, 'utf8')) as { audit: Record<string, unknown> };
    conf.audit.retention_days = 400;
    writeFileSync(file, stringifyYaml(conf));
    process.kill(agent.pid as number, 'SIGHUP');
    let rec: Rec | undefined;
    await until(
      'the configure record',
      async () => {
        rec = (await records('&kind=agent')).find((r) => r.action === 'configure');
        return rec !== undefined;
      },
      10_000,
    );
    const a = attachment(rec as Rec, 'agent') as Record<string, string>;
    assert.match(a.config_sha256, /^[0-9a-f]{64}$/);
    assert.notEqual(a.config_sha256, a.previous_sha256);
    assert.equal((rec as Rec).eventType, 'control');
  });

  test('SIGKILL under load: no acknowledged record lost, the log verifies, the gap is recorded', async () => {
    let stop = false;
    const load = (async () => {
      let n = 0;
      while (!stop) {
        await Promise.all(
          Array.from({ length: 4 }, () =>
            fetch(`${os.keystoneUrl}/users`, { headers: { 'x-auth-token': token } })
              .then((r) => r.text())
              .catch(() => ''),
          ),
        );
        n += 4;
      }
      return n;
    })();
    await new Promise((r) => setTimeout(r, 3000));
    const acknowledged = new Set((await records()).map((r) => r.id));
    await new Promise((r) => setTimeout(r, 500));
    const more = await records();
    for (const r of more) acknowledged.add(r.id);
    await agent.stop('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    const sent = await load;
    await agent.start(bed.config);
    const after = await records();
    const have = new Set(after.map((r) => r.id));
    const lost = [...acknowledged].filter((id) => !have.has(id));
    process.stdout.write(`# audit e2e SIGKILL: ${acknowledged.size} acknowledged, ${lost.length} lost, ${sent} requests sent\n`);
    assert.equal(lost.length, 0, `acknowledged records lost: ${lost.slice(0, 3).join(', ')}`);
    const gap = after.find(
      (r) =>
        r.eventType === 'monitor' && Date.parse(((attachment(r, 'gap') as Record<string, string>).to ?? '').replace(/(\.\d{3})\d*\+0000$/, '$1Z')) >= killedAt,
    );
    assert.ok(gap, 'a gap record for the time the agent was down');
    assert.match(String((attachment(gap, 'gap') as Record<string, string>).cause), /without a clean stop/);
    await new Promise((r) => setTimeout(r, 2500));
    const v = await stackbpf(['audit', 'verify', '--db', db(), '--published', bed.published]);
    assert.equal(v.code, 0, v.out + v.err);
  });
});
