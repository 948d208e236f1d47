// The API's routes and errors, injected into the fastify instance (no
// socket), over a daemon whose modules run without a kernel: storage and
// analytics in a temporary directory, tracing and the data plane off.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { AccessControl, type Scope } from '../../src/api/access.js';
import { buildApi, MAX_BODY } from '../../src/api/server.js';
import { parseConfig } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';

const quiet = createLogger({ level: 'error', write: () => undefined });
const sha = (t: string) => createHash('sha256').update(t).digest('hex');
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const ADMIN = { name: 'ops', scopes: ['admin', 'read', 'status'] as Scope[], sha256: sha(ADMIN_TOKEN) };
const READER = { name: 'reader', scopes: ['read', 'status'] as Scope[], sha256: sha('reader-token-0123456789abcdef') };
const MONITOR = { name: 'prometheus', scopes: ['status'] as Scope[], sha256: sha('monitor-token-0123456789abcdef') };

describe('api', () => {
  let dir: string;
  let daemon: Daemon;
  let app: FastifyInstance;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stackbpf-api-'));
    daemon = await Daemon.start(parseConfig({ state_dir: dir, trace: { enabled: false }, accounting: { enabled: false } }), quiet);
    app = buildApi(daemon, quiet, new AccessControl({ listen: '127.0.0.1:9180', groupScopes: [], tokens: [ADMIN, READER, MONITOR] }));
    await app.ready();
  });
  after(async () => {
    await app.close();
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: string, headers: Record<string, string> = {}) => {
    const r = await app.inject({
      method,
      url,
      ...(payload !== undefined ? { payload } : {}),
      headers: {
        host: '127.0.0.1:9180',
        authorization: `Bearer ${ADMIN_TOKEN}`,
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
    });
    return {
      status: r.statusCode,
      json: r.body
        ? (() => {
            try {
              return JSON.parse(r.body);
            } catch {
              return r.body;
            }
          })()
        : undefined,
      type: r.headers['content-type'],
    };
  };

  test('status names every module and its state', async () => {
    const r = await call('GET', '/v1/status');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.modules, {
      storage: 'on',
      analytics: 'on',
      audit: 'on',
      tracing: 'off',
      exposure: 'off',
      response: 'on',
      accounting: 'off',
      performance: 'on',
    });
    assert.equal(r.json.storage.state, 'on');
    assert.equal(r.json.trace.state, 'off');
    assert.equal(r.json.analytics.state, 'on');
  });

  test('a module that is off answers its routes with 409 and why', async () => {
    assert.deepEqual(await call('GET', '/v1/exposures'), {
      status: 409,
      json: { error: 'the data plane is off (no dataplane.provider_interfaces in the configuration)' },
      type: 'application/json; charset=utf-8',
    });
    assert.equal((await call('GET', '/v1/events/stream')).json.error, 'tracing is off (trace.enabled: false)');
    assert.match((await call('POST', '/v1/blocks', '{"prefix":"203.0.113.1/32"}')).json.error, /data plane is off/);
  });

  test('stored events and alerts, with parameters checked', async () => {
    assert.deepEqual((await call('GET', '/v1/events?limit=5')).json, []);
    assert.deepEqual(await call('GET', '/v1/events?pid=x'), {
      status: 400,
      json: { error: 'pid: expected a process id, got "x"' },
      type: 'application/json; charset=utf-8',
    });
    assert.equal((await call('GET', '/v1/events?since=-1')).status, 400);
    assert.deepEqual((await call('GET', '/v1/alerts?active=1')).json, []);
    assert.deepEqual(await call('GET', '/v1/alerts?state=maybe'), {
      status: 400,
      json: { error: 'state: expected one of firing, resolved' },
      type: 'application/json; charset=utf-8',
    });
  });

  test('bodies: bad JSON, unknown fields, wrong types and oversize are 4xx with the reason', async () => {
    const bad = await call('POST', '/v1/profiles/learn', '{nope');
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /^body is not valid JSON/);
    assert.deepEqual((await call('POST', '/v1/profiles/learn', '{"x":1}', { 'content-type': 'application/json' })).json, { error: 'x: unknown field' });
    const proto = await call('POST', '/v1/blocks', '{"prefix":"203.0.113.9","__proto__":{"admin":true}}');
    assert.equal(proto.status, 400);
    assert.match(proto.json.error, /^body is not valid JSON: .*prototype/);
    assert.equal(
      (await call('POST', '/v1/profiles/learn', '{"since":"yesterday"}', { 'content-type': 'application/json' })).json.error,
      'since: expected number',
    );
    assert.equal(
      (await call('POST', '/v1/profiles/learn', '{"mode":"strict"}', { 'content-type': 'application/json' })).json.error,
      'mode: expected one of learn, monitor, enforce',
    );
    assert.equal((await call('GET', '/v1/profiles/keystone?format=xml')).json.error, 'format: expected one of json, yaml');
    assert.deepEqual((await call('DELETE', '/v1/blocks')).json, { error: 'prefix: required' });
    assert.deepEqual((await call('POST', '/v1/blocks', '{"prefix":"203.0.113.1","seconds":-1}', { 'content-type': 'application/json' })).json, {
      error: 'seconds: must be >= 0',
    });
    const big = await call('POST', '/v1/profiles/learn', JSON.stringify({ services: ['x'.repeat(MAX_BODY)] }), { 'content-type': 'application/json' });
    assert.equal(big.status, 413);
    // nothing stored for it: learning from an empty store finds nothing
    assert.equal((await call('POST', '/v1/profiles/learn', '{}', { 'content-type': 'application/json' })).status, 404);
  });

  test('profiles: listed, a missing one named, reload answers', async () => {
    const list = await call('GET', '/v1/profiles');
    assert.deepEqual(list.json.profiles, []);
    assert.deepEqual(await call('GET', '/v1/profiles/keystone'), {
      status: 404,
      json: { error: 'no profile for keystone (profiles: none)' },
      type: 'application/json; charset=utf-8',
    });
    const r = await call('POST', '/v1/profiles/reload');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.enforcementErrors, []);
  });

  test('no credentials: 401; a token without the scope: 403; neither says more; both counted', async () => {
    const anon = await app.inject({ method: 'GET', url: '/v1/events', headers: { host: '127.0.0.1:9180' } });
    assert.equal(anon.statusCode, 401);
    assert.deepEqual(anon.json(), { error: 'unauthorized' });
    assert.equal(anon.headers['www-authenticate'], 'Bearer');
    assert.equal((await call('GET', '/v1/events', undefined, { authorization: 'Bearer not-a-token-we-know-at-all' })).status, 401);
    assert.equal((await call('GET', '/v1/events', undefined, { authorization: 'Basic b3BzOm9wcw==' })).status, 401);
    const reader = { authorization: 'Bearer reader-token-0123456789abcdef' };
    assert.equal((await call('GET', '/v1/events', undefined, reader)).status, 200, 'read scope reads');
    assert.deepEqual(await call('POST', '/v1/blocks', '{"prefix":"203.0.113.1/32"}', reader), {
      status: 403,
      json: { error: 'forbidden' },
      type: 'application/json; charset=utf-8',
    });
    assert.equal((await call('POST', '/v1/profiles/reload', '{}', reader)).status, 403);
    assert.equal((await call('DELETE', '/v1/exposures?prefix=198.51.100.1', undefined, reader)).status, 403);
    const monitor = { authorization: 'Bearer monitor-token-0123456789abcdef' };
    assert.equal((await call('GET', '/v1/status', undefined, monitor)).status, 200);
    assert.equal((await call('GET', '/metrics', undefined, monitor)).status, 200);
    assert.equal((await call('GET', '/v1/alerts', undefined, monitor)).status, 403, 'status scope reads no events or alerts');
    const st = (await call('GET', '/v1/status')).json;
    assert.ok(st.api.refused.unauthenticated >= 3 && st.api.refused.scope >= 4, JSON.stringify(st.api.refused));
  });

  test('browsers: another Host (DNS rebinding), another Origin or site, and a form POST are refused; no CORS, no caching', async () => {
    assert.equal((await call('GET', '/v1/status', undefined, { host: 'attacker.example:9180' })).status, 403);
    assert.equal((await call('GET', '/v1/status', undefined, { origin: 'http://attacker.example' })).status, 403);
    assert.equal((await call('GET', '/v1/status', undefined, { origin: 'null' })).status, 403);
    assert.equal((await call('GET', '/v1/status', undefined, { 'sec-fetch-site': 'cross-site' })).status, 403);
    assert.equal((await call('GET', '/v1/status', undefined, { host: 'localhost:9180', origin: 'http://localhost:9180' })).status, 200);
    const form = await call('POST', '/v1/profiles/reload', 'a=1', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415);
    assert.equal((await call('POST', '/v1/profiles/reload', '{}', { 'content-type': 'text/plain' })).status, 415);
    const r = await app.inject({ method: 'GET', url: '/v1/status', headers: { host: '127.0.0.1:9180', authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(Object.keys(r.headers).filter((h) => h.startsWith('access-control-')).length, 0);
    const pre = await app.inject({
      method: 'OPTIONS',
      url: '/v1/blocks',
      headers: { host: '127.0.0.1:9180', origin: 'http://attacker.example', 'access-control-request-method': 'POST' },
    });
    assert.equal(pre.statusCode, 403, 'no preflight is ever answered');
    assert.equal(Object.keys(pre.headers).filter((h) => h.startsWith('access-control-')).length, 0);
  });

  test('a change made through the API is recorded with who made it', async () => {
    await call('POST', '/v1/profiles/reload', '{}');
    type Change = { data: { method: string; path: string; caller: { via: string; token: string } } };
    const recorded = (ev: Change[]) =>
      ev.some((e) => e.data.path === '/v1/profiles/reload' && e.data.method === 'POST' && e.data.caller.via === 'token' && e.data.caller.token === 'ops');
    let ev: Change[] = [];
    // the event goes through the bus to the store: poll, do not guess how long that takes
    for (let i = 0; i < 100 && !recorded(ev); i++) {
      await new Promise((r) => setTimeout(r, 50));
      ev = (await call('GET', '/v1/events?type=api.change&limit=5')).json as Change[];
    }
    assert.ok(recorded(ev), JSON.stringify(ev));
  });

  test('unknown endpoints are 404 naming the path; metrics are Prometheus text', async () => {
    assert.deepEqual((await call('GET', '/v1/nope?x=1')).json, { error: 'no such endpoint: /v1/nope' });
    const m = await call('GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(String(m.type), /^text\/plain; version=0.0.4/);
    assert.match(m.json, /^stackbpf_store_rows \d+$/m);
    assert.match(m.json, /^stackbpf_api_refused_total\{reason="unauthenticated"\} [1-9]/m);
    assert.match(m.json, /^stackbpf_pipeline_dropped_total\{consumer="closed-streams"\} 0$/m);
    assert.match(m.json, /^stackbpf_alerts_total\{change="raised"\} 0$/m);
    assert.doesNotMatch(m.json, /stackbpf_trace_records_total \d/, 'no samples for a module that is off');
  });
});
