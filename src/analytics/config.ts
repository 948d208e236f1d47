// The analytics' configuration section (docs/analytics.md).
import { bool, defaultedSection, int, ipAddress, list, str } from '../schema.js';

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
}).describe('detectors over the traced events (docs/analytics.md)');
