// The agent's one configuration file (YAML), validated with errors that name
// the field: `bgp.neighbors[1].remote_as: expected an integer 1..4294967295`.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_PIN_ROOT } from './ebpf/index.js';
import { type Exposure, ExposureError, normalizeExposure } from './dataplane/exposure.js';
import { parseRemote } from './ovn/ovsdb.js';
import { parseBridgeMappings } from './ovn/source.js';
import { DEFAULT_CAPTURE_SERVICES } from './trace/processes.js';
import { DEFAULT_SENSITIVE_PATHS } from './trace/tracer.js';

export interface AgentConfig {
  pinRoot: string;
  /** Network namespace of the node (the lab's); default: the agent's own. */
  netns?: string;
  stateDir: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  dataplane: {
    providerInterfaces: string[];
    xdpMode: 'auto' | 'native' | 'generic';
    returnInterfaces: string[];
    maxExposures: number;
    maxBlockRules: number;
  };
  bgp?: {
    asn: number;
    routerId: string;
    neighbors: { address: string; remoteAs: number; families: ('ipv4' | 'ipv6')[] }[];
    frr: { netns?: string; pathspace?: string; vtysh: string };
  };
  /** Learn exposures from OVN (ovn-bgp-agent's options in docs/ovn.md). */
  ovn?: {
    mode: 'sb' | 'nb';
    connection: string;
    ssl?: { privateKey: string; certificate: string; caCert: string };
    ovsConnection: string;
    chassis?: string[];
    bridgeMappings?: string;
    exposeTenantNetworks: boolean;
    resyncSeconds: number;
  };
  api: { listen: string };
  exposures: Exposure[];
  /** Kernel tracing of the OpenStack services (docs/tracing.md). */
  trace: {
    enabled: boolean;
    captureBytes: number;
    ringBytes: number;
    sensitivePaths: string[];
    rulesFile?: string;
    services?: string[];
    captureServices: string[];
  };
  /** Detectors over the traced events (docs/analytics.md). */
  analytics: {
    enabled: boolean;
    profilesDir: string;
    bruteforce: {
      windowSeconds: number;
      perSource: number;
      perUser: number;
      sprayUsers: number;
      recoverySeconds: number;
      trustedProxies: string[];
      blockSeconds: number;
    };
  };
  /** Where events are kept. */
  storage: {
    enabled: boolean;
    path: string;
    retentionDays: number;
    maxSizeMb: number;
    queueEvents: number;
  };
}

/** Is the data plane configured (provider NICs listed)? */
export function dataplaneEnabled(c: AgentConfig): boolean {
  return c.dataplane.providerInterfaces.length > 0;
}

