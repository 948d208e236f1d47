// The brute-force detector and the alert manager, on synthetic events (pure
// logic; the real Keystone run is in test/trace/keystone.test.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Alert, AlertManager } from '../../src/analytics/alerts.js';
import { BruteForceDetector, DEFAULT_BRUTEFORCE } from '../../src/analytics/bruteforce.js';
import type { TraceEvent } from '../../src/trace/event.js';
import { keystoneRequest } from '../helpers/events.js';

const auth = (ts: number, user: string, remote: string, status = 401, extra: Record<string, unknown> = {}): TraceEvent =>
  keystoneRequest(ts, { method: 'POST', path: '/v3/auth/tokens', status, auth_user: user, auth_domain: 'Default', remote, ...extra });

describe('brute force', () => {
  test('per source: raised on the failure that crosses the threshold, updated after, resolved when quiet', () => {
    const am = new AlertManager();
    const changes: [string, Alert][] = [];
    am.subscribe((a, c) => changes.push([c, structuredClone(a)]));
    const d = new BruteForceDetector(am, { ...DEFAULT_BRUTEFORCE, perSource: 5, perUser: 100, sprayUsers: 100 });
    for (let i = 0; i < 4; i++) d.onEvent(auth(1000 + i, 'admin', '192.0.2.7:5000'));
    d.onEvent(auth(1004, 'admin', '192.0.2.7:5000', 201)); // a success is not a failure
    d.onEvent(auth(1005, 'admin', '198.51.100.9:4000')); // another source
    assert.equal(changes.length, 0);
    d.onEvent(auth(1010, 'admin', '192.0.2.7:5001'));
    assert.equal(changes.length, 1);
    const [kind, a] = changes[0] as [string, Alert];
    assert.equal(kind, 'raised');
    assert.equal(a.rule, 'keystone.bruteforce.source');
    assert.equal(a.subject, '192.0.2.7');
    assert.equal(a.ts, 1010, 'raised at the crossing event');
    assert.equal(a.mitre, 'T1110.001');
    assert.equal(a.details.failures, 5);
    assert.equal(a.evidence.length, 5);
    d.onEvent(auth(1020, 'admin', '192.0.2.7:5002'));
    assert.equal(changes.at(-1)?.[0], 'updated');
    assert.equal(am.active().length, 1);
    d.tick(1020 + 59_000);
    assert.equal(am.active().length, 1, 'not quiet long enough');
    d.tick(1020 + 61_000);
    assert.equal(changes.at(-1)?.[0], 'resolved');
    assert.equal(am.active().length, 0);
  });

  test('the window slides: failures spread thinner than the threshold raise nothing', () => {
    const am = new AlertManager();
    const d = new BruteForceDetector(am, { ...DEFAULT_BRUTEFORCE, perSource: 3, windowSeconds: 10 });
    for (let i = 0; i < 10; i++) d.onEvent(auth(i * 6000, 'admin', '192.0.2.7:1'));
    assert.equal(am.counters.raised, 0);
  });

  test('password spraying (many users, one source) and one user from many sources', () => {
    const am = new AlertManager();
    const d = new BruteForceDetector(am, { ...DEFAULT_BRUTEFORCE, perSource: 100, sprayUsers: 4, perUser: 3 });
    for (let i = 0; i < 4; i++) d.onEvent(auth(1000 + i, `user${i}`, '192.0.2.8:1'));
    assert.deepEqual(
      am.active().map((a) => [a.rule, a.subject]),
      [['keystone.bruteforce.spray', '192.0.2.8']],
    );
    for (let i = 0; i < 3; i++) d.onEvent(auth(2000 + i, 'carol', `203.0.113.${i + 1}:1`));
    assert.ok(am.active().some((a) => a.rule === 'keystone.bruteforce.user' && a.subject === 'carol@Default'));
  });

  test('behind a trusted proxy the client is X-Forwarded-For; from anyone else the header is ignored', () => {
    const am = new AlertManager();
    const d = new BruteForceDetector(am, { ...DEFAULT_BRUTEFORCE, perSource: 2, trustedProxies: ['192.0.2.1'] });
    d.onEvent(auth(1, 'a', '192.0.2.1:1', 401, { forwarded_for: '203.0.113.50' }));
    d.onEvent(auth(2, 'a', '192.0.2.1:2', 401, { forwarded_for: '203.0.113.50' }));
    assert.equal(am.active()[0]?.subject, '203.0.113.50');
    const am2 = new AlertManager();
    const d2 = new BruteForceDetector(am2, { ...DEFAULT_BRUTEFORCE, perSource: 2 });
    d2.onEvent(auth(1, 'a', '192.0.2.9:1', 401, { forwarded_for: '203.0.113.50' }));
    d2.onEvent(auth(2, 'a', '192.0.2.9:2', 401, { forwarded_for: '203.0.113.51' }));
    assert.equal(am2.active()[0]?.subject, '192.0.2.9');
  });

  test('raises are rate-limited per rule; suppressed ones are counted', () => {
    const am = new AlertManager({ maxRaisesPerRulePerMinute: 2 });
    const d = new BruteForceDetector(am, { ...DEFAULT_BRUTEFORCE, perSource: 1, perUser: 1000, sprayUsers: 1000 });
    for (let i = 0; i < 5; i++) d.onEvent(auth(1000 + i, 'x', `192.0.2.${i + 10}:1`));
    assert.equal(am.counters.raised, 2);
    assert.equal(am.counters.suppressed, 3);
  });
});
