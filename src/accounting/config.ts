// The accounting module's configuration section (docs/accounting.md).
import { bool, defaultedSection, int, str, strList } from '../schema.js';

const prefixList = () =>
  strList().check((ctx) => {
    for (const p of ctx.value) {
      if (!/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(p)) ctx.issues.push({ code: 'custom', input: p, message: `${p}: expected ADDR or ADDR/LEN` });
    }
  });

export const accountingSection = defaultedSection({
  enabled: bool(true).describe('account the instances libvirt runs here (and the traced services)'),
  interval_seconds: int(1, 60, 1).describe('resolution: one reading of the kernel counters per interval'),
  libvirt_dir: str().default('/run/libvirt/qemu').describe("libvirt's status files of the running domains"),
  host: str().optional().describe("the node's name in samples (default: the hostname)"),
  east_west: prefixList()
    .default(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'])
    .describe('the tenant networks: traffic to or from these is east-west; any other IP address is north-south'),
  node_services: prefixList()
    .default(['169.254.169.254/32', 'fe80::/10', 'ff00::/8', '224.0.0.0/4', '255.255.255.255/32'])
    .describe("the node's own services and the local segment: metadata, link-local and multicast (NDP, MLD); DHCP is recognised by its ports"),
  max_taps: int(16, 1_000_000, 1024).describe('taps counted at once (per-CPU memory: 2 slots of 176 bytes per tap per CPU)'),
  balloon_seconds: int(0, 3600, 10).describe(
    "read memory.usage (the guests' balloon figures) through libvirt's read-only API this often, for every domain in one virsh call; 0: never",
  ),
  orphan_seconds: int(1, 3600, 30).describe('a tap no domain claims for this long is reported'),
  tap_namespaces: strList()
    .default([])
    .describe(
      "network namespaces (names under /run/netns or paths) whose tap devices are counted from the moment they appear, besides the agent's own and those its instances run in",
    ),
  services: bool(true).describe('account the traced OpenStack services too (needs tracing)'),
  path: str().optional().describe('usage database (default: STATE_DIR/usage.db)'),
  retention: defaultedSection({
    second_hours: int(1, 168, 1).describe('keep 1-second values this many hours'),
    minute_days: int(1, 90, 1).describe('keep 1-minute values this many days'),
    hour_days: int(1, 3650, 365).describe('keep 1-hour values this many days'),
  }),
  publish: defaultedSection({
    transport_url: str().optional().describe("oslo.messaging transport (rabbit://user:pass@host:5672/): publish samples for Ceilometer's notification agent"),
    exchange: str().default('ceilometer').describe('the control exchange the notification agent listens on'),
    topic: str().default('notifications'),
    interval_seconds: int(1, 3600, 60).describe('publish every resource’s latest samples this often'),
    max_queued: int(100, 10_000_000, 100_000).describe('samples kept while the bus is away; the oldest are dropped beyond'),
    batch: int(1, 10_000, 500).describe('samples per message'),
  }),
});
