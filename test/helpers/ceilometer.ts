// A private RabbitMQ node and Ceilometer's own agents (Debian's packages),
// started by the tests that compare with them: everything on loopback, on
// ports of its own, state in a directory removed at the end.
//
// - RabbitMQ: node sbrmqXXXX@localhost, AMQP on 127.0.0.1:PORT, epmd and the
//   Erlang distribution port on loopback too.
// - ceilometer-agent-notification: consumes "notifications.sample" on the
//   "ceilometer" exchange and writes every sample with its file publisher.
// - ceilometer-polling (compute namespace, libvirt pollsters), optionally:
//   instance discovery from libvirt's domain metadata; the only call it makes
//   to Nova (the flavor id) answers with the flavor's name, as Ceilometer
//   itself does when Nova says 404.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { until } from './agent.js';

export function ceilometerMissing(): string | undefined {
  for (const bin of ['/usr/sbin/rabbitmq-server', '/usr/bin/ceilometer-agent-notification', '/usr/bin/ceilometer-polling']) {
    if (!existsSync(bin)) return `${bin} is missing (scripts/deps.sh test installs rabbitmq-server and Ceilometer's agents)`;
  }
  return undefined;
}

export interface CeiloSample {
  name: string;
  type: string;
  unit: string;
  volume: number;
  user_id: string | null;
  project_id: string | null;
  resource_id: string;
  timestamp: string;
  resource_metadata: Record<string, unknown>;
  source: string;
}

export class RabbitAndCeilometer {
  readonly dir: string;
  readonly port: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly procs: ChildProcess[] = [];
  private rabbitUp = false;
  readonly samplesFile: string;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    const id = dir.slice(-6);
    this.samplesFile = join(dir, 'samples.jsonl');
    this.env = {
      ...process.env,
      RABBITMQ_NODENAME: `sbrmq${id}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(port + 1),
      ERL_EPMD_PORT: String(port + 2),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_MNESIA_BASE: join(dir, 'rabbit', 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'rabbit', 'log'),
      RABBITMQ_PID_FILE: join(dir, 'rabbit', 'rabbit.pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'rabbit', 'enabled_plugins'),
      HOME: join(dir, 'rabbit'),
    };
  }

  /** oslo.messaging's URL of the private broker */
  get transportUrl(): string {
    return `rabbit://guest:guest@127.0.0.1:${this.port}/`;
  }

  static async start(): Promise<RabbitAndCeilometer> {
    const id = randomBytes(3).toString('hex');
    const dir = `/var/tmp/stackbpf-ceilo-${id}`;
    // a free-looking port range per run (AMQP, distribution, epmd)
    const port = 20000 + Math.floor(Math.random() * 20000);
    const r = new RabbitAndCeilometer(dir, port);
    try {
      await r.startRabbit();
    } catch (err) {
      await r.stop();
      throw err;
    }
    return r;
  }

  /** queues with their consumer counts, one per line ("name consumers") */
  queues(): string {
    return this.rabbitctl('list_queues', 'name', 'consumers').out;
  }

  private rabbitctl(...args: string[]): { status: number | null; out: string } {
    const p = spawnSync('rabbitmqctl', ['-q', ...args], { env: this.env, encoding: 'utf8', timeout: 30_000 });
    return { status: p.status, out: `${p.stdout}${p.stderr}` };
  }

