// End to end: unauthorized access against a real Keystone reached through
// the lab's provider NIC, seen from the kernel's view of its API: a stolen
// token replayed from another address (and dropped at XDP, opt-in), a
// revoked token used again, a member probing admin routes, an id sweep,
// guessing spread over many addresses, a service's credentials from a new
// host, and a host process reaching for the metadata service. The owner's
// own use of its token raises nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { labAgentConfig } from '../../src/cli/lab-cmd.js';
import { labDown, labUp, type LabState } from '../../src/lab/lab.js';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';
import { OpenStack, skipKeystone } from '../helpers/openstack.js';

const run = promisify(execFile);
const skip = skipKernel || skipKeystone;
if (skip && !skipKernel) process.stdout.write(`# SKIP unauthorized-access e2e: ${skip}\n`);

interface Answer {
  status: number;
  body: string;
  token?: string;
}

describe('e2e: unauthorized access to a real Keystone', { skip, timeout: 300_000 }, () => {
  let lab: LabState;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let os: OpenStack;
  let agent: AgentProcess;
  let base = '';
  const BLOCK_SECONDS = 30;
  const marker = `sbt-meta-${randomBytes(3).toString('hex')}`;

  /** curl from a namespace (from `source` when given): status, body and the issued token, or status 0 when nothing answered */
  const curl = async (
    ns: string,
    source: string | undefined,
    method: string,
    path: string,
    opts: { token?: string; subject?: string; body?: unknown } = {},
  ): Promise<Answer> => {
    const args = ['netns', 'exec', ns, 'curl', '-s', '-m', '3', '-D', '-', '-X', method, '-H', 'user-agent: sbt-e2e-client/1'];
    if (source) args.push('--interface', source);
    if (opts.token) args.push('-H', `x-auth-token: ${opts.token}`);
    if (opts.subject) args.push('-H', `x-subject-token: ${opts.subject}`);
    if (opts.body !== undefined) args.push('-H', 'content-type: application/json', '-d', JSON.stringify(opts.body));
    args.push(`${base}${path}`);
    const { stdout } = await run('ip', args).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    const m = /^HTTP\/[\d.]+ (\d{3})/m.exec(stdout);
    const token = /^x-subject-token: (\S+)/im.exec(stdout)?.[1];
    return { status: m ? Number(m[1]) : 0, body: stdout.slice(stdout.indexOf('\r\n\r\n') + 4), ...(token ? { token } : {}) };
  };
  const login = (ns: string, source: string | undefined, user: string, password: string, project?: string): Promise<Answer> =>
    curl(ns, source, 'POST', '/auth/tokens', {
      body: {
        auth: {
          identity: { methods: ['password'], password: { user: { name: user, domain: { name: 'Default' }, password } } },
          ...(project ? { scope: { project: { name: project, domain: { name: 'Default' } } } } : {}),
        },
      },
    });
  const alerts = async (prefix: string): Promise<any[]> =>
    ((await agent.api('GET', '/v1/alerts?active=1')).json as any[]).filter((a) => a.rule.startsWith(prefix));
  const waitAlert = async (rule: string, pred: (a: any) => boolean = () => true): Promise<any> => {
    let found: any;
    await until(`${rule} alert`, async () => (found = (await alerts(rule)).find((a) => a.rule === rule && pred(a))) !== undefined);
    return found;
  };
  const client = (n: number): string => `203.0.113.${n}`;
  let adminToken = '';

  before(async () => {
    lab = await labUp({ name: unique('uaa', 20).toLowerCase(), vms: [] });
    // replies to the clients behind the upstream router (the lab's BGP is not run here)
    await run('ip', ['netns', 'exec', lab.node.ns, 'ip', 'route', 'replace', '203.0.113.0/24', 'via', lab.upstream.ipv4]);
    for (let n = 20; n <= 45; n++) await run('ip', ['netns', 'exec', lab.upstream.ns, 'ip', 'addr', 'add', `${client(n)}/32`, 'dev', 'lo']);
    pins = pinDir();
    work = mkdtempSync(join(tmpdir(), 'stackbpf-unauth-e2e-'));
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: ${marker}\n    cmdline: "${marker}"\n`);
    os = await OpenStack.start({ netns: lab.node.ns });
    base = `http://${lab.node.ipv4}:${os.keystonePort}/v3`;
    agent = new AgentProcess(join(work, 'api.sock'), work);
    const { bgp: _bgp, ...labBase } = labAgentConfig(lab, pins.dir) as Record<string, unknown> & { bgp: unknown };
    await agent.start({
      ...labBase,
      state_dir: join(work, 'state'),
      exposures: [],
      trace: { enabled: true, rules_file: join(work, 'rules.yaml') },
      storage: { enabled: true },
      analytics: {
        bruteforce: { per_source: 10 },
        access: {
          forbidden_per_identity: 5,
          forbidden_routes: 3,
          not_found_per_source: 8,
          not_found_ids: 8,
          guessing_sources: 4,
          instance_networks: [`${client(44)}/30`],
          block_seconds: BLOCK_SECONDS,
        },
      },
    });
    const admin = await login(lab.node.ns, undefined, 'admin', os.password, 'admin');
    assert.equal(admin.status, 201, admin.body);
    adminToken = admin.token as string;
  });

  after(async () => {
    await agent?.stop();
    await os?.stop();
    if (lab) await labDown(lab.name).catch(() => undefined);
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("the owner's own use of its token raises nothing", async () => {
    for (const p of ['/users', '/projects', '/domains', '/roles'])
      assert.equal((await curl(lab.node.ns, undefined, 'GET', p, { token: adminToken })).status, 200);
    await until(
      'the requests to be traced',
      async () => ((await agent.api('GET', '/v1/events?type=http.request&service=keystone&limit=20')).json as unknown[]).length >= 5,
    );
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await alerts('access.'), []);
  });

  test('a stolen token replayed from another address: alert with the owner and both sources, the replaying source dropped at XDP', async () => {
    const victim = await login(lab.upstream.ns, client(20), 'admin', os.password, 'admin');
    assert.equal(victim.status, 201);
    assert.equal((await curl(lab.upstream.ns, client(20), 'GET', '/users', { token: victim.token })).status, 200);
    // the thief, elsewhere
    assert.equal((await curl(lab.upstream.ns, client(21), 'GET', '/users', { token: victim.token })).status, 200, 'the stolen token works');
    const a = await waitAlert('access.token.new_source', (x) => x.subject === client(21));
    assert.equal(a.severity, 'high');
    assert.equal(a.mitre, 'T1550.001');
    assert.equal(a.details.user, 'admin');
    assert.deepEqual(a.details.known_sources, [client(20)]);
    assert.ok(!JSON.stringify(a).includes(victim.token as string), 'the alert names the token by reference only');
    await until('the block', async () => /blocked at XDP/.test((await waitAlert('access.token.new_source')).details.response ?? ''));
    assert.equal((await curl(lab.upstream.ns, client(21), 'GET', '/users', { token: victim.token })).status, 0, 'the thief gets nothing back now');
    assert.equal((await curl(lab.upstream.ns, client(20), 'GET', '/users', { token: victim.token })).status, 200, 'the owner still does');
  });

  test('a revoked token used again', async () => {
    const t = await login(lab.upstream.ns, client(22), 'admin', os.password, 'admin');
    assert.equal((await curl(lab.upstream.ns, client(22), 'GET', '/projects', { token: t.token })).status, 200);
    assert.equal((await curl(lab.node.ns, undefined, 'DELETE', '/auth/tokens', { token: adminToken, subject: t.token })).status, 204);
    assert.equal((await curl(lab.upstream.ns, client(22), 'GET', '/projects', { token: t.token })).status, 401);
    const a = await waitAlert('access.token.revoked', (x) => x.subject === client(22));
    assert.equal(a.details.revoked, true);
    assert.equal(a.details.user, 'admin');
  });

  test('a member probing admin routes; an id sweep', async () => {
    const name = `sbt-m-${randomBytes(3).toString('hex')}`;
    const proj = await curl(lab.node.ns, undefined, 'POST', '/projects', { token: adminToken, body: { project: { name, domain_id: 'default' } } });
    const projectId = JSON.parse(proj.body).project.id;
    const user = await curl(lab.node.ns, undefined, 'POST', '/users', {
      token: adminToken,
      body: { user: { name, password: `pw-${name}`, domain_id: 'default' } },
    });
    const userId = JSON.parse(user.body).user.id;
    const roles = JSON.parse((await curl(lab.node.ns, undefined, 'GET', '/roles?name=member', { token: adminToken })).body).roles;
    assert.equal((await curl(lab.node.ns, undefined, 'PUT', `/projects/${projectId}/users/${userId}/roles/${roles[0].id}`, { token: adminToken })).status, 204);
    const member = await login(lab.upstream.ns, client(23), name, `pw-${name}`, name);
    assert.equal(member.status, 201);
    const statuses: number[] = [];
    for (const p of ['/users', '/domains', '/services', '/endpoints', '/users', '/services'])
      statuses.push((await curl(lab.upstream.ns, client(23), 'GET', p, { token: member.token })).status);
    assert.ok(statuses.filter((s) => s === 403).length >= 5, `Keystone refused the member: ${statuses}`);
    const a = await waitAlert('access.forbidden.identity');
    assert.equal(a.subject, userId);
    assert.ok(a.details.routes.length >= 3, JSON.stringify(a.details));
    // an admin from its own address, sweeping user ids that do not exist
    const sweeper = await login(lab.upstream.ns, client(24), 'admin', os.password, 'admin');
    const swept: number[] = [];
    for (let i = 0; i < 12; i++)
      swept.push((await curl(lab.upstream.ns, client(24), 'GET', `/users/${randomBytes(16).toString('hex')}`, { token: sweeper.token })).status);
    assert.deepEqual(swept.slice(0, 8), Array(8).fill(404), `${swept}`);
    const e = await waitAlert('access.enumeration.source', (x) => x.subject === client(24));
    assert.ok(e.details.targets.length >= 8);
    // the sweeper is dropped at XDP once the alert is raised (access.block_seconds)
    await until('the block', async () => /blocked at XDP/.test((await waitAlert('access.enumeration.source')).details.response ?? ''));
    assert.equal(swept.at(-1), 0, `${swept}`);
  });

  test('guessing spread over many addresses, once each: one alert for the user name, no per-source brute force', async () => {
    const user = `sbt-g-${randomBytes(3).toString('hex')}`;
    for (let n = 30; n < 35; n++) assert.equal((await login(lab.upstream.ns, client(n), user, 'guess')).status, 401);
    const a = await waitAlert('access.guessing.distributed', (x) => x.subject.startsWith(user));
    assert.ok(a.details.sources.length >= 4, JSON.stringify(a.details));
    assert.equal((await alerts('keystone.bruteforce.')).filter((x) => x.subject.startsWith('203.0.113.3')).length, 0);
  });

  test("a service's credentials used from a host that is not the service's", async () => {
    const svc = await curl(lab.node.ns, undefined, 'GET', '/projects?name=service', { token: adminToken });
    let serviceId = JSON.parse(svc.body).projects[0]?.id;
    if (!serviceId)
      serviceId = JSON.parse(
        (await curl(lab.node.ns, undefined, 'POST', '/projects', { token: adminToken, body: { project: { name: 'service', domain_id: 'default' } } })).body,
      ).project.id;
    const name = `sbt-svc-${randomBytes(3).toString('hex')}`;
    const u = JSON.parse(
      (await curl(lab.node.ns, undefined, 'POST', '/users', { token: adminToken, body: { user: { name, password: `pw-${name}`, domain_id: 'default' } } }))
        .body,
    ).user.id;
    const admin = JSON.parse((await curl(lab.node.ns, undefined, 'GET', '/roles?name=admin', { token: adminToken })).body).roles[0].id;
    await curl(lab.node.ns, undefined, 'PUT', `/projects/${serviceId}/users/${u}/roles/${admin}`, { token: adminToken });
    assert.equal((await login(lab.upstream.ns, client(40), name, `pw-${name}`, 'service')).status, 201);
    assert.equal((await login(lab.upstream.ns, client(40), name, `pw-${name}`, 'service')).status, 201);
    assert.equal((await login(lab.upstream.ns, client(41), name, `pw-${name}`, 'service')).status, 201);
    const a = await waitAlert('access.service_credentials', (x) => x.details.user === name);
    assert.equal(a.details.source, client(41));
    assert.deepEqual(a.details.known_sources, [client(40)]);
  });

  test("an instance address reaching Keystone's own port: alert, dropped at XDP", async () => {
    // 203.0.113.44/30 stands for an instance network here
    assert.equal((await curl(lab.upstream.ns, client(45), 'GET', '/')).status, 200);
    const a = await waitAlert('access.service_port', (x) => x.subject === client(45));
    assert.equal(a.details.service, 'keystone');
    await until('the block', async () => /blocked at XDP/.test((await waitAlert('access.service_port')).details.response ?? ''));
    assert.equal((await curl(lab.upstream.ns, client(45), 'GET', '/')).status, 0);
  });

  test('a host process of a traced service reaching for the metadata service', async () => {
    // in the node's namespace, 169.254.169.254 leads nowhere but the lab's upstream router
    await run('ip', [
      'netns',
      'exec',
      lab.node.ns,
      'python3',
      '-c',
      'import socket,sys\ns=socket.socket(); s.settimeout(1)\ntry: s.connect(("169.254.169.254", 80))\nexcept OSError: pass',
      marker,
    ]);
    const a = await waitAlert('access.metadata');
    assert.equal(a.details.service, marker);
    assert.equal(a.details.remote, '169.254.169.254:80');
  });
});
