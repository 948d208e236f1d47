// Which OpenStack service a process belongs to. OpenStack's API services
// often share a comm (every uwsgi worker is `uwsgi_python311`), so a rule
// can match on comm, executable, command line and user, and can pull an
// instance out of the command line (a qemu's instance UUID, an
// ovsdb-server's database). The built-in rules cover the services of a
// Debian OpenStack node; operators add their own in a YAML file, tried
// before the built-in ones. Nothing here reads the kernel's events: the
// tracer asks `identify` for the processes it sees.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { assertRootOnlyWritable, UntrustedFileError } from '../sys/trusted.js';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  comm: string;
  exe: string;
  argv: string[];
  uid: number;
}

export interface Identity {
  service: string;
  /** e.g. the instance UUID of a qemu, the database an ovsdb-server serves */
  instance?: string;
  /** which rule matched: "builtin:<service>" or "<file>:<index>" */
  rule: string;
}

export interface ServiceRule {
  service: string;
  /**
   * Built-in rules: the accounts the service runs as. The process must run
   * as root or as one of them (where the node has none of them: as a system
   * account, uid < 1000) and its executable must be a file only root could
   * have written. A user copying a service's comm and command line is not it.
   */
  accounts?: readonly string[];
  /** Regular expressions; every one given must match. */
  comm?: RegExp;
  exe?: RegExp;
  /** matched against the command line joined with single spaces */
  cmdline?: RegExp;
  uid?: number;
  /** the first capture group of this expression on the command line names the instance */
  instance?: RegExp;
  source: string;
}

export class RuleError extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(`${where}: ${message}`);
    this.name = 'RuleError';
  }
}

const UUID = '([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})';

/** Database clients an operator runs by hand (their SQL is decoded for the audit trail). */
export const DB_CLIENT_EXE = /\/(mariadb|mysql|psql)$/;
/** Management tools: `*-manage`, the `openstack` client, OVN's and OVS's control tools (a Python script or a binary). */
export const ADMIN_TOOL_CMDLINE =
  /^(\S*\/)?(python3?[.0-9]* (-\S+ )*)?(\S*\/)?([a-z]+(-[a-z]+)*-manage|openstack|ovn-nbctl|ovn-sbctl|ovs-vsctl|ovs-ofctl|ovn-appctl|ovs-appctl)( |$)/;
/** The services the tool rules give: any account may run them. */
export const TOOL_SERVICES: readonly string[] = ['db-client', 'admin-tool'];

/** The built-in rules, most specific first. */
/** The accounts each service's Debian/Ubuntu package runs it as (root always may). */
const SERVICE_ACCOUNTS: Record<string, readonly string[]> = {
  keystone: ['keystone'],
  'nova-api': ['nova'],
  'nova-metadata': ['nova'],
  'neutron-server': ['neutron'],
  placement: ['placement'],
  glance: ['glance'],
  'neutron-ovn-metadata-agent': ['neutron'],
  'neutron-agent': ['neutron'],
  'nova-compute': ['nova'],
  'nova-conductor': ['nova'],
  'nova-scheduler': ['nova'],
  'ovn-controller': ['openvswitch', 'ovn'],
  'ovn-northd': ['openvswitch', 'ovn'],
  'ovsdb-server': ['openvswitch'],
  'ovs-vswitchd': ['openvswitch'],
  libvirtd: ['libvirt'],
  qemu: ['libvirt-qemu', 'qemu'],
  frr: ['frr'],
  mariadb: ['mysql'],
  rabbitmq: ['rabbitmq'],
  stackbpf: [],
};

