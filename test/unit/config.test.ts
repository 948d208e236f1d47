import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, configReference, dataplaneEnabled, loadConfig, parseConfig } from '../../src/config.js';
import { packageRoot } from '../../src/paths.js';
import { DEFAULT_API_ADDRESS } from '../../src/cli/status-cmd.js';
import { createLogger, redact } from '../../src/log.js';

const minimal = { dataplane: { provider_interfaces: ['eth1'] } };

describe('configuration', () => {
  test('no file at all: tracing and storage on, the data plane off', () => {
    const c = parseConfig({});
    assert.equal(dataplaneEnabled(c), false);
    assert.equal(c.trace.enabled, true);
    assert.equal(c.trace.captureBytes, 1024);
    assert.ok(c.trace.sensitivePaths.includes('/etc/keystone/'));
    assert.equal(c.storage.path, '/var/lib/stackbpf/events.db');
    assert.equal(c.storage.retentionDays, 7);
  });

  test('defaults work on a single host', () => {
    const c = parseConfig(minimal);
    assert.equal(c.pinRoot, '/sys/fs/bpf/stackbpf');
    assert.equal(c.dataplane.xdpMode, 'auto');
    assert.equal(c.api.listen, 'unix:/run/stackbpf/api.sock', 'the default listener is the unix socket: no TCP port an unprivileged user could reach');
    assert.equal(c.api.listen, DEFAULT_API_ADDRESS, 'the CLI looks where the agent listens');
    assert.deepEqual(c.api.groupScopes, ['status', 'read']);
    assert.equal(c.bgp, undefined);
    assert.deepEqual(c.exposures, []);
  });

  test('a full configuration is read', () => {
    const c = parseConfig({
      ...minimal,
      netns: 'node',
      bgp: {
        asn: 64999,
        router_id: '192.0.2.2',
        neighbors: [
          { address: '192.0.2.1', remote_as: 65001 },
          { address: '2001:db8::1', remote_as: 65001 },
        ],
        frr: { pathspace: 'x' },
      },
      exposures: [{ prefix: '198.51.100.10', target: 'tap0', mac: '02:00:00:00:00:01', owner: 'vm' }],
      api: { listen: 'unix:/run/stackbpf/api.sock' },
    });
    assert.deepEqual(
      c.bgp?.neighbors.map((n) => n.families),
      [['ipv4'], ['ipv6']],
    );
    assert.equal(c.bgp?.frr.pathspace, 'x');
    assert.equal(c.exposures.length, 1);
  });

  test('errors name the field', () => {
    const cases: [unknown, RegExp][] = [
      [
        { bgp: { asn: 1, router_id: '192.0.2.2', neighbors: [{ address: '192.0.2.1', remote_as: 1 }] } },
        /dataplane.provider_interfaces: list at least one provider NIC/,
      ],
      [{ trace: { capture_bytes: 4096 } }, /trace.capture_bytes: expected an integer 64..2048/],
      [{ trace: { ring_bytes: 3_000_000 } }, /trace.ring_bytes: expected a power of two/],
      [{ trace: { sensitive_paths: ['etc/keystone'] } }, /trace.sensitive_paths\[0\]: "etc\/keystone" is not an absolute path/],
      [{ trace: { enabled: 'yes' } }, /trace.enabled: expected true or false/],
      [{ storage: { retention_days: 0 } }, /storage.retention_days: expected an integer/],
      [{ storage: { compress: true } }, /storage.compress: unknown setting/],
      [{ ...minimal, bogus: 1 }, /bogus: unknown setting/],
      [{ dataplane: { provider_interfaces: 'eth1' } }, /dataplane.provider_interfaces: expected a list/],
      [{ ...minimal, dataplane: { provider_interfaces: ['eth1'], xdp_mode: 'fast' } }, /dataplane.xdp_mode: expected one of auto, native, generic/],
      [{ ...minimal, bgp: { asn: 0, router_id: '192.0.2.2', neighbors: [{ address: '192.0.2.1', remote_as: 1 }] } }, /bgp.asn: expected an integer/],
      [{ ...minimal, bgp: { asn: 1, router_id: 'x', neighbors: [] } }, /bgp.router_id: expected an IPv4 address/],
      [
        {
          ...minimal,
          bgp: {
            asn: 1,
            router_id: '192.0.2.2',
            neighbors: [
              { address: '192.0.2.1', remote_as: 1 },
              { address: 'nope', remote_as: 1 },
            ],
          },
        },
        /bgp.neighbors\[1\].address: "nope" is not an IP address/,
      ],
      [{ ...minimal, api: { listen: '0.0.0.0:9180' } }, /api.listen: expected unix:\/path or a loopback address/],
      [{ api: { listen: '127.0.0.1:9180' } }, /api.tokens_file: a TCP listener needs bearer tokens \(nothing is anonymous\)/],
      [{ api: { group_scopes: ['root'] } }, /api.group_scopes\[0\]: expected one of status, read, admin/],
      [{ ...minimal, exposures: [{ prefix: '198.51.100.1', target: 'tap0', mac: 'xx', owner: 'a' }] }, /exposures\[0\].mac: "xx" is not a MAC address/],
      [{ ...minimal, pin_root: '/tmp/pins' }, /pin_root: must be a directory under \/sys\/fs\/bpf/],
    ];
    for (const [raw, msg] of cases)
      assert.throws(
        () => parseConfig(raw),
        (e: unknown) => e instanceof ConfigError && msg.test(e.message),
        String(msg),
      );
  });

  test('files: unreadable and invalid YAML are clear errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackbpf-cfg-'));
    try {
      assert.throws(() => loadConfig(join(dir, 'missing.yaml')), /missing.yaml: \(file\): cannot read/);
      writeFileSync(join(dir, 'bad.yaml'), 'dataplane: [unclosed');
      assert.throws(() => loadConfig(join(dir, 'bad.yaml')), /bad.yaml: \(yaml\)/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

describe('logs', () => {
  test('secrets are redacted, at any depth', () => {
    assert.deepEqual(redact({ user: 'admin', password: 'hunter2', nested: { Authorization: 'Bearer x', token: 't', list: [{ api_key: 'k' }] } }), {
      user: 'admin',
      password: '[redacted]',
      nested: { Authorization: '[redacted]', token: '[redacted]', list: [{ api_key: '[redacted]' }] },
    });
    const lines: string[] = [];
    createLogger({ write: (l) => lines.push(l) }).info('login', { password: 'hunter2' });
    assert.equal(lines.length, 1);
    assert.doesNotMatch(lines[0] as string, /hunter2/);
  });
  test('quiet by default: debug is not printed', () => {
    const lines: string[] = [];
    createLogger({ write: (l) => lines.push(l) }).debug('noise');
    assert.equal(lines.length, 0);
  });
});

describe('configuration reference', () => {
  test('docs/configuration.md carries the table the schema generates', () => {
    const doc = readFileSync(join(packageRoot, 'docs/configuration.md'), 'utf8');
    const m = /<!-- config-reference:start -->\n([\s\S]*?)<!-- config-reference:end -->/.exec(doc);
    assert.ok(m, 'docs/configuration.md has the reference markers');
    assert.equal(m[1], configReference(), 'docs/configuration.md is stale: paste `stackbpf config reference` between the markers');
  });

  test('every setting of the schema is in the reference, defaults included', () => {
    const ref = configReference();
    for (const path of [
      'pin_root',
      'trace.capture_bytes',
      'analytics.bruteforce.block_seconds',
      'bgp.neighbors[].remote_as',
      'exposures[].prefix',
      'storage.queue_events',
    ]) {
      assert.ok(ref.includes(`| \`${path}\` |`), path);
    }
    assert.match(ref, /\| `trace.capture_bytes` \| integer 64..2048 \| `1024` \|/);
  });
});
