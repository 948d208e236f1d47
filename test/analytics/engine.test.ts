// The analytics engine on the event bus (pure logic, synthetic events): every
// detector sees every event, alerts are stored, and the alerts of rules that
// resolve by quiet time (the registry) do resolve.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, mock, test } from 'node:test';
import type { Alert } from '../../src/analytics/alerts.js';
import { DEFAULT_BRUTEFORCE } from '../../src/analytics/bruteforce.js';
import { Analytics } from '../../src/analytics/engine.js';
import { ALERT_RULES, quietRules, type RuleId } from '../../src/analytics/rules.js';
import { PROFILE_KINDS } from '../../src/analytics/profile.js';
import { inspectRequest } from '../../src/analytics/sqli.js';
import type { EventStoreAccess } from '../../src/capabilities.js';
import { EventBus } from '../../src/trace/bus.js';
import type { TraceEvent } from '../../src/trace/event.js';
import { keystoneRequest } from '../helpers/events.js';

// the tracer inspects each request before it drops the body, with the inspector analytics gives it
const http = (ts: number, path: string, status: number, remote = '192.0.2.7:4000'): TraceEvent =>
  keystoneRequest(ts, { method: 'GET', path, status, remote, ...(inspectRequest(path, '', '').length ? { sqli: inspectRequest(path, '', '') } : {}) });

function memoryStore(): Pick<EventStoreAccess, 'saveAlert' | 'each'> & { saved: Alert[] } {
  const saved: Alert[] = [];
  return { saved, each: () => [], saveAlert: (a) => void saved.push(structuredClone(a)) };
}

describe('analytics engine', () => {
  test('an injection in a request on the bus raises an alert that is stored, and resolves after the quiet time the registry gives', async () => {
    mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
    const dir = mkdtempSync(join(tmpdir(), 'stackbpf-engine-'));
    const bus = new EventBus();
    const store = memoryStore();
    const an = new Analytics(bus, store, { bruteforce: DEFAULT_BRUTEFORCE, profilesDir: dir });
    try {
      bus.publish(http(1_000_000, "/v3/users?name=x'%20OR%201=1--%20", 200));
      bus.publish(http(1_000_001, '/v3/users?name=alice', 200));
      await new Promise((r) => setImmediate(r));
      const active = an.alerts.active();
      assert.deepEqual(
        active.map((a) => a.rule),
        ['sqli.request'],
      );
      assert.equal(store.saved.at(-1)?.rule, 'sqli.request');
      const quiet = (ALERT_RULES['sqli.request'].resolves as { quietMs: number }).quietMs;
      mock.timers.tick(quiet - 2000);
      assert.equal(an.alerts.active().length, 1, 'still firing before the quiet time');
      mock.timers.tick(5000);
      assert.equal(an.alerts.active().length, 0, 'resolved once quiet');
      assert.equal(store.saved.at(-1)?.state, 'resolved');
    } finally {
      an.stop();
      mock.timers.reset();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the registry: every drift kind has a rule, and every rule resolves somehow', () => {
    for (const k of PROFILE_KINDS) assert.ok(`drift.${k}` in ALERT_RULES, `drift.${k}`);
    const quiet = new Set([...quietRules().values()].flat());
    for (const [id, r] of Object.entries(ALERT_RULES) as [RuleId, (typeof ALERT_RULES)[RuleId]][]) {
      assert.ok(r.resolves === 'detector' || quiet.has(id), `${id} resolves`);
      assert.match(r.mitre, /^T\d{4}(\.\d{3})?$/, `${id} names an ATT&CK technique`);
    }
  });
});