export const BUILTIN_RULES: readonly ServiceRule[] = (
  [
    // API services under uwsgi share the comm: the ini or wsgi file names the service
    ['keystone', { comm: /^uwsgi/, cmdline: /keystone/ }],
    ['nova-api', { comm: /^uwsgi/, cmdline: /nova-api|nova\/api/ }],
    ['nova-metadata', { comm: /^uwsgi/, cmdline: /nova-metadata/ }],
    ['neutron-server', { comm: /^uwsgi/, cmdline: /neutron/ }],
    ['placement', { comm: /^uwsgi/, cmdline: /placement/ }],
    ['glance', { comm: /^uwsgi/, cmdline: /glance/ }],
    ['keystone', { cmdline: /(^|\/)keystone-(wsgi-public|wsgi-admin|manage)\b/ }],
    // eventlet services: the comm may be rewritten ("neutron-server: api worker (...)")
    ['neutron-server', { cmdline: /(^|[/ ])neutron-server\b/ }],
    ['neutron-ovn-metadata-agent', { cmdline: /neutron-ovn-metadata-agent/ }],
    ['neutron-agent', { cmdline: /neutron-[a-z0-9-]+-agent/ }],
    ['nova-compute', { cmdline: /(^|[/ ])nova-compute\b/ }],
    ['nova-conductor', { cmdline: /(^|[/ ])nova-conductor\b/ }],
    ['nova-scheduler', { cmdline: /(^|[/ ])nova-scheduler\b/ }],
    ['nova-api', { cmdline: /(^|[/ ])nova-api\b/ }],
    // glance's own eventlet server: Debian's init script runs it so (its uwsgi mode disabled there)
    ['glance', { cmdline: /(^|[/ ])glance-api\b/ }],
    ['ovn-controller', { comm: /^ovn-controller$/ }],
    ['ovn-northd', { comm: /^ovn-northd$/ }],
    ['ovsdb-server', { comm: /^ovsdb-server$/, instance: /\b(ovnnb_db|ovnsb_db|conf)\.db\b/ }],
    ['ovs-vswitchd', { comm: /^ovs-vswitchd$/ }],
    ['libvirtd', { comm: /^(libvirtd|virtqemud)$/ }],
    ['qemu', { comm: /^qemu(-system-.*|-kvm)?$/, instance: new RegExp(`-uuid ${UUID}`) }],
    ['frr', { comm: /^(bgpd|zebra|staticd|watchfrr|bfdd|mgmtd)$/ }],
    ['mariadb', { comm: /^(mariadbd|mysqld)$/ }],
    ['rabbitmq', { comm: /^beam\.smp$/, cmdline: /rabbit/ }],
    ['stackbpf', { cmdline: /(stackbpf|dist\/src\/cli\/main\.js) agent\b/ }],
    // run by hand on a node, below every service's API: traced for the audit trail (whoever runs
    // them, so no account check: being one of these gives a process nothing)
    ['db-client', { exe: DB_CLIENT_EXE }],
    ['admin-tool', { cmdline: ADMIN_TOOL_CMDLINE }],
  ] as [string, Omit<ServiceRule, 'service' | 'source'>][]
).map(([service, r]) => ({
  service,
  ...r,
  ...(TOOL_SERVICES.includes(service) ? {} : { accounts: SERVICE_ACCOUNTS[service] ?? [] }),
  source: `builtin:${service}`,
}));

function regex(v: unknown, where: string): RegExp | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new RuleError(where, 'expected a regular expression as a non-empty string');
  try {
    return new RegExp(v);
  } catch (err) {
    throw new RuleError(where, `not a regular expression: ${(err as Error).message}`);
  }
}

