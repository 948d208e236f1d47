// The detect benchmark's unauthorized-access phase: scripted attacks for
// every access detector against the real Keystone, Neutron and nova-api, and
// what each detector raised during the benign traffic before them.
//
// The attackers' addresses: the services listen on loopback in the root
// namespace, and the network rules forbid test addresses on root-namespace
// devices; every 127.0.0.0/8 address is the root namespace's own without
// adding any, so each attacker binds its own (127.0.0.11, 127.0.0.12, ...)
// and the services see that address, as they would a remote client's. The
// owner of a stolen token and the benign clients use 127.0.0.1. (The e2e
// test replays a token from another namespace through the lab's provider
// NIC, and drops it at XDP.)
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { DEFAULT_ACCESS } from '../src/analytics/access.js';

const run = promisify(execFile);

export interface AlertSeen {
  change: string;
  alert: { rule: string; service: string; subject: string; ts: number; details: Record<string, unknown> };
  /** performance.now() when the alert stream delivered it */
  at: number;
}

export interface AccessTargets {
  keystone: string;
  neutron?: string;
  nova?: string;
  adminPassword: string;
  /** the stand-in for a service's process (an operator rule matches its command line) */
  marker: string;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** performance.now() when the answer's head arrived */
  at: number;
}

/** One request from a source address of our choosing. */
function call(url: string, method: string, opts: { from?: string; token?: string; subject?: string; body?: unknown; agent?: string } = {}): Promise<Answer> {
  const u = new URL(url);
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method,
        ...(opts.from ? { localAddress: opts.from } : {}),
        headers: {
          'user-agent': opts.agent ?? 'python-openstackclient keystoneauth1/5 python-requests/2',
          accept: 'application/json',
          ...(opts.token ? { 'x-auth-token': opts.token } : {}),
          ...(opts.subject ? { 'x-subject-token': opts.subject } : {}),
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        timeout: 30_000,
      },
      (res) => {
        const at = performance.now();
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => void (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, at }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

export interface DetectorFigures {
  attacks: number;
  detected: number;
  /**
   * from the answer that crossed the detector's threshold (the 10th 403, the 20th 404, the 5th
   * address; for the single-request attacks, that request's) reaching the attacker, to the alert
   * reaching a client of the agent's stream: negative when the operator heard first
   */
  time_to_alert_ms: { median: number | null; max: number | null };
  benign_alerts: number;
  notes?: string[];
}

export const ACCESS_RULES = [
  'access.token.new_source',
  'access.token.revoked',
  'access.forbidden.identity',
  'access.enumeration.identity',
  'access.guessing.distributed',
  'access.service_credentials',
  'access.service_port',
  'access.metadata',
] as const;

/** The instance network of this benchmark (analytics.access.instance_networks): loopback addresses stand for it. */
export const BENCH_INSTANCE_NETWORK = '127.0.0.72/29';

/** Accounts the attacks need, made before the benign window (their making is benign traffic too). */
export async function prepareAccess(t: AccessTargets): Promise<{
  admin: string;
  members: Record<string, { id: string; name: string; password: string }>;
  sweepers: Record<string, { id: string; name: string; password: string }>;
  service: { name: string; password: string };
  projects: { admin: string; service: string };
}> {
  const admin = await login(t.keystone, 'admin', t.adminPassword, 'admin');
  const k = async (method: string, path: string, body?: unknown): Promise<any> => {
    const r = await call(`${t.keystone}${path}`, method, { token: admin, body });
    if (r.status >= 300) throw new Error(`keystone ${method} ${path}: ${r.status} ${r.body.slice(0, 200)}`);
    return r.body ? JSON.parse(r.body) : {};
  };
  const roleId = async (name: string) => (await k('GET', `/roles?name=${name}`)).roles[0].id as string;
  const member = await roleId('member');
  const adminRole = await roleId('admin');
  const adminProject = (await k('GET', '/projects?name=admin')).projects[0].id as string;
  const tag = randomBytes(3).toString('hex');
  const user = async (name: string, project: string, role: string) => {
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const id = (await k('POST', '/users', { user: { name, password, domain_id: 'default' } })).user.id as string;
    await k('PUT', `/projects/${project}/users/${id}/roles/${role}`);
    return { id, name, password };
  };
  const services = ['keystone', ...(t.neutron ? ['neutron'] : []), ...(t.nova ? ['nova'] : [])];
  const members: Record<string, { id: string; name: string; password: string }> = {};
  const sweepers: Record<string, { id: string; name: string; password: string }> = {};
  for (const s of services) {
    const p = (await k('POST', '/projects', { project: { name: `sbb-m-${s}-${tag}`, domain_id: 'default' } })).project.id as string;
    members[s] = await user(`sbb-m-${s}-${tag}`, p, member);
    sweepers[s] = await user(`sbb-sweep-${s}-${tag}`, adminProject, adminRole);
  }
  let svcProject = (await k('GET', '/projects?name=service')).projects[0]?.id as string | undefined;
  svcProject ??= (await k('POST', '/projects', { project: { name: 'service', domain_id: 'default' } })).project.id as string;
  const svc = await user(`sbb-svc-${tag}`, svcProject as string, adminRole);
  // the service's own logins, from its own host
  for (let i = 0; i < 3; i++) await login(t.keystone, svc.name, svc.password, 'service');
  return { admin, members, sweepers, service: { name: svc.name, password: svc.password }, projects: { admin: adminProject, service: svcProject as string } };
}

async function login(keystone: string, user: string, password: string, project: string | undefined, from?: string): Promise<string> {
  const r = await call(`${keystone}/auth/tokens`, 'POST', {
    ...(from ? { from } : {}),
    body: {
      auth: {
        identity: { methods: ['password'], password: { user: { name: user, domain: { name: 'Default' }, password } } },
        ...(project ? { scope: { project: { name: project, domain: { name: 'Default' } } } } : {}),
      },
    },
  });
  if (r.status !== 201) throw new Error(`login as ${user}${from ? ` from ${from}` : ''}: ${r.status} ${r.body.slice(0, 200)}`);
  return r.headers['x-subject-token'] as string;
}

/** Run every attack; the alerts are read from `alerts` (the agent's stream, as it arrives). */
export async function accessAttacks(
  t: AccessTargets,
  accounts: Awaited<ReturnType<typeof prepareAccess>>,
  alerts: AlertSeen[],
  log: (s: string) => void,
): Promise<Record<string, Omit<DetectorFigures, 'benign_alerts'>>> {
  const out: Record<string, { attacks: number; detected: number; ms: number[]; notes: string[] }> = {};
  for (const r of ACCESS_RULES) out[r] = { attacks: 0, detected: 0, ms: [], notes: [] };
  /** wait up to 10 s for an alert change of `rule` matching `pred`, after index `from`; the ms from `t0` */
  const wait = async (rule: string, from: number, t0: number, pred: (a: AlertSeen) => boolean): Promise<number | undefined> => {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const hit = alerts.slice(from).find((a) => a.alert.rule === rule && (a.change === 'raised' || a.change === 'updated') && pred(a));
      if (hit) return Math.round((hit.at - t0) * 10) / 10;
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  };
  const score = (rule: string, name: string, ms: number | undefined) => {
    const o = out[rule] as (typeof out)[string];
    o.attacks++;
    if (ms === undefined) o.notes.push(`missed: ${name}`);
    else {
      o.detected++;
      o.ms.push(ms);
    }
    log(`  ${rule}: ${name}: ${ms === undefined ? 'MISSED' : `${ms} ms`}`);
  };
  const targets: [string, string, string][] = [['keystone', t.keystone, '/users']];
  if (t.neutron) targets.push(['neutron', t.neutron, '/v2.0/networks']);
  if (t.nova) targets.push(['nova', t.nova, '/flavors']);

  // 1. a stolen token, replayed from another address against each service
  const stolen = await login(t.keystone, 'admin', t.adminPassword, 'admin');
  for (const [i, [svc, base, path]] of targets.entries()) {
    const thief = `127.0.0.${11 + i}`;
    const mark = alerts.length;
    const r = await call(`${base}${path}`, 'GET', { from: thief, token: stolen, agent: 'curl/8.5.0' });
    score(
      'access.token.new_source',
      `${svc} GET ${path} from ${thief} (answered ${r.status})`,
      await wait('access.token.new_source', mark, r.at, (a) => a.alert.subject === thief),
    );
  }
  // 2. a revoked token used again: its owner's own address, after an admin revoked it
  for (const [i, [svc, base, path]] of targets.entries()) {
    const owner = `127.0.0.${21 + i}`;
    const tok = await login(t.keystone, 'admin', t.adminPassword, 'admin', owner);
    await call(`${base}${path}`, 'GET', { from: owner, token: tok });
    const del = await call(`${t.keystone}/auth/tokens`, 'DELETE', { token: accounts.admin, subject: tok });
    if (del.status !== 204) throw new Error(`revoking a token: ${del.status} ${del.body.slice(0, 200)}`);
    const mark = alerts.length;
    const r = await call(`${base}${path}`, 'GET', { from: owner, token: tok });
    score(
      'access.token.revoked',
      `${svc} GET ${path} (answered ${r.status})`,
      await wait('access.token.revoked', mark, r.at, (a) => a.alert.subject === owner),
    );
  }
  // 3. a member probing admin routes of each service
  const probes: Record<string, string[]> = {
    keystone: ['/users', '/domains', '/services', '/endpoints', '/role_assignments', '/credentials'],
    // Neutron hides what a member may not see behind 404s; these it refuses outright
    neutron: [
      '/v2.0/agents',
      `/v2.0/quotas/${accounts.projects.admin}`,
      `/v2.0/quotas/${accounts.projects.admin}/details`,
      '/v2.0/agents',
      `/v2.0/quotas/${accounts.projects.service}`,
      `/v2.0/quotas/${accounts.projects.service}/details`,
    ],
    nova: ['/os-hypervisors', '/os-services', '/os-aggregates', '/os-migrations', '/os-instance_usage_audit_log', '/os-hosts'],
  };
  for (const [i, [svc, base]] of targets.entries()) {
    const m = accounts.members[svc] as { id: string; name: string; password: string };
    const from = `127.0.0.${31 + i}`;
    const tok = await login(t.keystone, m.name, m.password, m.name, from);
    const mark = alerts.length;
    const statuses: number[] = [];
    let crossed = 0;
    for (let round = 0; round < 2; round++)
      for (const p of probes[svc] as string[]) {
        const r = await call(`${base}${p}`, 'GET', { from, token: tok });
        statuses.push(r.status);
        // the 403 that reaches the detector's threshold
        if (r.status === 403 && statuses.filter((x) => x === 403).length === DEFAULT_ACCESS.forbidden.perIdentity) crossed = r.at;
      }
    const forbidden = statuses.filter((s) => s === 403).length;
    score(
      'access.forbidden.identity',
      `${svc}: ${forbidden} of ${statuses.length} answered 403`,
      await wait('access.forbidden.identity', mark, crossed, (a) => a.alert.subject === m.id),
    );
  }
  // 4. an id sweep against each service, by a user allowed to look
  const sweeps: Record<string, (id: string) => string> = {
    keystone: (id) => `/users/${id.replace(/-/g, '')}`,
    neutron: (id) => `/v2.0/networks/${id}`,
    nova: (id) => `/servers/${id}`,
  };
  for (const [i, [svc, base]] of targets.entries()) {
    const s = accounts.sweepers[svc] as { id: string; name: string; password: string };
    const from = `127.0.0.${41 + i}`;
    const tok = await login(t.keystone, s.name, s.password, 'admin', from);
    const mark = alerts.length;
    let crossed = 0;
    let notFound = 0;
    for (let n = 0; n < 25; n++) {
      const r = await call(`${base}${(sweeps[svc] as (id: string) => string)(randomUUID())}`, 'GET', { from, token: tok });
      if (r.status === 404 && ++notFound === DEFAULT_ACCESS.notFound.perIdentity) crossed = r.at;
    }
    score(
      'access.enumeration.identity',
      `${svc}: ${notFound} of 25 ids answered 404`,
      await wait('access.enumeration.identity', mark, crossed, (a) => a.alert.subject === s.id),
    );
  }
  // 5. guessing one user name from eight addresses, once each, one every 2 s
  {
    const victim = accounts.members.keystone?.name as string;
    const mark = alerts.length;
    let crossed = 0;
    for (let n = 0; n < 8; n++) {
      const r = await call(`${t.keystone}/auth/tokens`, 'POST', {
        from: `127.0.0.${51 + n}`,
        body: { auth: { identity: { methods: ['password'], password: { user: { name: victim, domain: { name: 'Default' }, password: `guess-${n}` } } } } },
      });
      // the attempt from the address that reaches the threshold
      if (n + 1 === DEFAULT_ACCESS.guessingSources) crossed = r.at;
      if (n < 7) await new Promise((res) => setTimeout(res, 2000));
    }
    score(
      'access.guessing.distributed',
      `${victim} from 8 addresses, 2 s apart`,
      await wait('access.guessing.distributed', mark, crossed, (a) => a.alert.subject.startsWith(victim)),
    );
  }
  // 6. a service's credentials used from a host that is not the service's
  {
    const mark = alerts.length;
    const r = await call(`${t.keystone}/auth/tokens`, 'POST', {
      from: '127.0.0.61',
      body: {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: accounts.service.name, domain: { name: 'Default' }, password: accounts.service.password } },
          },
          scope: { project: { name: 'service', domain: { name: 'Default' } } },
        },
      },
    });
    score(
      'access.service_credentials',
      `${accounts.service.name} from 127.0.0.61 (answered ${r.status})`,
      await wait('access.service_credentials', mark, r.at, (a) => a.alert.details.user === accounts.service.name),
    );
  }
  // 7. an instance address reaching each service's own port
  for (const [i, [svc, base]] of targets.entries()) {
    const from = `127.0.0.${73 + i}`;
    const mark = alerts.length;
    const r = await call(`${base}/`, 'GET', { from });
    score('access.service_port', `${svc} from ${from} (answered ${r.status})`, await wait('access.service_port', mark, r.at, (a) => a.alert.subject === from));
  }
  // 8. a service's process reaching for the metadata service (in a namespace of its own with no route: nothing leaves)
  {
    const ns = `sbbmeta${randomBytes(3).toString('hex')}`;
    await run('ip', ['netns', 'add', ns]);
    try {
      const mark = alerts.length;
      const t0 = performance.now();
      await run(
        'ip',
        [
          'netns',
          'exec',
          ns,
          '/usr/bin/python3',
          '-c',
          'import socket\ntry: socket.create_connection(("169.254.169.254", 80), 1)\nexcept OSError: pass',
          t.marker,
        ],
        { timeout: 20_000 },
      );
      score(
        'access.metadata',
        'a keystone process connecting to 169.254.169.254:80',
        await wait('access.metadata', mark, t0, (a) => a.alert.details.remote === '169.254.169.254:80'),
      );
    } finally {
      await run('ip', ['netns', 'delete', ns]).catch(() => undefined);
    }
  }
  const med = (xs: number[]): number | null => {
    if (!xs.length) return null;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };
  return Object.fromEntries(
    Object.entries(out).map(([rule, o]) => [
      rule,
      {
        attacks: o.attacks,
        detected: o.detected,
        time_to_alert_ms: { median: med(o.ms), max: o.ms.length ? Math.max(...o.ms) : null },
        ...(o.notes.length ? { notes: o.notes } : {}),
      },
    ]),
  );
}
