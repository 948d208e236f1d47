// The agent's one configuration file (YAML), described by one schema (zod):
// the core settings here, each module's sections in its own folder
// (src/*/config.ts). Defaults are stated once, in the schema; errors name the
// setting and what is allowed (`bgp.neighbors[1].remote_as: expected an
// integer 1..4294967295`); unknown settings are refused. The reference in
// docs/configuration.md is generated from this schema (configReference).
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { MODULES } from './modules.js';
import { SCOPES } from './api/scopes.js';
import { type CamelDeep, camelKey, list, oneOf, section, str } from './schema.js';

const DEFAULT_PIN_ROOT = '/sys/fs/bpf/stackbpf';
export const DEFAULT_API_SOCKET = 'unix:/run/stackbpf/api.sock';

/** Settings every module may read. */
export const coreSections = {
  pin_root: str()
    .check((ctx) => {
      if (!ctx.value.startsWith('/sys/fs/bpf')) ctx.issues.push({ code: 'custom', input: ctx.value, message: 'must be a directory under /sys/fs/bpf' });
    })
    .default(DEFAULT_PIN_ROOT)
    .describe('bpffs directory for pinned programs, links and maps'),
  netns: str().optional().describe("the node's network namespace (default: the agent's own)"),
  state_dir: str().default('/var/lib/stackbpf').describe('API-added exposures, blocks, profiles and the event store are kept here'),
  log_level: oneOf(['debug', 'info', 'warn', 'error'], 'info').describe('JSON lines on stderr'),
  api: section({
    listen: str()
      .check((ctx) => {
        if (!/^unix:\/.+|^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d{1,5}$/.test(ctx.value))
          ctx.issues.push({ code: 'custom', input: ctx.value, message: 'expected unix:/path or a loopback address:port' });
      })
      .default(DEFAULT_API_SOCKET)
      .describe('unix:/path (root, and the members of api.group) or a loopback address:port (bearer tokens from api.tokens_file only)'),
    group: str().default('stackbpf').describe('the group that may connect to the unix socket (mode 0660); without such a group, root only'),
    group_scopes: list(z.enum(SCOPES, { error: `expected one of ${SCOPES.join(', ')}` }))
      .default(['status', 'read'])
      .describe('what a member of api.group may do on the unix socket (root may do everything): status, read, admin'),
    tokens_file: str().optional().describe('bearer tokens (YAML: tokens: [{name, scopes, sha256}]), root-owned, mode 0600; needed by a TCP listener'),
  })
    .prefault({})
    .describe('the local HTTP API'),
};

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type ModuleSections = UnionToIntersection<(typeof MODULES)[number]['sections']>;

/** Every top-level section, from the modules that own them (src/modules.ts: one line per module). */
export const moduleSections = Object.assign({}, ...MODULES.map((m) => m.sections)) as ModuleSections;

export const configSchema = section({ ...coreSections, ...moduleSections }).superRefine((c, ctx) => {
  const needsDataplane = c.bgp !== undefined || c.ovn !== undefined || c.exposures.length > 0 || c.dataplane.return_interfaces.length > 0;
  if (c.dataplane.provider_interfaces.length === 0 && needsDataplane) {
    ctx.addIssue({
      code: 'custom',
      path: ['dataplane', 'provider_interfaces'],
      message: 'list at least one provider NIC (bgp, ovn, exposures and return_interfaces need the data plane)',
    });
  }
  if (!c.api.listen.startsWith('unix:') && !c.api.tokens_file)
    ctx.addIssue({
      code: 'custom',
      path: ['api', 'tokens_file'],
      message: 'a TCP listener needs bearer tokens (nothing is anonymous): give api.tokens_file, or listen on unix:/path',
    });
  if (c.ovn?.connection?.includes('ssl:') && !c.ovn.ssl)
    ctx.addIssue({ code: 'custom', path: ['ovn', 'ssl'], message: 'an ssl: connection needs private_key, certificate and ca_cert' });
});

type Parsed = CamelDeep<z.output<typeof configSchema>>;
type Neighbor = NonNullable<Parsed['bgp']>['neighbors'][number];

/** The validated configuration, defaults applied (those that follow other settings too). */
export type StackbpfConfig = Omit<Parsed, 'storage' | 'analytics' | 'ovn' | 'bgp'> & {
  storage: Parsed['storage'] & { path: string };
  analytics: Parsed['analytics'] & { profilesDir: string };
  ovn?: Omit<NonNullable<Parsed['ovn']>, 'connection' | 'chassis'> & { connection: string; chassis?: string[] };
  bgp?: Omit<NonNullable<Parsed['bgp']>, 'neighbors'> & { neighbors: (Neighbor & { families: ('ipv4' | 'ipv6')[] })[] };
};
/** Settings every module may read (declared, not derived: the modules' own types depend on it). */
export interface CoreConfig {
  pinRoot: string;
  netns?: string | undefined;
  stateDir: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  api: { listen: string; group: string; groupScopes: ('status' | 'read' | 'admin')[]; tokensFile?: string | undefined };
}