  private async startRabbit(): Promise<void> {
    const base = join(this.dir, 'rabbit');
    mkdirSync(join(base, 'mnesia'), { recursive: true });
    mkdirSync(join(base, 'log'), { recursive: true });
    writeFileSync(join(base, 'enabled_plugins'), '[].\n');
    writeFileSync(join(base, '.erlang.cookie'), randomBytes(16).toString('hex'), { mode: 0o400 });
    const uid = Number(spawnSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' }).stdout.trim());
    for (const p of [this.dir, base, join(base, 'mnesia'), join(base, 'log'), join(base, 'enabled_plugins'), join(base, '.erlang.cookie')])
      chownSync(p, uid, gid);
    const r = spawnSync('rabbitmq-server', ['-detached'], { env: this.env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rabbitmq-server: ${r.stderr || r.stdout}`);
    this.rabbitUp = true;
    await until('RabbitMQ to start', () => this.rabbitctl('await_startup').status === 0, 90_000, 500);
  }

  private conf(extra: { pollingInterval?: number; name?: string }): string {
    const name = extra.name ?? 'main';
    const conf = join(this.dir, `ceilometer-${name}.conf`);
    mkdirSync(join(this.dir, 'log'), { recursive: true });
    mkdirSync(join(this.dir, 'lock'), { recursive: true });
    mkdirSync(join(this.dir, 'pollsters.d'), { recursive: true });
    writeFileSync(
      join(this.dir, 'pipeline.yaml'),
      `---\nsources:\n  - name: meter_source\n    meters: ["*"]\n    sinks: [meter_sink]\nsinks:\n  - name: meter_sink\n    publishers:\n      - file://${this.samplesFile}?json\n`,
    );
    writeFileSync(
      join(this.dir, `polling-${name}.yaml`),
      `---\nsources:\n  - name: compute\n    interval: ${extra.pollingInterval ?? 300}\n    meters:\n${[
        'cpu',
        'memory.resident',
        'network.incoming.bytes',
        'network.outgoing.bytes',
        'network.incoming.packets',
        'network.outgoing.packets',
        'network.incoming.packets.drop',
        'network.outgoing.packets.drop',
        'network.incoming.packets.error',
        'network.outgoing.packets.error',
        'disk.device.read.bytes',
        'disk.device.write.bytes',
        'disk.device.read.requests',
        'disk.device.write.requests',
        'disk.device.read.latency',
        'disk.device.write.latency',
      ]
        .map((m) => `      - ${m}`)
        .join('\n')}\n`,
    );
    writeFileSync(
      conf,
      `[DEFAULT]
host = ${extra.name ?? 'stackbpf-test-node'}
log_dir = ${join(this.dir, 'log')}
libvirt_type = qemu
transport_url = ${this.transportUrl}
pipeline_cfg_file = ${join(this.dir, 'pipeline.yaml')}

[compute]
instance_discovery_method = libvirt_metadata

[polling]
cfg_file = ${join(this.dir, `polling-${name}.yaml`)}
pollsters_definitions_dirs = ${join(this.dir, 'pollsters.d')}

[oslo_concurrency]
lock_path = ${join(this.dir, 'lock')}

[service_credentials]
auth_type = none

[notification]
pipelines = meter
notification_control_exchanges = ceilometer
workers = 1
`,
    );
    return conf;
  }

  /** the notification agent's master process */
  notificationPid: number | undefined;

  /** ceilometer-agent-notification, consuming until the queue has a consumer. */
  async startNotification(): Promise<void> {
    const conf = this.conf({});
    const p = spawn('nice', ['-n', '10', 'ceilometer-agent-notification', '--config-file', conf], { stdio: 'ignore' });
    this.procs.push(p);
    this.notificationPid = p.pid;
    await until(
      'the notification agent to consume notifications.sample',
      () => /notifications\.sample\s+[1-9]/.test(this.rabbitctl('list_queues', 'name', 'consumers').out),
      90_000,
      500,
    );
  }

  /**
   * ceilometer-polling in the compute namespace (libvirt pollsters) at
   * `interval` seconds; `name` becomes its host (instance_host in the samples).
   */
  startPolling(interval: number, name?: string): ChildProcess {
    const conf = this.conf({ pollingInterval: interval, ...(name ? { name } : {}) });
    // Nova's flavor lookup is the one remote call of libvirt_metadata discovery: answer with the name
    const shim = join(this.dir, 'polling.py');
    writeFileSync(
      shim,
      'import sys\nfrom ceilometer.compute import discovery\ndiscovery.InstanceDiscovery.get_flavor_id = lambda self, name: name\nfrom ceilometer.cmd.polling import main\nsys.exit(main())\n',
    );
    const p = spawn('nice', ['-n', '10', '/usr/bin/python3', shim, '--config-file', conf, '--polling-namespaces', 'compute'], { stdio: 'ignore' });
    this.procs.push(p);
    return p;
  }

  /** The samples Ceilometer's pipeline wrote so far. */
  samples(): CeiloSample[] {
    if (!existsSync(this.samplesFile)) return [];
    const out: CeiloSample[] = [];
    for (const line of readFileSync(this.samplesFile, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as CeiloSample);
      } catch {}
    }
    return out;
  }

  async stop(): Promise<void> {
    for (const p of this.procs) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      // cotyledon's workers are children of the master: take the process group down too
      try {
        if (p.pid) process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
    // the agents fork workers: kill any left that use our config
    spawnSync('pkill', ['-KILL', '-f', this.dir]);
    if (this.rabbitUp) {
      this.rabbitctl('stop');
      spawnSync('epmd', ['-kill'], { env: this.env });
    }
    spawnSync('pkill', ['-KILL', '-f', `sbrmq${this.dir.slice(-6)}`]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