/** Parse operator rules (YAML: `rules: [{service, comm?, exe?, cmdline?, uid?, instance?}]`). */
export function parseRules(text: string, file = 'rules'): ServiceRule[] {
  let raw: unknown;
  try {
    raw = parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw new RuleError(file, `invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const list = (raw as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(list)) throw new RuleError(file, 'expected a top-level "rules:" list');
  return list.map((r, i) => {
    const where = `${file}: rules[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new RuleError(where, 'expected a mapping');
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (!['service', 'comm', 'exe', 'cmdline', 'uid', 'instance'].includes(k))
        throw new RuleError(`${where}.${k}`, 'unknown setting (known: service, comm, exe, cmdline, uid, instance)');
    if (typeof o.service !== 'string' || !/^[a-z0-9][a-z0-9_.-]*$/.test(o.service)) throw new RuleError(`${where}.service`, 'required: a lower-case name');
    if (o.uid !== undefined && (!Number.isInteger(o.uid) || (o.uid as number) < 0)) throw new RuleError(`${where}.uid`, 'expected a user id');
    const rule: ServiceRule = { service: o.service, source: `${file}:${i}` };
    const comm = regex(o.comm, `${where}.comm`);
    const exe = regex(o.exe, `${where}.exe`);
    const cmdline = regex(o.cmdline, `${where}.cmdline`);
    const instance = regex(o.instance, `${where}.instance`);
    if (comm) rule.comm = comm;
    if (exe) rule.exe = exe;
    if (cmdline) rule.cmdline = cmdline;
    if (instance) rule.instance = instance;
    if (o.uid !== undefined) rule.uid = o.uid as number;
    if (!comm && !exe && !cmdline && o.uid === undefined) throw new RuleError(where, 'a rule needs at least one of comm, exe, cmdline, uid');
    return rule;
  });
}

/** Read what identification needs from /proc; undefined when the process is gone. */
export function readProcess(pid: number, proc = '/proc'): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, 'utf8');
    // comm is in parentheses and may itself contain ") "
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    const argv = readFileSync(`${proc}/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a, i, all) => a !== '' || i < all.length - 1);
    const status = readFileSync(`${proc}/${pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
    let exe = '';
    try {
      exe = readlinkSync(`${proc}/${pid}/exe`);
    } catch {
      /* kernel threads and exited processes have none */
    }
    return { pid, ppid, comm, exe, argv, uid };
  } catch {
    return undefined;
  }
}

/** Resolve account names to uids (/etc/passwd); names the node lacks are left out. */
function uidsOf(names: readonly string[], passwd = '/etc/passwd'): Set<number> {
  const out = new Set<number>();
  try {
    for (const line of readFileSync(passwd, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] && names.includes(f[0]) && f[2] && /^\d+$/.test(f[2])) out.add(Number(f[2]));
    }
  } catch {
    /* no passwd file: root only */
  }
  return out;
}

/** The first uid of a login user (Debian's login.defs UID_MIN); below it: root and system accounts. */
const UID_MIN = 1000;

export class ServiceIdentifier {
  private readonly accountUids = new Map<readonly string[], Set<number>>();

  /**
   * May `p` be the service a built-in rule names? Root, or the service's own
   * account (any system account where the node has none of them), running an
   * executable that is root's and writable by nobody else. Checked on the
   * running process's executable (/proc/PID/exe), which a caller cannot swap.
   */
  private trustedAs(p: ProcessInfo, accounts: readonly string[]): boolean {
    if (p.uid !== 0) {
      let uids = this.accountUids.get(accounts);
      if (!uids) {
        uids = uidsOf(accounts);
        this.accountUids.set(accounts, uids);
      }
      if (uids.size > 0 ? !uids.has(p.uid) : p.uid >= UID_MIN) return false;
    }
    try {
      const st = statSync(`/proc/${p.pid}/exe`);
      return st.uid === 0 && (st.mode & 0o022) === 0;
    } catch {
      return false;
    }
  }

  readonly rules: readonly ServiceRule[];

  /** Operator rules first, then the built-in ones. */
  constructor(extra: readonly ServiceRule[] = []) {
    this.rules = [...extra, ...BUILTIN_RULES];
  }

  static fromFile(file: string): ServiceIdentifier {
    let text: string;
    try {
      // service rules decide whose behaviour is learned and enforced: root's file only
      assertRootOnlyWritable(file, 'the service rules file');
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (err instanceof UntrustedFileError) throw new RuleError(file, err.message.slice(file.length + 2));
      throw new RuleError(file, `cannot read: ${(err as Error).message}`);
    }
    return new ServiceIdentifier(parseRules(text, file));
  }

  identify(p: ProcessInfo): Identity | undefined {
    const cmd = p.argv.join(' ');
    for (const r of this.rules) {
      if (r.comm && !r.comm.test(p.comm)) continue;
      if (r.exe && !r.exe.test(p.exe)) continue;
      if (r.cmdline && !r.cmdline.test(cmd)) continue;
      if (r.uid !== undefined && r.uid !== p.uid) continue;
      // comm and command line are the process's own to write: a built-in rule also needs what it cannot forge
      if (r.accounts && !this.trustedAs(p, r.accounts)) continue;
      const instance = r.instance?.exec(cmd)?.[1];
      return { service: r.service, rule: r.source, ...(instance ? { instance } : {}) };
    }
    return undefined;
  }
}