export class ConfigError extends Error {
  constructor(
    readonly path: string,
    message: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ''}${path}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Obj = Record<string, unknown>;

class Reader {
  constructor(private readonly file?: string) {}
  fail(path: string, msg: string): never {
    throw new ConfigError(path, msg, this.file);
  }
  obj(v: unknown, path: string): Obj {
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(path, 'expected a mapping');
    return v as Obj;
  }
  known(o: Obj, path: string, keys: string[]): void {
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.fail(path ? `${path}.${k}` : k, `unknown setting (known: ${keys.join(', ')})`);
  }
  str(o: Obj, key: string, path: string, def?: string): string {
    const v = o[key] ?? def;
    if (typeof v !== 'string' || v === '') this.fail(`${path}${key}`, def === undefined && o[key] === undefined ? 'required' : 'expected a non-empty string');
    return v;
  }
  optStr(o: Obj, key: string, path: string): string | undefined {
    return o[key] === undefined ? undefined : this.str(o, key, path);
  }
  int(o: Obj, key: string, path: string, min: number, max: number, def?: number): number {
    const v = o[key] ?? def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(`${path}${key}`, `expected an integer ${min}..${max}`);
    return v;
  }
  list(o: Obj, key: string, path: string): unknown[] {
    const v = o[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(`${path}${key}`, 'expected a list');
    return v;
  }
  strList(o: Obj, key: string, path: string): string[] {
    return this.list(o, key, path).map((x, i) => {
      if (typeof x !== 'string' || x === '') this.fail(`${path}${key}[${i}]`, 'expected a string');
      return x;
    });
  }
  oneOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[], def: T): T {
    const v = o[key] ?? def;
    if (!values.includes(v as T)) this.fail(`${path}${key}`, `expected one of ${values.join(', ')}`);
    return v as T;
  }
}

/** Validate a parsed configuration object. */
export function parseConfig(raw: unknown, file?: string): AgentConfig {
  const r = new Reader(file);
  const top = r.obj(raw, '');
  r.known(top, '', ['pin_root', 'netns', 'state_dir', 'log_level', 'dataplane', 'bgp', 'ovn', 'api', 'exposures', 'trace', 'storage', 'analytics']);
  const dp = r.obj(top.dataplane, 'dataplane');
  r.known(dp, 'dataplane', ['provider_interfaces', 'xdp_mode', 'return_interfaces', 'max_exposures', 'max_block_rules']);
  const cfg: AgentConfig = {
    pinRoot: r.str(top, 'pin_root', '', DEFAULT_PIN_ROOT),
    stateDir: r.str(top, 'state_dir', '', '/var/lib/stackbpf'),
    logLevel: r.oneOf(top, 'log_level', '', ['debug', 'info', 'warn', 'error'] as const, 'info'),
    dataplane: {
      providerInterfaces: r.strList(dp, 'provider_interfaces', 'dataplane.'),
      xdpMode: r.oneOf(dp, 'xdp_mode', 'dataplane.', ['auto', 'native', 'generic'] as const, 'auto'),
      returnInterfaces: r.strList(dp, 'return_interfaces', 'dataplane.'),
      maxExposures: r.int(dp, 'max_exposures', 'dataplane.', 1, 4_000_000, 131072),
      maxBlockRules: r.int(dp, 'max_block_rules', 'dataplane.', 1, 1_000_000, 65536),
    },
    api: { listen: '127.0.0.1:9180' },
    exposures: [],
    trace: {
      enabled: true,
      captureBytes: 1024,
      ringBytes: 16 << 20,
      sensitivePaths: [...DEFAULT_SENSITIVE_PATHS],
      captureServices: [...DEFAULT_CAPTURE_SERVICES],
    },
    storage: { enabled: true, path: '', retentionDays: 7, maxSizeMb: 1024, queueEvents: 200_000 },
    analytics: {
      enabled: true,
      profilesDir: '',
      bruteforce: { windowSeconds: 60, perSource: 10, perUser: 8, sprayUsers: 5, recoverySeconds: 60, trustedProxies: [], blockSeconds: 0 },
    },
  };
  const netns = r.optStr(top, 'netns', '');
  if (netns) cfg.netns = netns;
  const needsDataplane = top.bgp !== undefined || top.ovn !== undefined || r.list(top, 'exposures', '').length > 0 || cfg.dataplane.returnInterfaces.length > 0;
  if (cfg.dataplane.providerInterfaces.length === 0 && needsDataplane)
    r.fail('dataplane.provider_interfaces', 'list at least one provider NIC (bgp, ovn, exposures and return_interfaces need the data plane)');
  if (!cfg.pinRoot.startsWith('/sys/fs/bpf')) r.fail('pin_root', 'must be a directory under /sys/fs/bpf');

  if (top.bgp !== undefined) {
    const b = r.obj(top.bgp, 'bgp');
    r.known(b, 'bgp', ['asn', 'router_id', 'neighbors', 'frr']);
    const routerId = r.str(b, 'router_id', 'bgp.');
    if (isIP(routerId) !== 4) r.fail('bgp.router_id', 'expected an IPv4 address');
    const frr = r.obj(b.frr, 'bgp.frr');
    r.known(frr, 'bgp.frr', ['netns', 'pathspace', 'vtysh']);
    const neighbors = r.list(b, 'neighbors', 'bgp.').map((n, i) => {
      const p = `bgp.neighbors[${i}].`;
      const o = r.obj(n, p.slice(0, -1));
      r.known(o, p.slice(0, -1), ['address', 'remote_as', 'families']);
      const address = r.str(o, 'address', p);
      if (!isIP(address)) r.fail(`${p}address`, `"${address}" is not an IP address`);
      const families = o.families === undefined ? (isIP(address) === 4 ? ['ipv4'] : ['ipv6']) : r.strList(o, 'families', p);
      families.forEach((f, j) => {
        if (f !== 'ipv4' && f !== 'ipv6') r.fail(`${p}families[${j}]`, 'expected ipv4 or ipv6');
      });
      return { address, remoteAs: r.int(o, 'remote_as', p, 1, 4294967295), families: families as ('ipv4' | 'ipv6')[] };
    });
    if (neighbors.length === 0) r.fail('bgp.neighbors', 'list at least one neighbour');
    cfg.bgp = { asn: r.int(b, 'asn', 'bgp.', 1, 4294967295), routerId, neighbors, frr: { vtysh: r.str(frr, 'vtysh', 'bgp.frr.', '/usr/bin/vtysh') } };
    const fns = r.optStr(frr, 'netns', 'bgp.frr.');
    if (fns) cfg.bgp.frr.netns = fns;
    const ps = r.optStr(frr, 'pathspace', 'bgp.frr.');
    if (ps) cfg.bgp.frr.pathspace = ps;
  }
  if (top.ovn !== undefined) {
    const o = r.obj(top.ovn, 'ovn');
    r.known(o, 'ovn', ['mode', 'connection', 'ssl', 'ovs_connection', 'chassis', 'bridge_mappings', 'expose_tenant_networks', 'resync_seconds']);
    const mode = r.oneOf(o, 'mode', 'ovn.', ['sb', 'nb'] as const, 'sb');
    const connection = r.str(o, 'connection', 'ovn.', mode === 'sb' ? 'tcp:127.0.0.1:6642' : 'tcp:127.0.0.1:6641');
    for (const part of connection.split(',')) {
      try {
        parseRemote(part.trim());
      } catch (err) {
        r.fail('ovn.connection', (err as Error).message);
      }
    }
    if (o.expose_tenant_networks !== undefined && typeof o.expose_tenant_networks !== 'boolean') r.fail('ovn.expose_tenant_networks', 'expected true or false');
    cfg.ovn = {
      mode,
      connection,
      ovsConnection: r.str(o, 'ovs_connection', 'ovn.', 'unix:/var/run/openvswitch/db.sock'),
      exposeTenantNetworks: o.expose_tenant_networks === true,
      resyncSeconds: r.int(o, 'resync_seconds', 'ovn.', 0, 86400, 300),
    };
    if (o.chassis !== undefined) cfg.ovn.chassis = typeof o.chassis === 'string' ? [r.str(o, 'chassis', 'ovn.')] : r.strList(o, 'chassis', 'ovn.');
    const bm = r.optStr(o, 'bridge_mappings', 'ovn.');
    if (bm !== undefined) {
      try {
        parseBridgeMappings(bm, 'ovn.bridge_mappings');
      } catch (err) {
        r.fail('ovn.bridge_mappings', (err as Error).message.replace(/^ovn\.bridge_mappings: /, ''));
      }
      cfg.ovn.bridgeMappings = bm;
    }
    if (o.ssl !== undefined) {
      const sl = r.obj(o.ssl, 'ovn.ssl');
      r.known(sl, 'ovn.ssl', ['private_key', 'certificate', 'ca_cert']);
      cfg.ovn.ssl = {
        privateKey: r.str(sl, 'private_key', 'ovn.ssl.'),
        certificate: r.str(sl, 'certificate', 'ovn.ssl.'),
        caCert: r.str(sl, 'ca_cert', 'ovn.ssl.'),
      };
    }
    if (connection.includes('ssl:') && !cfg.ovn.ssl) r.fail('ovn.ssl', 'an ssl: connection needs private_key, certificate and ca_cert');
  }
  const api = r.obj(top.api, 'api');
  r.known(api, 'api', ['listen']);
  cfg.api.listen = r.str(api, 'listen', 'api.', '127.0.0.1:9180');
  if (!/^unix:\/.+|^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d{1,5}$/.test(cfg.api.listen)) {
    r.fail('api.listen', 'expected unix:/path or a loopback address:port (the API has no authentication)');
  }
  const bool = (o: Obj, key: string, path: string, def: boolean): boolean => {
    if (o[key] === undefined) return def;
    if (typeof o[key] !== 'boolean') r.fail(`${path}${key}`, 'expected true or false');
    return o[key] as boolean;
  };
  const tr = r.obj(top.trace, 'trace');
  r.known(tr, 'trace', ['enabled', 'capture_bytes', 'ring_bytes', 'sensitive_paths', 'rules_file', 'services', 'capture_services']);
  cfg.trace.enabled = bool(tr, 'enabled', 'trace.', true);
  cfg.trace.captureBytes = r.int(tr, 'capture_bytes', 'trace.', 64, 2048, 1024);
  cfg.trace.ringBytes = r.int(tr, 'ring_bytes', 'trace.', 1 << 20, 1 << 30, 16 << 20);
  if ((cfg.trace.ringBytes & (cfg.trace.ringBytes - 1)) !== 0) r.fail('trace.ring_bytes', 'expected a power of two (e.g. 16777216)');
  if (tr.sensitive_paths !== undefined) cfg.trace.sensitivePaths = r.strList(tr, 'sensitive_paths', 'trace.');
  cfg.trace.sensitivePaths.forEach((p, i) => {
    if (!p.startsWith('/')) r.fail(`trace.sensitive_paths[${i}]`, `"${p}" is not an absolute path`);
    if (Buffer.byteLength(p) > 127) r.fail(`trace.sensitive_paths[${i}]`, 'longer than 127 bytes');
  });
  const rules = r.optStr(tr, 'rules_file', 'trace.');
  if (rules) cfg.trace.rulesFile = rules;
  if (tr.services !== undefined) cfg.trace.services = r.strList(tr, 'services', 'trace.');
  if (tr.capture_services !== undefined) cfg.trace.captureServices = r.strList(tr, 'capture_services', 'trace.');
  const st = r.obj(top.storage, 'storage');
  r.known(st, 'storage', ['enabled', 'path', 'retention_days', 'max_size_mb', 'queue_events']);
  cfg.storage.enabled = bool(st, 'enabled', 'storage.', true);
  cfg.storage.path = r.str(st, 'path', 'storage.', `${cfg.stateDir}/events.db`);
  cfg.storage.retentionDays = r.int(st, 'retention_days', 'storage.', 1, 3650, 7);
  cfg.storage.maxSizeMb = r.int(st, 'max_size_mb', 'storage.', 16, 1 << 20, 1024);
  cfg.storage.queueEvents = r.int(st, 'queue_events', 'storage.', 1000, 10_000_000, 200_000);
  const an = r.obj(top.analytics, 'analytics');
  r.known(an, 'analytics', ['enabled', 'profiles_dir', 'bruteforce']);
  cfg.analytics.enabled = bool(an, 'enabled', 'analytics.', true);
  cfg.analytics.profilesDir = r.str(an, 'profiles_dir', 'analytics.', `${cfg.stateDir}/profiles`);
  const bf = r.obj(an.bruteforce, 'analytics.bruteforce');
  r.known(bf, 'analytics.bruteforce', ['window_seconds', 'per_source', 'per_user', 'spray_users', 'recovery_seconds', 'trusted_proxies', 'block_seconds']);
  const p = 'analytics.bruteforce.';
  cfg.analytics.bruteforce = {
    windowSeconds: r.int(bf, 'window_seconds', p, 1, 86400, 60),
    perSource: r.int(bf, 'per_source', p, 1, 1_000_000, 10),
    perUser: r.int(bf, 'per_user', p, 1, 1_000_000, 8),
    sprayUsers: r.int(bf, 'spray_users', p, 2, 1_000_000, 5),
    recoverySeconds: r.int(bf, 'recovery_seconds', p, 1, 86400, 60),
    trustedProxies: r.strList(bf, 'trusted_proxies', p),
    blockSeconds: r.int(bf, 'block_seconds', p, 0, 30 * 86400, 0),
  };
  cfg.analytics.bruteforce.trustedProxies.forEach((a, i) => {
    if (!isIP(a)) r.fail(`${p}trusted_proxies[${i}]`, `"${a}" is not an IP address`);
  });
  cfg.exposures = r.list(top, 'exposures', '').map((e, i) => {
    const o = r.obj(e, `exposures[${i}]`);
    r.known(o, `exposures[${i}]`, ['prefix', 'target', 'mac', 'vlan', 'owner', 'reason']);
    try {
      normalizeExposure(o as unknown as Exposure);
    } catch (err) {
      if (err instanceof ExposureError) r.fail(`exposures[${i}].${err.field}`, err.message.slice(err.field.length + 2));
      throw err;
    }
    return o as unknown as Exposure;
  });
  return cfg;
}

/** Read and validate a YAML file. */
export function loadConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('(file)', `cannot read: ${(err as Error).message}`, file);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError('(yaml)', (err as Error).message.split('\n')[0] ?? 'invalid YAML', file);
  }
  return parseConfig(raw, file);
}
