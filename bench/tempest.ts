// Tempest's identity API tests (tempest + keystone-tempest-plugin, Debian's
// packages) against a Keystone: benign traffic of the kind a cloud's own CI
// and operators' tooling send, for the detect benchmark. Each run gets its
// own workspace; test failures do not matter here, the requests do.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const tempestMissing = (): string | undefined =>
  existsSync('/usr/bin/tempest') && existsSync('/usr/lib/python3/dist-packages/keystone_tempest_plugin')
    ? undefined
    : 'tempest is missing: apt-get install --no-install-recommends tempest keystone-tempest-plugin';

/** The identity API tests, core and plugin. */
export const IDENTITY_TESTS = '^(tempest\\.api\\.identity|keystone_tempest_plugin\\.tests\\.api)';

export interface TempestResult {
  passed: number;
  failed: number;
  skipped: number;
  seconds: number;
}

/**
 * Compute API tests that need no server to boot (nova-api here has no compute host): keypairs,
 * flavors, limits, quotas, versions, availability zones.
 */
export const COMPUTE_TESTS =
  '^tempest\\.api\\.compute\\.(keypairs|flavors|limits|test_versions|test_quotas|admin\\.test_quotas|admin\\.test_flavors|admin\\.test_flavors_access|admin\\.test_availability_zone)';
/** Network API tests on ML2/OVN: networks, subnets, ports, security groups, routers, extensions, quotas. */
export const NETWORK_TESTS =
  '^tempest\\.api\\.network\\.(test_networks|test_ports|test_security_groups|test_security_groups_negative|test_routers|test_routers_negative|test_extensions|admin\\.test_quotas|test_networks_negative|test_subnetpools_extensions)';

/**
 * Run tempest's API tests matching `regex` (the identity tests by default) against keystoneUrl
 * (…/v3) as admin. `available`: the services tempest may test besides Keystone (found in the
 * catalog); `conf`: more tempest.conf lines.
 */
export async function runTempest(
  dir: string,
  keystoneUrl: string,
  adminPassword: string,
  regex = IDENTITY_TESTS,
  opts: { available?: string[]; conf?: string[] } = {},
): Promise<TempestResult> {
  const missing = tempestMissing();
  if (missing) throw new Error(missing);
  mkdirSync(dir, { recursive: true });
  const ws = join(dir, 'ws');
  // its own workspace registry: nothing under ~/.tempest is touched, no name clashes with an earlier run
  await run('tempest', ['init', '--workspace-path', join(dir, 'workspace.yaml'), '--name', `sbb-${process.pid}-${Date.now()}`, ws], {
    cwd: dir,
    timeout: 60_000,
  });
  writeFileSync(
    join(ws, 'etc', 'tempest.conf'),
    [
      '[DEFAULT]',
      `log_dir = ${join(ws, 'logs')}`,
      '[auth]',
      'admin_username = admin',
      `admin_password = ${adminPassword}`,
      'admin_project_name = admin',
      'admin_domain_name = Default',
      'use_dynamic_credentials = true',
      'create_isolated_networks = false',
      '[identity]',
      `uri_v3 = ${keystoneUrl}`,
      'auth_version = v3',
      'region = RegionOne',
      'v3_endpoint_type = public',
      '[identity-feature-enabled]',
      'api_v2 = false',
      'api_v3 = true',
      'trust = true',
      'project_tags = true',
      'application_credentials = true',
      'access_rules = true',
      '[service_available]',
      ...['nova', 'neutron', 'glance', 'cinder', 'swift'].map((s) => `${s} = ${opts.available?.includes(s) ? 'true' : 'false'}`),
      '[validation]',
      'run_validation = false',
      ...(opts.conf ?? []),
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const t0 = performance.now();
  const out = await run('tempest', ['run', '--regex', regex, '--concurrency', '1'], { cwd: ws, timeout: 1_800_000, maxBuffer: 64 << 20 }).catch(
    (e: { stdout?: string; code?: number }) => {
      // a failing test makes tempest exit 1: its output still says what ran
      if (e.stdout === undefined) throw e;
      return { stdout: e.stdout };
    },
  );
  const count = (what: string): number => Number(new RegExp(`- ${what}: (\\d+)`).exec(out.stdout)?.[1] ?? 0);
  const result = { passed: count('Passed'), failed: count('Failed'), skipped: count('Skipped'), seconds: Math.round((performance.now() - t0) / 1000) };
  if (result.passed + result.failed === 0) throw new Error(`tempest ran no test: ${out.stdout.slice(-2000)}`);
  return result;
}
