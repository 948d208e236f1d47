// Real Keystone and Neutron (ML2/OVN) for a test, each with its own
// configuration, SQLite database, keys and logs in a private directory (no
// file under /etc is touched), on loopback ports, stopped by pid afterwards.
// Set up the way ../shared/TESTBED.md found to work: Keystone under uwsgi
// with one process and one thread (SQLite), Neutron's eventlet server with
// one API and one RPC worker, schema created from the models and stamped.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ovsdb.js';

const run = promisify(execFile);
const PY = '/usr/bin/python3';
const KEYSTONE = ['/usr/bin/keystone-manage', '/usr/bin/keystone-wsgi-public', '/usr/bin/uwsgi_python311'];
const NEEDED = [...KEYSTONE, '/usr/bin/neutron-server', '/usr/bin/neutron-db-manage'];
const missing = (list: string[]): string | false =>
  list.some((p) => !existsSync(p)) ? `needs ${list.filter((p) => !existsSync(p)).join(', ')} (scripts/deps.sh test installs them)` : false;
export const skipOpenStack: string | false = missing(NEEDED);
export const skipKeystone: string | false = missing(KEYSTONE);
/** Glance and nova-api, for a `server create` (the performance tests) */
export const skipNova: string | false = missing(['/usr/bin/glance-api', '/usr/bin/glance-manage', '/usr/bin/nova-api-wsgi', '/usr/bin/nova-manage']);
const MARIADB = ['/usr/sbin/mariadbd', '/usr/bin/mariadb-install-db', '/usr/bin/mariadb'];
export const skipNovaRpc: string | false = missing([
  '/usr/bin/nova-conductor',
  '/usr/bin/nova-scheduler',
  '/usr/bin/placement-api',
  '/usr/sbin/rabbitmq-server',
]);
export const skipMariadb: string | false = missing([...KEYSTONE, ...MARIADB]);

