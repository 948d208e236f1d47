// The unauthorized-access detectors' logic on hand-made events (the e2e
// test drives them with a real Keystone).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AccessDetector, agentFamily, DEFAULT_ACCESS, routeOf } from '../../src/analytics/access.js';
import { type Alert, AlertManager } from '../../src/analytics/alerts.js';
import type { TraceEvent } from '../../src/trace/event.js';

let clock = 1_700_000_000_000;
const http = (d: Record<string, unknown>): TraceEvent =>
  ({
    ts: (clock += 100),
    type: 'http.request',
    service: 'keystone',
    pid: 1,
    tid: 1,
    ppid: 0,
    uid: 0,
    comm: 'uwsgi',
    data: {
      role: 'server',
      method: 'GET',
      path: '/v3/users',
      status: 200,
      latency_ms: 1,
      request_bytes: 0,
      response_bytes: 0,
      user_agent: 'openstacksdk/1.0 keystoneauth1/5.1',
      ...d,
    },
  }) as TraceEvent;

function setup(o = {}) {
  const alerts = new AlertManager();
  const raised: Alert[] = [];
  alerts.subscribe((a, c) => c === 'raised' && raised.push(a));
  const det = new AccessDetector(alerts, { ...DEFAULT_ACCESS, ...o });
  return { det, raised, rules: () => raised.map((a) => a.rule) };
}

const issue = (det: AccessDetector, ref: string, remote: string, user = 'alice') =>
  det.onEvent(http({ method: 'POST', path: '/v3/auth/tokens', status: 201, subject_token_ref: ref, user, remote: `${remote}:40000` }));

