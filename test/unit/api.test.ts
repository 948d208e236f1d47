// The API's routes and errors, injected into the fastify instance (no
// socket), over a daemon whose modules run without a kernel: storage and
// analytics in a temporary directory, tracing and the data plane off.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi, MAX_BODY } from '../../src/api/server.js';
import { parseConfig } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';

const quiet = createLogger({ level: 'error', write: () => undefined });

describe('api', () => {
  let dir: string;
  let daemon: Daemon;
  let app: FastifyInstance;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stackbpf-api-'));
    daemon = await Daemon.start(parseConfig({ state_dir: dir, trace: { enabled: false } }), quiet);
    app = buildApi(daemon, quiet);
    await app.ready();
  });
  after(async () => {
    await app.close();
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: string, headers: Record<string, string> = {}) => {
    const r = await app.inject({ method, url, ...(payload !== undefined ? { payload } : {}), headers });
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
    assert.deepEqual(r.json.modules, { storage: 'on', analytics: 'on', tracing: 'off', exposure: 'off', response: 'on' });
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
    const bad = await call('POST', '/v1/profiles/learn', '{nope', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /^body is not valid JSON/);
    assert.deepEqual((await call('POST', '/v1/profiles/learn', '{"x":1}', { 'content-type': 'application/json' })).json, { error: 'x: unknown field' });
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

  test('unknown endpoints are 404 naming the path; metrics are Prometheus text', async () => {
    assert.deepEqual((await call('GET', '/v1/nope?x=1')).json, { error: 'no such endpoint: /v1/nope' });
    const m = await call('GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(String(m.type), /^text\/plain; version=0.0.4/);
    assert.match(m.json, /^stackbpf_store_rows 0$/m);
    assert.match(m.json, /^stackbpf_pipeline_dropped_total\{consumer="closed-streams"\} 0$/m);
    assert.match(m.json, /^stackbpf_alerts_total\{change="raised"\} 0$/m);
    assert.doesNotMatch(m.json, /stackbpf_trace_records_total \d/, 'no samples for a module that is off');
  });
});
