// The analytics' configuration section (docs/analytics.md).
import { parsePrefix } from '../ebpf/codec.js';
import { bool, defaultedSection, int, ipAddress, list, str } from '../schema.js';

/** "a.b.c.d/n" or "x::/n" (or an address alone) */
function prefix() {
  return str().check((ctx) => {
    try {
      parsePrefix(ctx.value);
    } catch (err) {
      ctx.issues.push({ code: 'custom', input: ctx.value, message: (err as Error).message });
    }
  });
}

export const analyticsSection = defaultedSection({
  enabled: bool(true),
  profiles_dir: str().optional().describe('one YAML file per service (default: <state_dir>/profiles)'),
  bruteforce: defaultedSection({
    window_seconds: int(1, 86400, 60).describe('failed POST /v3/auth/tokens counted in this sliding window'),
    per_source: int(1, 1_000_000, 10).describe('failures from one address'),
    per_user: int(1, 1_000_000, 8).describe('failures for one user name'),
    spray_users: int(2, 1_000_000, 5).describe('distinct user names from one address'),
    recovery_seconds: int(1, 86400, 60).describe('quiet this long: the alert is resolved'),
    trusted_proxies: list(ipAddress()).default([]).describe('load balancers whose X-Forwarded-For names the client'),
    block_seconds: int(0, 30 * 86400, 0).describe('> 0 (opt-in): drop the source at XDP this long; needs the data plane'),
  }),
  access: defaultedSection({
    window_seconds: int(1, 86400, 60).describe('403 and 404 bursts are counted in this sliding window'),
    forbidden_per_identity: int(1, 1_000_000, 10).describe('403 answers to one identity (user or token) ...'),
    forbidden_per_source: int(1, 1_000_000, 20).describe('... or to one source address ...'),
    forbidden_routes: int(1, 1_000, 3).describe('... across at least this many routes'),
    not_found_per_identity: int(1, 1_000_000, 20).describe('404 answers to GETs of one identity ...'),
    not_found_per_source: int(1, 1_000_000, 40).describe('... or of one source address ...'),
    not_found_ids: int(1, 100_000, 15).describe('... over at least this many ids'),
    guessing_sources: int(2, 1_000_000, 5).describe('distinct sources failing to log in as one user name ...'),
    guessing_window_seconds: int(60, 7 * 86400, 1800).describe('... within this window'),
    trusted_sources: list(ipAddress())
      .default([])
      .describe('service hosts and proxies: a token moving to or from them is not a replay, their 403/404 are not counted per source'),
    metadata_clients: list(str())
      .default(['neutron-ovn-metadata-agent', 'neutron-metadata-agent', 'nova-api-metadata', 'haproxy'])
      .describe('services (or commands) whose processes may connect to 169.254.169.254'),
    service_project: str().default('service').describe("the project of the services' own users"),
    instance_networks: list(prefix())
      .default([])
      .describe("where instances live (tenant and provider ranges): an accepted connection from there on a traced service's port is an alert"),
    block_seconds: int(0, 30 * 86400, 0).describe(
      '> 0 (opt-in): drop the source of a token replay, a revoked token, a 403 or 404 burst at XDP this long; needs the data plane',
    ),
  }).describe('unauthorized access: token replay and revocation, 403 probing, 404 enumeration, distributed guessing, service credentials, metadata'),
}).describe('detectors over the traced events (docs/analytics.md)');