describe('unauthorized-access detectors', () => {
  it('a token replayed from another source, and with another user agent', () => {
    const { det, raised, rules } = setup();
    issue(det, 'T1', '198.51.100.10');
    det.onEvent(http({ token_ref: 'T1', user: 'alice', remote: '198.51.100.10:40001' }));
    assert.deepEqual(rules(), [], 'the owner using it raises nothing');
    det.onEvent(http({ token_ref: 'T1', user: 'alice', remote: '203.0.113.66:5555', user_agent: 'curl/8' }));
    assert.deepEqual(rules(), ['access.token.new_source']);
    assert.equal(raised[0]?.subject, '203.0.113.66');
    assert.equal(raised[0]?.severity, 'high');
    assert.equal(raised[0]?.mitre, 'T1550.001');
    // the `openstack` command sends its token with openstacksdk's and python-keystoneclient's agents alike
    det.onEvent(http({ token_ref: 'T1', user: 'alice', remote: '198.51.100.10:40002', user_agent: 'python-keystoneclient' }));
    det.onEvent(
      http({ token_ref: 'T1', user: 'alice', remote: '198.51.100.10:40002', user_agent: 'openstacksdk/0.101.0 keystoneauth1/5.1.1 python-requests/2.28.1' }),
    );
    assert.deepEqual(rules(), ['access.token.new_source']);
    det.onEvent(http({ token_ref: 'T1', user: 'alice', remote: '198.51.100.10:40002', user_agent: 'Mozilla/5.0 (X11; Linux x86_64)' }));
    assert.deepEqual(rules(), ['access.token.new_source', 'access.token.new_agent']);
    assert.equal(agentFamily('osc-lib/2.6.2 keystoneauth1/5.1.1 python-requests/2.28.1 CPython/3.11.2'), 'openstack');
    assert.equal(agentFamily('curl/8.5.0'), 'curl');
  });

  it('a service acting for the user (X-Service-Token) or a trusted source is no replay', () => {
    const { det, rules } = setup({ trustedSources: ['192.0.2.5'] });
    issue(det, 'T2', '198.51.100.10');
    det.onEvent(http({ token_ref: 'T2', remote: '192.0.2.9:1', service_token: true }));
    det.onEvent(http({ token_ref: 'T2', remote: '192.0.2.5:1' }));
    assert.deepEqual(rules(), []);
  });

  it('a revoked token used again; a token refused after it worked', () => {
    const { det, raised, rules } = setup();
    issue(det, 'T3', '198.51.100.10');
    det.onEvent(http({ method: 'DELETE', path: '/v3/auth/tokens', status: 204, subject_token_ref: 'T3', token_ref: 'ADMIN', remote: '198.51.100.10:1' }));
    det.onEvent(http({ token_ref: 'T3', status: 401, remote: '198.51.100.10:2' }));
    assert.deepEqual(rules(), ['access.token.revoked']);
    assert.equal(raised[0]?.details.revoked, true);
    issue(det, 'T4', '198.51.100.11');
    det.onEvent(http({ token_ref: 'T4', status: 200, remote: '198.51.100.11:1' }));
    det.onEvent(http({ token_ref: 'T4', status: 401, remote: '198.51.100.11:2' }));
    assert.equal(rules().filter((r) => r === 'access.token.revoked').length, 2);
  });

  it('403 across routes by one identity; not when it is one route', () => {
    const { det, rules } = setup({ forbidden: { perIdentity: 5, perSource: 100, routes: 3 } });
    for (let i = 0; i < 8; i++) det.onEvent(http({ user_id: 'u1', status: 403, path: '/v3/users', remote: '198.51.100.20:1' }));
    assert.deepEqual(rules(), [], 'one route only');
    for (const p of ['/v3/projects', '/v3/domains', '/v3/roles']) det.onEvent(http({ user_id: 'u1', status: 403, path: p, remote: '198.51.100.20:1' }));
    assert.deepEqual(rules(), ['access.forbidden.identity']);
  });

  it('404s that confirm a delete sweep nothing', () => {
    const { det, rules } = setup({ notFound: { perIdentity: 1000, perSource: 3, ids: 3 } });
    for (let i = 0; i < 5; i++) {
      const path = `/v2.0/networks/${(0xdef000 + i).toString(16).padStart(32, '0')}`;
      det.onEvent(http({ method: 'DELETE', status: 204, path, remote: '203.0.113.8:9' }));
      det.onEvent(http({ status: 404, path, remote: '203.0.113.8:9' }));
    }
    assert.deepEqual(rules(), []);
  });

  it('404 sweeps over ids by one source', () => {
    const { det, raised, rules } = setup({ notFound: { perIdentity: 1000, perSource: 6, ids: 6 } });
    for (let i = 0; i < 6; i++)
      det.onEvent(http({ status: 404, path: `/v3/projects/${(0xabc000 + i).toString(16).padStart(32, '0')}`, remote: '203.0.113.7:9' }));
    assert.deepEqual(rules(), ['access.enumeration.source']);
    assert.equal(raised[0]?.subject, '203.0.113.7');
  });

  it('one user name failing from many sources, each only once', () => {
    const { det, raised, rules } = setup({ guessingSources: 4 });
    for (let i = 0; i < 4; i++)
      det.onEvent(http({ method: 'POST', path: '/v3/auth/tokens', status: 401, auth_user: 'admin', auth_domain: 'Default', remote: `203.0.113.${10 + i}:1` }));
    assert.deepEqual(rules(), ['access.guessing.distributed']);
    assert.equal(raised[0]?.subject, 'admin@Default');
    assert.equal((raised[0]?.details.sources as string[] | undefined)?.length, 4);
  });

  it("a service's user from a new source; the metadata service from a host process", () => {
    const { det, rules } = setup();
    const auth = (src: string) =>
      det.onEvent(http({ method: 'POST', path: '/v3/auth/tokens', status: 201, user: 'neutron', project: 'service', remote: `${src}:1` }));
    auth('198.51.100.30');
    auth('198.51.100.30');
    assert.deepEqual(rules(), []);
    auth('203.0.113.99');
    assert.deepEqual(rules(), ['access.service_credentials']);
    const connect = (service: string, comm: string) =>
      det.onEvent({
        ts: (clock += 1),
        type: 'net.connect',
        service,
        pid: 7,
        tid: 7,
        ppid: 1,
        uid: 0,
        comm,
        data: { fd: 3, family: 'inet', remote: '169.254.169.254:80', result: 0 },
      } as TraceEvent);
    connect('neutron-ovn-metadata-agent', 'python3');
    assert.equal(rules().length, 1);
    connect('keystone', 'uwsgi');
    assert.deepEqual(rules(), ['access.service_credentials', 'access.metadata']);
  });

  it("an instance address reaching a service's own port", () => {
    const { det, raised, rules } = setup({ instanceNetworks: ['198.51.100.0/24', '2001:db8:1::/64'] });
    const accept = (remote: string) =>
      det.onEvent({
        ts: (clock += 1),
        type: 'net.accept',
        service: 'mariadb',
        pid: 9,
        tid: 9,
        ppid: 1,
        uid: 0,
        comm: 'mariadbd',
        data: { fd: 5, family: 'inet', local: '192.0.2.2:3306', remote, result: 0 },
      } as TraceEvent);
    accept('192.0.2.1:40000');
    accept('[2001:db8:2::5]:40000');
    assert.deepEqual(rules(), []);
    accept('198.51.100.7:40001');
    accept('[2001:db8:1::7]:40002');
    assert.deepEqual(rules(), ['access.service_port', 'access.service_port']);
    assert.equal(raised[0]?.subject, '198.51.100.7');
    assert.equal(raised[1]?.subject, '2001:db8:1::7');
  });

  it('routes are templates: ids become {id}', () => {
    assert.equal(routeOf('GET', '/v3/users/0f3e6c2b9b2a4c1e8d7f6a5b4c3d2e1f/projects?x=1'), 'GET /v3/users/{id}/projects');
  });
});