/** Is the data plane configured (provider NICs listed)? */
export function dataplaneEnabled(c: StackbpfConfig): boolean {
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

function camelize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(camelize);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [camelKey(k), camelize(x)]));
  return v;
}

/** A key with no value in YAML (`trace:`) means "not set": its defaults apply. */
function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== null)
        .map(([k, x]) => [k, dropNulls(x)]),
    );
  return v;
}

function pathOf(path: PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** Validate a parsed configuration object; throws ConfigError naming the first bad setting. */
export function parseConfig(raw: unknown, file?: string): StackbpfConfig {
  const r = configSchema.safeParse(dropNulls(raw ?? {}), { reportInput: true });
  if (!r.success) {
    const iss = r.error.issues[0] as z.core.$ZodIssue;
    const path = iss.code === 'unrecognized_keys' ? [...iss.path, iss.keys[0] as string] : iss.path;
    const message = iss.code === 'invalid_type' && iss.input === undefined ? 'required' : iss.message;
    throw new ConfigError(pathOf(path) || '(top)', message, file);
  }
  const c = camelize(r.data) as Parsed;
  const ovn = c.ovn
    ? {
        ...c.ovn,
        connection: c.ovn.connection ?? (c.ovn.mode === 'sb' ? 'tcp:127.0.0.1:6642' : 'tcp:127.0.0.1:6641'),
        chassis: typeof c.ovn.chassis === 'string' ? [c.ovn.chassis] : c.ovn.chassis,
      }
    : undefined;
  const bgp = c.bgp
    ? { ...c.bgp, neighbors: c.bgp.neighbors.map((n: Neighbor) => ({ ...n, families: n.families ?? [n.address.includes(':') ? 'ipv6' : 'ipv4'] })) }
    : undefined;
  const out = {
    ...c,
    storage: { ...c.storage, path: c.storage.path ?? `${c.stateDir}/events.db` },
    analytics: { ...c.analytics, profilesDir: c.analytics.profilesDir ?? `${c.stateDir}/profiles` },
  } as StackbpfConfig;
  if (ovn) out.ovn = ovn as StackbpfConfig['ovn'];
  else delete out.ovn;
  if (bgp) out.bgp = bgp as StackbpfConfig['bgp'];
  else delete out.bgp;
  return out;
}

/** Read and validate a YAML file. */
export function loadConfig(file: string): StackbpfConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('(file)', `cannot read: ${(err as Error).message}`, file);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw new ConfigError('(yaml)', (err as Error).message.split('\n')[0] ?? 'invalid YAML', file);
  }
  return parseConfig(raw, file);
}

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
}

function typeText(s: JsonSchema): string {
  if (s.anyOf) return s.anyOf.map(typeText).join(' or ');
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeText(s.items) : 'values'}`;
  if (s.type === 'integer') return s.minimum !== undefined && s.maximum !== undefined ? `integer ${s.minimum}..${s.maximum}` : 'integer';
  if (s.type === 'boolean') return 'true or false';
  if (s.type === 'object') return 'mapping';
  return String(s.type ?? 'value');
}

/** The reference table of every setting, generated from the schema (docs/configuration.md embeds it). */
export function configReference(): string {
  const root = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const rows: string[] = ['| setting | type | default | what |', '| --- | --- | --- | --- |'];
  const walk = (s: JsonSchema, path: string, required: boolean): void => {
    const def =
      s.default === undefined || (typeof s.default === 'object' && s.default !== null && !Array.isArray(s.default))
        ? required
          ? 'required'
          : ''
        : `\`${JSON.stringify(s.default)}\``;
    if (path) rows.push(`| \`${path}\` | ${typeText(s)} | ${def} | ${(s.description ?? '').replace(/\|/g, '\\|')} |`);
    const obj = s.type === 'object' ? s : s.type === 'array' && s.items?.type === 'object' ? s.items : undefined;
    if (obj?.properties) {
      for (const [k, v] of Object.entries(obj.properties)) walk(v, `${path}${path ? (obj === s ? '.' : '[].') : ''}${k}`, obj.required?.includes(k) ?? false);
    }
  };
  walk(root, '', false);
  return `${rows.join('\n')}\n`;
}
