// Service profiles: generalisation, the YAML file and its validation,
// learning, diff, and the drift detector over a profile directory.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AlertManager } from '../../src/analytics/alerts.js';
import { DriftDetector, ProfileSet } from '../../src/analytics/drift.js';
import {
  collapseRoutes,
  diffProfile,
  generalizeApi,
  generalizePath,
  globMatch,
  kernelRules,
  ProfileBuilder,
  ProfileError,
  profileFromYaml,
  profileToYaml,
} from '../../src/analytics/profile.js';
import { denyPathKey, peerKey } from '../../src/trace/enforcement.js';
import type { TraceEvent } from '../../src/trace/event.js';

const ev = (type: TraceEvent['type'], data: Record<string, unknown>, service = 'keystone', ts = 1000): TraceEvent =>
  ({
    ts,
    type,
    service,
    pid: 5,
    tid: 5,
    ppid: 1,
    uid: 0,
    comm: 'x',
    data,
  }) as TraceEvent;

describe('profiles', () => {
  test('generalisation: ids, pids and temporary names become placeholders', () => {
    assert.equal(generalizePath('/proc/1234/stat'), '/proc/*/stat');
    assert.equal(generalizePath('/etc/keystone/fernet-keys/0'), '/etc/keystone/fernet-keys/*');
    assert.equal(generalizePath('/tmp/tmpab3xk9q'), '/tmp/*');
    assert.equal(generalizePath('/etc/keystone/keystone.conf'), '/etc/keystone/keystone.conf');
    assert.equal(generalizeApi('GET', '/v3/users/ecbbb079b78142d5a78d18b5acc2a6bb/projects?x=1'), 'GET /v3/users/{id}/projects');
    assert.equal(generalizeApi('DELETE', '/v2.0/ports/9f1c2a3b-0000-4000-8000-000000000001'), 'DELETE /v2.0/ports/{id}');
    assert.equal(generalizeApi('PUT', '/v3/projects/ecbbb079b78142d5a78d18b5acc2a6bb/tags/tempest-tag-789129952'), 'PUT /v3/projects/{id}/tags/tempest-tag-*');
    assert.equal(generalizeApi('GET', '/v2.0/networks'), 'GET /v2.0/networks', 'the version is not an instance');
    assert.ok(globMatch('/proc/*/stat', '/proc/77/stat'));
    assert.ok(!globMatch('/proc/*/stat', '/proc/77/task/78/stat'));
    assert.ok(globMatch('/usr/lib/python3/**', '/usr/lib/python3/dist-packages/x/y.py'));
  });

  test('learn → YAML → parse gives the same profile; the diff lists only what is new', () => {
    const b = new ProfileBuilder();
    const base = [
      ev('process.exec', { filename: '/usr/bin/uwsgi-core' }),
      ev('file.open', { path: '/etc/keystone/keystone.conf', flags: 'O_RDONLY', result: 3 }),
      ev('file.open', { path: '/proc/77/stat', flags: 'O_RDONLY', result: 4 }),
      ev('file.open', { path: '/var/log/keystone/k.log', flags: 'O_WRONLY|O_CREAT|O_APPEND', result: 5 }),
      ev('net.connect', { remote: '127.0.0.1:3306', result: -115 }),
      ev('http.request', { role: 'server', method: 'GET', path: '/v3/users/ecbbb079b78142d5a78d18b5acc2a6bb' }),
      ev('sql.query', { statement: "SELECT user.id FROM user WHERE user.name = 'alice'" }),
      ev('file.open', { path: '/etc/nope', flags: 'O_RDONLY', result: -2 }), // failed opens are not behaviour
    ];
    for (const e of base) b.add(e);
    const p = b.build('keystone');
    assert.deepEqual(p.files_read, ['/etc/keystone/keystone.conf', '/proc/*/stat']);
    assert.deepEqual(p.files_write, ['/var/log/keystone/k.log']);
    assert.deepEqual(p.api, ['GET /v3/users/{id}']);
    assert.deepEqual(p.sql, ['SELECT user.id FROM user WHERE user.name = ?']);
    const again = profileFromYaml(profileToYaml(p));
    assert.deepEqual(again, p);
    const later = [
      ev('file.open', { path: '/proc/99/stat', flags: 'O_RDONLY', result: 3 }),
      ev('sql.query', { statement: "SELECT user.id FROM user WHERE user.name = 'bob'" }),
      ev('process.exec', { filename: '/bin/sh' }),
      ev('file.open', { path: '/etc/shadow', flags: 'O_RDONLY', result: 3 }),
      ev('file.open', { path: '/etc/shadow', flags: 'O_RDONLY', result: 3 }),
      ev('sql.query', { statement: "SELECT user.id FROM user WHERE user.name = 'x' OR '1'='1'" }),
      ev('file.open', { path: '/etc/shadow', flags: 'O_RDONLY', result: 3 }, 'neutron-server'),
    ];
    assert.deepEqual(
      diffProfile(p, later).map((d) => [d.kind, d.value, d.count]),
      [
        ['exec', '/bin/sh', 1],
        ['files_read', '/etc/shadow', 2],
        ['sql', 'SELECT user.id FROM user WHERE user.name = ? OR ? = ?', 1],
      ],
    );
  });

  test('routes that differ only in an object name collapse; collections do not', () => {
    assert.deepEqual(
      collapseRoutes([
        'GET /v3/projects/p-learn1',
        'GET /v3/projects/p-learn2',
        'GET /v3/projects',
        'GET /v3/users',
        'GET /v3/users/{id}',
        'DELETE /v3/projects/{id}',
      ]),
      ['DELETE /v3/projects/{id}', 'GET /v3/projects', 'GET /v3/projects/*', 'GET /v3/users', 'GET /v3/users/{id}'],
    );
  });

  test('profile files: errors name the field', () => {
    assert.throws(
      () => profileFromYaml('service: k\nmode: watch\n', 'k.yaml'),
      (e: unknown) => e instanceof ProfileError && /k.yaml: mode: expected learn, monitor or enforce/.test(e.message),
    );
    assert.throws(() => profileFromYaml('service: k\nexec: /bin/sh\n', 'k.yaml'), /k.yaml: exec: expected a list/);
    assert.throws(() => profileFromYaml('service: k\nfiles_read: [1]\n', 'k.yaml'), /k.yaml: files_read\[0\]: expected a non-empty string/);
    assert.throws(() => profileFromYaml('service: k\nexecs: []\n', 'k.yaml'), /k.yaml: execs: unknown setting/);
    assert.throws(() => profileFromYaml('mode: monitor\n', 'k.yaml'), /k.yaml: service: required/);
  });

  test('enforce rules: opt-in per rule, validated with the field named, and compiled into the kernel keys', () => {
    const p = profileFromYaml(
      'service: k\nmode: enforce\nenforce:\n  peers: true\n  files_deny: [/etc/shadow]\nexec: [/usr/bin/python3]\npeers: ["127.0.0.1:3306", "unix:/run/x.sock"]\n',
      'k.yaml',
    );
    assert.deepEqual(kernelRules(p), { exec: ['/usr/bin/python3'], peers: ['127.0.0.1:3306', 'unix:/run/x.sock'], filesDeny: ['/etc/shadow'] });
    assert.deepEqual(kernelRules({ ...p, enforce: { exec: false } }), {});
    assert.equal(kernelRules({ ...p, mode: 'monitor' }), undefined);
    assert.deepEqual(profileFromYaml(profileToYaml(p), 'k.yaml'), p, 'the enforce section survives a round trip');
    assert.throws(() => profileFromYaml('service: k\nenforce:\n  peer: true\n', 'k.yaml'), /k.yaml: enforce.peer: unknown rule/);
    assert.throws(() => profileFromYaml('service: k\nenforce:\n  peers: yes please\n', 'k.yaml'), /k.yaml: enforce.peers: expected true or false/);
    assert.throws(
      () => profileFromYaml('service: k\nenforce:\n  files_deny: [etc/shadow]\n', 'k.yaml'),
      /enforce.files_deny\[0\]: expected an absolute path prefix/,
    );
    assert.throws(() => profileFromYaml('service: k\nenforce:\n  files_deny: ["/etc/*"]\n', 'k.yaml'), /enforce.files_deny\[0\].*prefixes only/);
    // peer_allow keys: prefixlen (service 32 + address + port bits), service, IPv4-mapped or IPv6 address, port (network order)
    const host = peerKey('k', 7, '127.0.0.1:3306') as Buffer;
    assert.equal(host.readUInt32LE(0), 32 + 128 + 16);
    assert.equal(host.readUInt32LE(4), 7);
    assert.equal(host.subarray(8, 24).toString('hex'), '00000000000000000000ffff7f000001');
    assert.equal(host.readUInt16BE(24), 3306);
    assert.equal((peerKey('k', 7, '10.0.0.0/8:*') as Buffer).readUInt32LE(0), 32 + 96 + 8);
    const v6 = peerKey('k', 7, '[2001:db8::/32]:*') as Buffer;
    assert.equal(v6.readUInt32LE(0), 32 + 32);
    assert.equal(v6.subarray(8, 12).toString('hex'), '20010db8');
    assert.equal((peerKey('k', 7, '[::1]:5000') as Buffer).readUInt16BE(24), 5000);
    assert.equal(peerKey('k', 7, 'unix:/run/mysqld/mysqld.sock'), undefined);
    assert.throws(() => peerKey('k', 7, '10.0.0.0/8:5672'), /"10.0.0.0\/8:5672" cannot be enforced in the kernel: a network with one port is not a prefix/);
    assert.throws(() => peerKey('k', 7, 'db.example:3306'), /expected HOST:PORT/);
    assert.throws(() => peerKey('k', 7, '300.0.0.1:1'), /not an IPv4 address/);
    const deny = denyPathKey('k', 7, '/etc/shadow');
    assert.equal(deny.readUInt32LE(0), 32 + 11 * 8);
    assert.equal(deny.toString('utf8', 8, 19), '/etc/shadow');
    assert.throws(() => denyPathKey('k', 7, 'shadow'), /absolute path prefix/);
  });

  test('drift: deviations raise alerts by kind; a broken edit is refused and the profile in force stays', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-prof-'));
    try {
      const set = new ProfileSet(dir);
      const am = new AlertManager();
      const d = new DriftDetector(am, set);
      set.save({
        service: 'keystone',
        mode: 'monitor',
        exec: ['/usr/bin/uwsgi-core'],
        files_read: ['/etc/keystone/*'],
        files_write: [],
        peers: ['127.0.0.1:3306'],
        api: [],
        sql: [],
      });
      set.save({ service: 'nova-api', mode: 'learn', exec: [], files_read: [], files_write: [], peers: [], api: [], sql: [] });
      assert.deepEqual(set.load(), { loaded: ['keystone', 'nova-api'], errors: [] });
      d.onEvent(ev('file.open', { path: '/etc/keystone/keystone.conf', flags: 'O_RDONLY', result: 3 }));
      d.onEvent(ev('net.connect', { remote: '127.0.0.1:3306', result: 0 }));
      d.onEvent(ev('process.exec', { filename: '/bin/bash' }, 'nova-api')); // learn mode: silent
      assert.equal(am.counters.raised, 0);
      d.onEvent(ev('process.exec', { filename: '/bin/sh' }));
      d.onEvent(ev('file.open', { path: '/etc/shadow', flags: 'O_RDONLY', result: 3 }));
      d.onEvent(ev('net.connect', { remote: '203.0.113.5:443', result: -115 }));
      const byRule = Object.fromEntries(am.active().map((a) => [a.rule, a]));
      assert.equal(byRule['drift.exec']?.severity, 'high');
      assert.equal(byRule['drift.files_read']?.severity, 'high', '/etc/shadow is a secret file');
      assert.equal(byRule['drift.peers']?.details.value, '203.0.113.5:443');
      writeFileSync(join(dir, 'keystone.yaml'), 'service: keystone\nmode: sometimes\n');
      const r = set.load();
      assert.match(r.errors[0] ?? '', /keystone.yaml: mode: expected/);
      assert.equal(set.get('keystone')?.profile.mode, 'monitor', 'the version in force stays');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
