// The audit test bed, shared by the e2e test and the `audit` benchmark: OVN,
// RabbitMQ, Keystone (its CADF notifications on, the opt-outs cleared) and
// Neutron (keystonemiddleware's audit filter in its pipeline) on MariaDB, an
// agent tracing them with the audit trail publishing to a directory and to
// RabbitMQ, and a tap on the notification exchanges started after the agent.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_SENSITIVE_PATHS } from '../../src/trace/config.js';
import { AgentProcess, until } from './agent.js';
import { RabbitAndCeilometer } from './ceilometer.js';
import { pinDir, skipKernel, unique } from './kernel.js';
import { NotificationTap } from './notifications.js';
import { OpenStack, skipMariadb, skipOpenStack } from './openstack.js';
import { OvnStack, skipOvn } from './ovn.js';

const run = promisify(execFile);

export const skipAuditBed: string | false = skipKernel || skipOvn || skipOpenStack || skipMariadb;

export class AuditBed {
  readonly ns = unique('sbaud', 15);
  readonly node = `audit-${randomBytes(3).toString('hex')}`;
  readonly work = mkdtempSync(join(tmpdir(), 'stackbpf-audit-'));
  readonly pins = pinDir();
  ovn: OvnStack | undefined;
  rabbit: RabbitAndCeilometer | undefined;
  os: OpenStack | undefined;
  agent: AgentProcess | undefined;
  tap: NotificationTap | undefined;
  config: Record<string, unknown> = {};

  get db(): string {
    return join(this.work, 'state', 'audit.db');
  }
  get keyFile(): string {
    return join(this.work, 'state', 'audit.key');
  }
  get published(): string {
    return join(this.work, 'published');
  }
  get amqpUrl(): string {
    return (this.rabbit as RabbitAndCeilometer).transportUrl.replace(/^rabbit:/, 'amqp:');
  }
  get agentConfigFile(): string {
    return join(this.work, 'agent.yaml');
  }

  static async start(opts: { checkpointSeconds?: number } = {}): Promise<AuditBed> {
    const b = new AuditBed();
    try {
      await run('ip', ['netns', 'add', b.ns]);
      b.ovn = await OvnStack.start(b.ns);
      b.rabbit = await RabbitAndCeilometer.start();
      b.os = await OpenStack.start({ db: 'mariadb', keystoneNotifications: b.rabbit.transportUrl });
      await b.os.startNeutron({ nbConnection: b.ovn.sock('nb'), sbConnection: b.ovn.sock('sb'), mariadb: true, auditTransportUrl: b.rabbit.transportUrl });
      b.config = {
        state_dir: join(b.work, 'state'),
        pin_root: b.pins.dir,
        trace: { enabled: true, sensitive_paths: [...DEFAULT_SENSITIVE_PATHS, `${b.os.dir}/`] },
        performance: { enabled: false },
        audit: { node: b.node, paths: [`${b.os.dir}/`], checkpoint_seconds: opts.checkpointSeconds ?? 2, publish: { dir: b.published, amqp_url: b.amqpUrl } },
      };
      b.agent = new AgentProcess(join(b.work, 'api.sock'), b.work);
      await b.agent.start(b.config);
      await until('the tracer to run', async () => (await (b.agent as AgentProcess).api('GET', '/v1/status')).json?.trace?.state !== 'off', 20_000);
      b.tap = await NotificationTap.start(b.rabbit.transportUrl);
      return b;
    } catch (err) {
      await b.stop();
      throw err;
    }
  }

  /**
   * What no OpenStack audit sees, done below the API: a `mariadb` client UPDATE of Keystone's
   * database, a policy.yaml written in Keystone's configuration directory, a `keystone-manage`
   * key rotation. The marker goes into the values written. Returns the policy file's path.
   */
  async outOfBand(marker: string): Promise<string> {
    const os = this.os as OpenStack;
    const sql = `UPDATE project SET description = 'changed by hand ${marker}' WHERE name = 'admin'`;
    await run('mariadb', ['-h', '127.0.0.1', '-P', String(os.mariadbPort), '-u', 'keystone', `-p${os.dbPassword}`, 'keystone', '-e', sql]);
    const policy = join(os.dir, 'policy.yaml');
    writeFileSync(policy, `"identity:list_users": ""  # ${marker}\n`);
    await run('keystone-manage', ['--config-file', join(os.dir, 'keystone.conf'), 'fernet_rotate', '--keystone-user', 'root', '--keystone-group', 'root']);
    return policy;
  }

  async stop(): Promise<void> {
    await this.tap?.stop();
    await this.agent?.stop();
    await this.os?.stop();
    await this.rabbit?.stop();
    await this.ovn?.stop();
    await run('ip', ['netns', 'del', this.ns]).catch(() => undefined);
    this.pins.remove();
    rmSync(this.work, { recursive: true, force: true });
  }
}