async function until(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export interface NeutronOptions {
  nbConnection: string;
  sbConnection: string;
  /** where Neutron's keystonemiddleware validates tokens (a proxy in front of Keystone); Keystone's own URL by default */
  authUrl?: string;
  /** on the private MariaDB (with db: 'mariadb') instead of SQLite, so its SQL crosses a socket the tracer sees */
  mariadb?: boolean;
  /** false: keystonemiddleware validates every request's token with Keystone (token_cache_time = -1) */
  tokenCache?: boolean;
  /** with mariadb: reach it on this port (a proxy in front of it) instead of its own */
  dbPort?: number;
  /** greenthreads of its API worker's pool (wsgi_default_pool_size; Neutron's default 100) */
  poolSize?: number;
  /**
   * keystonemiddleware's audit filter in Neutron's pipeline (a copy of Debian's api-paste.ini, with
   * the audit map Debian ships), its CADF notifications sent to this RabbitMQ (rabbit://...)
   */
  auditTransportUrl?: string;
  /**
   * Neutron's log (its stdout and stderr) goes through a pipe of one page to a relay that
   * writes the file: stallNeutronLog() stops the relay, the pipe fills, and Neutron's next log
   * write blocks its eventlet hub — a stalled log reader (journald, a `| logger`) on a real node.
   */
  logPipe?: boolean;
}

// the relay: the FIFO made a one-page pipe (F_SETPIPE_SZ), copied to the file named
const LOG_RELAY = [
  'import fcntl, os, sys',
  'fd = os.open(sys.argv[1], os.O_RDONLY)',
  'fcntl.fcntl(fd, 1031, 4096)',
  'out = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)',
  'while True:',
  '    b = os.read(fd, 65536)',
  '    if not b:',
  '        break',
  '    os.write(out, b)',
].join('\n');

/** uwsgi serving one WSGI file with one process and one thread, daemonized: NAME.pid and NAME-uwsgi.log in dir */
function uwsgiArgs(listen: string, wsgiFile: string, dir: string, name: string): string[] {
  return [
    'uwsgi_python311',
    '--http-socket',
    listen,
    '--wsgi-file',
    wsgiFile,
    '--processes',
    '1',
    '--threads',
    '1',
    '--master',
    '--die-on-term',
    '--lazy-apps',
    '--buffer-size',
    '65535',
    // http-socket closes the connection after each answer without saying so: a client that
    // reuses it at once (python-requests: GET /v3, then POST /v3/auth/tokens) races that close
    // and is reset ("Connection aborted", seen in CI). Say it, as a front server would.
    '--add-header',
    'Connection: close',
    '--pidfile',
    join(dir, `${name}.pid`),
    '--daemonize',
    join(dir, `${name}-uwsgi.log`),
  ];
}

/**
 * Stop what uwsgiArgs(…, dir, name) started: its master by pid, then anything left by its pid
 * file's path (a server that never answered has no pid yet, but runs).
 */
async function stopUwsgi(dir: string, name: string, pid: number | undefined): Promise<void> {
  try {
    if (pid) process.kill(pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  await new Promise((r) => setTimeout(r, 300));
  await run('pkill', ['-KILL', '-f', '--', `--pidfile ${join(dir, `${name}.pid`)}`]).catch(() => undefined);
}

export class OpenStack {
  readonly password = randomBytes(12).toString('hex');
  keystonePid: number | undefined;
  private neutron: ChildProcess | undefined;
  private logRelay: ChildProcess | undefined;
  private logFifo: number | undefined;
  private token: string | undefined;
  keystonePort = 0;
  neutronPort = 0;
  glancePort = 0;
  novaPort = 0;
  novaPid: number | undefined;
  private glance: ChildProcess | undefined;
  private novaConductor: ChildProcess | undefined;
  placementPort = 0;
  placementPid: number | undefined;
  private novaScheduler: ChildProcess | undefined;
  /** with db: 'mariadb': a private mariadbd for Keystone */
  mariadbPort = 0;
  mariadbPid: number | undefined;
  readonly dbPassword = randomBytes(12).toString('hex');
  /** OSProfiler's HMAC key, when it is on */
  profilerKey: string | undefined;
  /** where Keystone sends its CADF notifications, when it does */
  keystoneNotifications: string | undefined;

  /** OSProfiler's [profiler] section (with a private MariaDB), or nothing */
  private profilerConf(user: string): string[] {
    if (!this.profilerKey) return [];
    if (!this.mariadbPort) throw new Error("OpenStack helper: profilerKey needs db: 'mariadb' (OSProfiler's sqlalchemy driver)");
    return ['[profiler]', 'enabled = True', 'trace_sqlalchemy = True', `hmac_keys = ${this.profilerKey}`, `connection_string = ${this.profilerUrl(user)}`];
  }

  profilerUrl(user = 'keystone'): string {
    return `mysql+pymysql://${user}:${this.dbPassword}@127.0.0.1:${this.mariadbPort}/osprofiler`;
  }

  private constructor(readonly dir: string) {}

  get keystoneUrl(): string {
    return `http://127.0.0.1:${this.keystonePort}/v3`;
  }
  get neutronUrl(): string {
    return `http://127.0.0.1:${this.neutronPort}`;
  }
  get glanceUrl(): string {
    return `http://127.0.0.1:${this.glancePort}`;
  }
  get novaUrl(): string {
    return `http://127.0.0.1:${this.novaPort}`;
  }

  /** Keystone, and Neutron when `neutron` says where its OVN databases are. */
  /** with netns: Keystone runs in that namespace, listening on all its addresses */
  netns: string | undefined;

  /**
   * with endpointUrl: the catalog names that URL for Keystone (a proxy in front of it,
   * e.g. a WAF) instead of Keystone's own; keystoneUrl stays the direct one
   */
  static async start(
    opts: {
      neutron?: NeutronOptions;
      db?: 'sqlite' | 'mariadb';
      env?: Record<string, string>;
      netns?: string;
      endpointUrl?: string;
      /** OSProfiler on in Keystone and Neutron (traces SQL; stored in the private MariaDB's osprofiler database) */
      profilerKey?: string;
      /** Keystone's CADF notifications, every one (notification_opt_out cleared), to this RabbitMQ (rabbit://...) */
      keystoneNotifications?: string;
    } = {},
  ): Promise<OpenStack> {
    const os = new OpenStack(mkdtempSync(join(tmpdir(), 'sbt-openstack-')));
    os.netns = opts.netns;
    os.profilerKey = opts.profilerKey;
    os.keystoneNotifications = opts.keystoneNotifications;
    if (opts.netns && opts.db === 'mariadb')
      throw new Error('OpenStack helper: a Keystone in a namespace runs on SQLite (the private MariaDB listens on the root namespace loopback)');
    try {
      if (opts.db === 'mariadb') await os.startMariadb();
      await os.startKeystone(opts.env ?? {}, opts.endpointUrl);
      if (opts.neutron) await os.startNeutron(opts.neutron);
      return os;
    } catch (err) {
      const logs = os.logTail();
      await os.stop();
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
  }

  /** The uwsgi worker serving Keystone (the master's child). */
  keystoneWorkerPid(): number {
    const kids = readFileSync(`/proc/${this.keystonePid}/task/${this.keystonePid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    if (kids.length !== 1) throw new Error(`keystone master ${this.keystonePid} has ${kids.length} workers, expected 1`);
    return kids[0] as number;
  }

  logTail(): string {
    const out: string[] = [];
    for (const f of ['keystone-uwsgi.log', 'neutron-server.log', 'glance-api.log', 'glance-api.out', 'nova-api.log', 'nova-api-uwsgi.log']) {
      const p = join(this.dir, f);
      if (existsSync(p)) out.push(`--- ${f}\n${readFileSync(p, 'utf8').split('\n').slice(-25).join('\n')}`);
    }
    return out.join('\n');
  }

  /** A private MariaDB (own datadir and socket, a free loopback port) with a keystone database. */
  private async startMariadb(): Promise<void> {
    const d = join(this.dir, 'mariadb');
    mkdirSync(d);
    this.mariadbPort = await freePort();
    await run('mariadb-install-db', [`--datadir=${d}/data`, '--user=root', '--auth-root-authentication-method=socket', '--skip-test-db'], { timeout: 60_000 });
    const child = spawn(
      'mariadbd',
      [
        `--datadir=${d}/data`,
        `--socket=${d}/sock`,
        `--port=${this.mariadbPort}`,
        '--bind-address=127.0.0.1',
        '--user=root',
        `--pid-file=${d}/pid`,
        `--log-error=${d}/err.log`,
        '--skip-name-resolve',
        '--innodb-buffer-pool-size=32M',
      ],
      { stdio: 'ignore', detached: true },
    );
    child.unref();
    this.mariadbPid = child.pid;
    await until(
      'mariadb to answer',
      async () => {
        await run('mariadb', [`--socket=${d}/sock`, '-e', 'SELECT 1']);
        return true;
      },
      30_000,
    );
    await run('mariadb', [
      `--socket=${d}/sock`,
      '-e',
      `CREATE DATABASE keystone; CREATE USER 'keystone'@'127.0.0.1' IDENTIFIED BY '${this.dbPassword}'; GRANT ALL ON keystone.* TO 'keystone'@'127.0.0.1'; CREATE DATABASE neutron; CREATE USER 'neutron'@'127.0.0.1' IDENTIFIED BY '${this.dbPassword}'; GRANT ALL ON neutron.* TO 'neutron'@'127.0.0.1'; CREATE DATABASE osprofiler; GRANT ALL ON osprofiler.* TO 'keystone'@'127.0.0.1'; GRANT ALL ON osprofiler.* TO 'neutron'@'127.0.0.1'; ${['glance', 'nova', 'placement'].map((u) => `CREATE USER '${u}'@'127.0.0.1' IDENTIFIED BY '${this.dbPassword}';`).join(' ')} ${['glance', 'nova_api', 'nova', 'nova_cell0', 'placement'].map((db) => `CREATE DATABASE ${db}; GRANT ALL ON ${db}.* TO '${db === 'glance' || db === 'placement' ? db : 'nova'}'@'127.0.0.1';`).join(' ')}`,
    ]);
  }

  private async startKeystone(env: Record<string, string>, endpointUrl?: string): Promise<void> {
    const d = this.dir;
    this.keystonePort = await freePort();
    const conf = join(d, 'keystone.conf');
    for (const sub of ['fernet-keys', 'credential-keys']) mkdirSync(join(d, sub), { mode: 0o700 });
    writeFileSync(
      conf,
      [
        '[DEFAULT]',
        `log_dir = ${d}`,
        ...(this.keystoneNotifications ? ['notification_format = cadf', 'notification_opt_out ='] : []),
        '[database]',
        this.mariadbPort
          ? `connection = mysql+pymysql://keystone:${this.dbPassword}@127.0.0.1:${this.mariadbPort}/keystone`
          : `connection = sqlite:///${d}/keystone.db`,
        '[token]',
        'provider = fernet',
        '[fernet_tokens]',
        `key_repository = ${d}/fernet-keys`,
        '[credential]',
        `key_repository = ${d}/credential-keys`,
        '[identity]',
        'password_hash_rounds = 4',
        ...this.profilerConf('keystone'),
        ...(this.keystoneNotifications ? ['[oslo_messaging_notifications]', 'driver = messagingv2', `transport_url = ${this.keystoneNotifications}`] : []),
        '',
      ].join('\n'),
    );
    const km = (args: string[]): Promise<unknown> => run('keystone-manage', ['--config-file', conf, ...args], { timeout: 180_000 });
    await km(['db_sync']);
    if (!this.mariadbPort) await run('sqlite3', [join(d, 'keystone.db'), 'PRAGMA journal_mode=WAL;']);
    await km(['fernet_setup', '--keystone-user', 'root', '--keystone-group', 'root']);
    await km(['credential_setup', '--keystone-user', 'root', '--keystone-group', 'root']);
    const ep = endpointUrl ?? this.keystoneUrl;
    await km([
      'bootstrap',
      '--bootstrap-password',
      this.password,
      '--bootstrap-admin-url',
      ep,
      '--bootstrap-internal-url',
      ep,
      '--bootstrap-public-url',
      ep,
      '--bootstrap-region-id',
      'RegionOne',
    ]);
    const uwsgi = uwsgiArgs(`${this.netns ? '0.0.0.0' : '127.0.0.1'}:${this.keystonePort}`, '/usr/bin/keystone-wsgi-public', d, 'keystone');
    const [cmd, ...args] = this.netns ? ['ip', 'netns', 'exec', this.netns, ...uwsgi] : uwsgi;
    await run(cmd as string, args, { env: { ...process.env, ...env, OS_KEYSTONE_CONFIG_FILES: conf }, timeout: 30_000 });
    if (this.netns)
      await until(
        'keystone to answer',
        async () => (await run('ip', ['netns', 'exec', this.netns as string, 'curl', '-sf', '-o', '/dev/null', this.keystoneUrl])) !== undefined,
        60_000,
      );
    else await until('keystone to answer', async () => (await fetch(this.keystoneUrl)).ok, 60_000);
    this.keystonePid = Number(readFileSync(join(d, 'keystone.pid'), 'utf8').trim());
  }

  /** Neutron (start() calls this when given `neutron`; a test may call it later, e.g. behind a proxy it starts). */
  async startNeutron(opts: NeutronOptions): Promise<void> {
    const d = this.dir;
    this.neutronPort = await freePort();
    const conf = join(d, 'neutron.conf');
    const ml2 = join(d, 'ml2_conf.ini');
    mkdirSync(join(d, 'neutron-state'));
    writeFileSync(
      conf,
      [
        '[DEFAULT]',
        'core_plugin = ml2',
        'service_plugins = ovn-router',
        'auth_strategy = keystone',
        'transport_url = fake://',
        'api_workers = 1',
        ...(opts.poolSize ? [`wsgi_default_pool_size = ${opts.poolSize}`] : []),
        'rpc_workers = 1',
        'rpc_state_report_workers = 0',
        'bind_host = 127.0.0.1',
        `bind_port = ${this.neutronPort}`,
        'notify_nova_on_port_status_changes = false',
        'notify_nova_on_port_data_changes = false',
        `state_path = ${d}/neutron-state`,
        `api_paste_config = ${opts.auditTransportUrl ? this.auditPaste() : '/etc/neutron/api-paste.ini'}`,
        '[database]',
        // several Neutron workers share the file: wait for a lock instead of failing at once
        `connection = ${this.neutronDbUrl(opts)}`,
        '[keystone_authtoken]',
        `www_authenticate_uri = ${opts.authUrl ?? this.keystoneUrl}`,
        `auth_url = ${opts.authUrl ?? this.keystoneUrl}`,
        'auth_type = password',
        'project_domain_name = Default',
        'user_domain_name = Default',
        'project_name = admin',
        'username = admin',
        `password = ${this.password}`,
        ...(opts.tokenCache === false ? ['token_cache_time = -1'] : []),
        '[oslo_concurrency]',
        `lock_path = ${d}/neutron-state`,
        ...(opts.auditTransportUrl ? ['[audit_middleware_notifications]', 'driver = messagingv2', `transport_url = ${opts.auditTransportUrl}`] : []),
        ...this.profilerConf('neutron'),
        '',
      ].join('\n'),
    );
    writeFileSync(
      ml2,
      [
        '[ml2]',
        'mechanism_drivers = ovn',
        'type_drivers = local,flat,vlan,geneve',
        'tenant_network_types = geneve',
        'extension_drivers = port_security',
        'overlay_ip_version = 4',
        '[ml2_type_flat]',
        'flat_networks = physnet1',
        '[ml2_type_geneve]',
        'vni_ranges = 1:65536',
        'max_header_size = 38',
        '[ovn]',
        `ovn_nb_connection = ${opts.nbConnection}`,
        `ovn_sb_connection = ${opts.sbConnection}`,
        'ovn_l3_scheduler = leastloaded',
        'ovn_metadata_enabled = false',
        'enable_distributed_floating_ip = false',
        '',
      ].join('\n'),
    );
    // SQLite cannot run Neutron's migrations (ALTERs of constraints): create from the models, then
    // stamp (on MariaDB too: the same schema in seconds instead of minutes of migrations)
    const url = this.neutronDbUrl(opts).replace(/\?timeout=30$/, '');
    await run(
      PY,
      ['-c', `import sqlalchemy\nfrom neutron.db.migration.models import head\nhead.get_metadata().create_all(sqlalchemy.create_engine('${url}'))`],
      {
        timeout: 180_000,
      },
    );
    await run('neutron-db-manage', ['--config-file', conf, '--config-file', ml2, 'stamp', 'heads'], { timeout: 180_000 });
    // readers never block the writer in WAL mode (TESTBED.md's "database is locked" trap)
    if (!opts.mariadb) await run('sqlite3', [join(d, 'neutron.db'), 'PRAGMA journal_mode=WAL;']);
    if (opts.logPipe) {
      // a FIFO, not node's stdio 'pipe' (a socketpair, whose buffer a pipe size does not set); held
      // open read-write here (Linux never blocks that open), so the relay never reads an end of file
      const fifo = join(d, 'neutron-log.fifo');
      await run('mkfifo', ['-m', '600', fifo]);
      this.logFifo = openSync(fifo, 'r+');
      this.logRelay = spawn('/usr/bin/python3', ['-c', LOG_RELAY, fifo, join(d, 'neutron-server.log')], { stdio: 'ignore' });
      this.neutron = spawn('neutron-server', ['--config-file', conf, '--config-file', ml2], { stdio: ['ignore', this.logFifo, this.logFifo] });
    } else {
      const log = openSync(join(d, 'neutron-server.log'), 'a');
      this.neutron = spawn('neutron-server', ['--config-file', conf, '--config-file', ml2], { stdio: ['ignore', log, log] });
    }
    await until('neutron-server to answer', async () => (await fetch(`${this.neutronUrl}/`)).ok, 120_000);
    await this.register('network', 'neutron', this.neutronUrl);
  }

  /** Debian's api-paste.ini for Neutron with keystonemiddleware's audit filter after keystonecontext (as its docs place it). */
  private auditPaste(): string {
    const src = readFileSync('/etc/neutron/api-paste.ini', 'utf8');
    const out = src
      .replace(/^(keystone = .*\bkeystonecontext) (extensions neutronapiapp_v2_0)$/m, '$1 audit $2')
      .concat('\n[filter:audit]\npaste.filter_factory = keystonemiddleware.audit:filter_factory\naudit_map_file = /etc/pycadf/neutron_api_audit_map.conf\n');
    if (out === src || !/keystonecontext audit extensions/.test(out))
      throw new Error('OpenStack helper: cannot place the audit filter in /etc/neutron/api-paste.ini');
    const file = join(this.dir, 'neutron-api-paste.ini');
    writeFileSync(file, out);
    return file;
  }

  /** A service and its three endpoints in Keystone's catalog, for the `openstack` client and the other services. */
  private async register(type: string, name: string, url: string): Promise<void> {
    const k = async (path: string, body: unknown): Promise<any> => {
      const res = await fetch(`${this.keystoneUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-auth-token': await this.authToken() },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`keystone POST ${path}: ${res.status} ${(await res.text()).slice(0, 200)}`);
      return res.json();
    };
    const svc = (await k('/services', { service: { type, name } })).service;
    for (const iface of ['public', 'internal', 'admin'])
      await k('/endpoints', { endpoint: { service_id: svc.id, interface: iface, url, region_id: 'RegionOne' } });
  }

  /** keystonemiddleware's section, as the admin (the test bed's one account), validating every token when tokenCache is false */
  private authtoken(authUrl: string | undefined, tokenCache: boolean | undefined): string[] {
    const url = authUrl ?? this.keystoneUrl;
    return ['[keystone_authtoken]', `www_authenticate_uri = ${url}`, ...this.adminAuth(url), ...(tokenCache === false ? ['token_cache_time = -1'] : [])];
  }

  private mariadbUrl(user: string, db: string): string {
    if (!this.mariadbPort) throw new Error(`OpenStack helper: ${user} needs db: 'mariadb'`);
    return `mysql+pymysql://${user}:${this.dbPassword}@127.0.0.1:${this.mariadbPort}/${db}`;
  }

  /**
   * Glance (its eventlet `glance-api`, as kolla runs it; one worker) on the private MariaDB with
   * a file store in the test's directory, in the catalog as `image`.
   */
  async startGlance(opts: { authUrl?: string; tokenCache?: boolean } = {}): Promise<void> {
    const d = this.dir;
    this.glancePort = await freePort();
    const conf = join(d, 'glance-api.conf');
    for (const sub of ['images', 'staging', 'tasks']) mkdirSync(join(d, 'glance', sub), { recursive: true });
    writeFileSync(
      conf,
      [
        '[DEFAULT]',
        'bind_host = 127.0.0.1',
        `bind_port = ${this.glancePort}`,
        'workers = 1',
        'enabled_backends = fs:file',
        `log_file = ${join(d, 'glance-api.log')}`,
        '[database]',
        `connection = ${this.mariadbUrl('glance', 'glance')}`,
        ...this.authtoken(opts.authUrl, opts.tokenCache),
        '[paste_deploy]',
        'flavor = keystone',
        'config_file = /etc/glance/glance-api-paste.ini',
        '[glance_store]',
        'default_backend = fs',
        '[fs]',
        `filesystem_store_datadir = ${join(d, 'glance', 'images')}`,
        '[os_glance_staging_store]',
        `filesystem_store_datadir = ${join(d, 'glance', 'staging')}`,
        '[os_glance_tasks_store]',
        `filesystem_store_datadir = ${join(d, 'glance', 'tasks')}`,
        '[oslo_concurrency]',
        `lock_path = ${join(d, 'glance')}`,
        '',
      ].join('\n'),
    );
    await run('glance-manage', ['--config-file', conf, 'db_sync'], { timeout: 300_000 });
    const log = openSync(join(d, 'glance-api.out'), 'a');
    this.glance = spawn('glance-api', ['--config-file', conf], { stdio: ['ignore', log, log] });
    closeSync(log);
    await until('glance-api to answer', async () => (await fetch(`${this.glanceUrl}/versions`)).ok, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.logTail()}`);
    });
    await this.register('image', 'glance', this.glanceUrl);
  }

  /**
   * nova-api under uwsgi (one process, one thread; TESTBED.md: what of Nova runs here), its API
   * and cell databases on the private MariaDB. RPC: on the RabbitMQ at `transportUrl`, or on
   * oslo.messaging's in-process fake driver (then a server create is accepted and goes no
   * further). It talks to Neutron and Glance through the catalog, so start those first.
   */
  async startNova(opts: { authUrl?: string; tokenCache?: boolean; transportUrl?: string } = {}): Promise<void> {
    const d = this.dir;
    this.novaPort = await freePort();
    mkdirSync(join(d, 'nova-state'));
    const conf = join(d, 'nova.conf');
    const url = opts.authUrl ?? this.keystoneUrl;
    writeFileSync(
      conf,
      [
        '[DEFAULT]',
        `transport_url = ${opts.transportUrl ?? 'fake://'}`,
        `state_path = ${join(d, 'nova-state')}`,
        `log_file = ${join(d, 'nova-api.log')}`,
        '[api_database]',
        `connection = ${this.mariadbUrl('nova', 'nova_api')}`,
        '[database]',
        `connection = ${this.mariadbUrl('nova', 'nova')}`,
        ...this.authtoken(opts.authUrl, opts.tokenCache),
        '[neutron]',
        ...this.adminAuth(url),
        'region_name = RegionOne',
        // the scheduler's placement client (placement from the catalog)
        '[placement]',
        ...this.adminAuth(url),
        'region_name = RegionOne',
        '[conductor]',
        'workers = 1',
        '[scheduler]',
        'workers = 1',
        '[oslo_concurrency]',
        `lock_path = ${join(d, 'nova-state')}`,
        '',
      ].join('\n'),
    );
    copyFileSync('/etc/nova/api-paste.ini', join(d, 'api-paste.ini'));
    const nm = (args: string[]): Promise<unknown> => run('nova-manage', ['--config-file', conf, ...args], { timeout: 300_000 });
    await nm(['api_db', 'sync']);
    await nm(['cell_v2', 'map_cell0', '--database_connection', this.mariadbUrl('nova', 'nova_cell0')]);
    await nm(['cell_v2', 'create_cell', '--name', 'cell1']);
    await nm(['db', 'sync']);
    const [cmd, ...args] = uwsgiArgs(`127.0.0.1:${this.novaPort}`, '/usr/bin/nova-api-wsgi', d, 'nova-api');
    await run(
      cmd as string,
      args,
      // the first file is the paste pipeline, the rest oslo.config's (nova's wsgi_app)
      { env: { ...process.env, OS_NOVA_CONFIG_DIR: d, OS_NOVA_CONFIG_FILES: 'api-paste.ini;nova.conf' }, timeout: 30_000 },
    );
    await until('nova-api to answer', async () => (await fetch(`${this.novaUrl}/`)).ok, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.logTail()}`);
    });
    this.novaPid = Number(readFileSync(join(d, 'nova-api.pid'), 'utf8').trim());
    await this.register('compute', 'nova', `${this.novaUrl}/v2.1`);
  }

  get placementUrl(): string {
    return `http://127.0.0.1:${this.placementPort}`;
  }

  /** Placement (Debian's placement-api under uwsgi, one process) on the private MariaDB, in the catalog. */
  async startPlacement(opts: { authUrl?: string; tokenCache?: boolean } = {}): Promise<void> {
    const d = join(this.dir, 'placement');
    mkdirSync(d, { recursive: true });
    this.placementPort = await freePort();
    writeFileSync(
      join(d, 'placement.conf'),
      [
        '[DEFAULT]',
        `log_file = ${join(this.dir, 'placement.log')}`,
        '[placement_database]',
        `connection = ${this.mariadbUrl('placement', 'placement')}`,
        '[api]',
        'auth_strategy = keystone',
        ...this.authtoken(opts.authUrl, opts.tokenCache),
        '',
      ].join('\n'),
    );
    const env = { ...process.env, OS_PLACEMENT_CONFIG_DIR: d };
    await run('placement-manage', ['--config-file', join(d, 'placement.conf'), 'db', 'sync'], { env, timeout: 300_000 });
    const [cmd, ...args] = uwsgiArgs(`127.0.0.1:${this.placementPort}`, '/usr/bin/placement-api', this.dir, 'placement');
    await run(cmd as string, args, { env, timeout: 30_000 });
    await until('placement to answer', async () => (await fetch(`${this.placementUrl}/`)).ok, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.logTail()}`);
    });
    this.placementPid = Number(readFileSync(join(this.dir, 'placement.pid'), 'utf8').trim());
    await this.register('placement', 'placement', this.placementUrl);
  }

  /**
   * nova-conductor and nova-scheduler (Debian's eventlet services, one worker each) on nova-api's
   * configuration (start placement first): with RabbitMQ, a server create goes nova-api → (cast)
   * conductor → (call) scheduler → placement, which has no compute node to offer, so the
   * scheduler answers NoValidHost and the conductor puts the server in ERROR. Resolves when both
   * consume their topics.
   */
  async startNovaServices(rabbitQueues: () => string): Promise<void> {
    const conf = join(this.dir, 'nova.conf');
    const start = (bin: string): ChildProcess => {
      const log = openSync(join(this.dir, `${bin}.out`), 'a');
      const p = spawn(bin, ['--config-file', conf, '--log-file', join(this.dir, `${bin}.log`)], { stdio: ['ignore', log, log] });
      closeSync(log);
      return p;
    };
    this.novaConductor = start('nova-conductor');
    this.novaScheduler = start('nova-scheduler');
    await until(
      'nova-conductor and nova-scheduler to consume their topics',
      async () => {
        const q = rabbitQueues();
        return /^conductor\s+[1-9]/m.test(q) && /^scheduler\s+[1-9]/m.test(q);
      },
      180_000,
    ).catch((err: Error) => {
      const tail = (f: string): string => {
        try {
          return readFileSync(join(this.dir, f), 'utf8').split('\n').slice(-15).join('\n');
        } catch {
          return '';
        }
      };
      throw new Error(`${err.message}\n${tail('nova-conductor.log')}\n${tail('nova-scheduler.log')}`);
    });
  }

  /** keystoneauth's password plugin as the admin: keystonemiddleware's section and a service's client sections ([neutron], [placement]) */
  private adminAuth(url: string): string[] {
    return [
      `auth_url = ${url}`,
      'auth_type = password',
      'project_domain_name = Default',
      'user_domain_name = Default',
      'project_name = admin',
      'username = admin',
      `password = ${this.password}`,
    ];
  }

  private neutronDbUrl(opts: NeutronOptions): string {
    if (!opts.mariadb) return `sqlite:///${this.dir}/neutron.db?timeout=30`;
    if (!this.mariadbPort) throw new Error("OpenStack helper: neutron.mariadb needs db: 'mariadb'");
    return `mysql+pymysql://neutron:${this.dbPassword}@127.0.0.1:${opts.dbPort ?? this.mariadbPort}/neutron`;
  }

  /** The `openstack` client as the admin (its environment carries the password, never its argv). */
  async openstack(args: string[], env: Record<string, string> = {}): Promise<string> {
    const { stdout } = await run('openstack', args, {
      timeout: 120_000,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: this.dir,
        OS_AUTH_URL: this.keystoneUrl,
        OS_USERNAME: 'admin',
        OS_PASSWORD: this.password,
        OS_PROJECT_NAME: 'admin',
        OS_USER_DOMAIN_NAME: 'Default',
        OS_PROJECT_DOMAIN_NAME: 'Default',
        OS_IDENTITY_API_VERSION: '3',
        OS_INTERFACE: 'public',
        ...env,
      },
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.logTail()}`);
    });
    return stdout;
  }

  /** An admin token (cached). The password never leaves this object. */
  async authToken(): Promise<string> {
    if (this.token) return this.token;
    const res = await fetch(`${this.keystoneUrl}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password: this.password } } },
          scope: { project: { name: 'admin', domain: { name: 'Default' } } },
        },
      }),
    });
    if (res.status !== 201) throw new Error(`keystone: token request answered ${res.status}`);
    this.token = res.headers.get('x-subject-token') ?? '';
    return this.token;
  }

  /** A Neutron API call; throws with the status and Neutron's message unless 2xx. */
  async neutronApi(method: string, path: string, body?: unknown): Promise<any> {
    const log = join(this.dir, 'neutron-server.log');
    for (let attempt = 1; ; attempt++) {
      const logAt = existsSync(log) ? statSync(log).size : 0;
      const res = await fetch(`${this.neutronUrl}/v2.0${path}`, {
        method,
        headers: { 'content-type': 'application/json', 'x-auth-token': await this.authToken() },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      if (res.ok) return text ? JSON.parse(text) : undefined;
      // Neutron on SQLite (a test-bed shortcut, not a deployment) loses write-lock races
      // between its workers with "database is locked"; the transaction was rolled back,
      // so the request is sent again. Any other failure is the test's to see.
      const locked = res.status >= 500 && existsSync(log) && readFileSync(log).subarray(logAt).includes('database is locked');
      if (locked && attempt < 5) {
        await new Promise((r) => setTimeout(r, 500 * attempt));
        continue;
      }
      throw new Error(`neutron ${method} ${path}: ${res.status} ${text.slice(0, 300)}${res.status >= 500 ? `\n${this.logTail()}` : ''}`);
    }
  }

  /**
   * With logPipe: stop (true) or resume (false) the reader of Neutron's log pipe. Stopping also
   * fills the pipe (as other writers to a shared log stream would), so Neutron's next log write
   * blocks at once.
   */
  stallNeutronLog(stalled: boolean): void {
    const pid = this.logRelay?.pid;
    if (!pid) throw new Error('stallNeutronLog needs startNeutron({ logPipe: true })');
    try {
      process.kill(pid, stalled ? 'SIGSTOP' : 'SIGCONT');
    } catch {
      /* gone */
    }
    if (!stalled) return;
    const fd = openSync(join(this.dir, 'neutron-log.fifo'), constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      const line = Buffer.from('-- the log reader stalled (test filler) --\n');
      for (let i = 0; i < 1024; i++) writeSync(fd, line);
    } catch {
      // EAGAIN: full
    } finally {
      closeSync(fd);
    }
  }

  async stop(): Promise<void> {
    // a stalled log reader would keep Neutron from exiting
    if (this.logRelay?.pid) this.stallNeutronLog(false);
    for (const [n, conf] of [
      [this.neutron, 'neutron.conf'],
      [this.glance, 'glance-api.conf'],
      [this.novaConductor, 'nova.conf'],
      [this.novaScheduler, 'nova.conf'],
    ] as const) {
      if (n && n.exitCode === null && n.signalCode === null) {
        const exited = new Promise((r) => n.once('exit', r));
        n.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (n.exitCode === null && n.signalCode === null) n.kill('SIGKILL');
      }
      // eventlet servers fork workers into their process group: make sure none is left
      await run('pkill', ['-KILL', '-f', '--', `--config-file ${join(this.dir, conf)}`]).catch(() => undefined);
    }
    if (this.novaPort) await stopUwsgi(this.dir, 'nova-api', this.novaPid);
    if (this.placementPort) await stopUwsgi(this.dir, 'placement', this.placementPid);
    this.logRelay?.kill('SIGKILL');
    if (this.logFifo !== undefined) closeSync(this.logFifo);
    this.logFifo = undefined;
    if (this.keystonePort) await stopUwsgi(this.dir, 'keystone', this.keystonePid);
    if (this.mariadbPid) {
      try {
        process.kill(this.mariadbPid, 'SIGTERM');
      } catch {
        /* gone */
      }
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(this.mariadbPid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      await run('pkill', ['-KILL', '-f', '--', `--datadir=${join(this.dir, 'mariadb')}`]).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
