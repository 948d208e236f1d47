// A real OVN chassis inside a network namespace: ovsdb-server (Open_vSwitch),
// ovs-vswitchd on the userspace (netdev) datapath, the NB and SB databases,
// ovn-northd and ovn-controller, each with its pid file, sockets and logs in
// a private directory. Everything runs inside the namespace, so bridges and
// taps (br-int, br-ex, ovs-netdev) live and die with it and the root
// namespace is never touched. stop() kills every daemon by pid.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { killPid } from './agent.js';
import { unique } from './kernel.js';

const run = promisify(execFile);

const NEEDED = ['/usr/sbin/ovsdb-server', '/usr/sbin/ovs-vswitchd', '/usr/bin/ovn-northd', '/usr/bin/ovn-controller', '/usr/bin/ovn-nbctl'];
export const skipOvn: string | false = NEEDED.some((p) => !existsSync(p))
  ? `needs ${NEEDED.filter((p) => !existsSync(p)).join(', ')} (scripts/deps.sh test installs openvswitch-switch, ovn-central, ovn-host)`
  : false;

export interface OvnVm {
  ns: string;
  port: string;
  mac: string;
  ip: string;
  hostIf: string;
}

type Daemon = 'ovsdb' | 'vswitchd' | 'nb' | 'sb' | 'northd' | 'controller';

export class OvnStack {
  readonly chassis = unique('chassis', 24);
  readonly hostname = unique('host', 24);
  readonly vms: OvnVm[] = [];
  private constructor(
    readonly ns: string,
    readonly dir: string,
  ) {}

  sock(db: 'db' | 'nb' | 'sb'): string {
    return `unix:${join(this.dir, `${db}.sock`)}`;
  }

  private async exec(cmd: string, args: string[], timeout = 30_000): Promise<string> {
    try {
      const { stdout } = await run(
        'ip',
        ['netns', 'exec', this.ns, 'env', `OVS_RUNDIR=${this.dir}`, `OVN_RUNDIR=${this.dir}`, `OVS_LOGDIR=${this.dir}`, `OVN_LOGDIR=${this.dir}`, cmd, ...args],
        { timeout },
      );
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  }

  private daemonArgs(name: Daemon): string[] {
    return [`--pidfile=${join(this.dir, `${name}.pid`)}`, `--log-file=${join(this.dir, `${name}.log`)}`, '--detach', '--no-chdir'];
  }

  /** Start the whole chassis in `ns` with a provider bridge br-ex mapped from physnet1. */
  static async start(ns: string): Promise<OvnStack> {
    const s = new OvnStack(ns, mkdtempSync(join(tmpdir(), 'sbt-ovn-')));
    try {
      const d = s.dir;
      await s.exec('ovsdb-tool', ['create', join(d, 'conf.db'), '/usr/share/openvswitch/vswitch.ovsschema']);
      await s.exec('ovsdb-tool', ['create', join(d, 'nb.db'), '/usr/share/ovn/ovn-nb.ovsschema']);
      await s.exec('ovsdb-tool', ['create', join(d, 'sb.db'), '/usr/share/ovn/ovn-sb.ovsschema']);
      await s.startDb('ovsdb');
      await s.vsctl(['--no-wait', 'init']);
      await s.exec('ovs-vswitchd', [s.sock('db'), `--unixctl=${join(d, 'vswitchd.ctl')}`, ...s.daemonArgs('vswitchd')]);
      await s.startDb('nb');
      await s.startDb('sb');
      await s.nbctl(['init']);
      await s.exec('ovn-northd', [`--ovnnb-db=${s.sock('nb')}`, `--ovnsb-db=${s.sock('sb')}`, `--unixctl=${join(d, 'northd.ctl')}`, ...s.daemonArgs('northd')]);
      await s.vsctl([
        'set',
        'Open_vSwitch',
        '.',
        `external_ids:system-id=${s.chassis}`,
        `external_ids:hostname=${s.hostname}`,
        `external_ids:ovn-remote=${s.sock('sb')}`,
        'external_ids:ovn-encap-type=geneve',
        'external_ids:ovn-encap-ip=127.0.0.1',
        'external_ids:ovn-bridge-datapath-type=netdev',
        'external_ids:ovn-bridge-mappings=physnet1:br-ex',
      ]);
      await s.vsctl(['add-br', 'br-ex', '--', 'set', 'Bridge', 'br-ex', 'datapath_type=netdev']);
      await s.exec('ip', ['link', 'set', 'br-ex', 'up']);
      await s.exec('ovn-controller', [s.sock('db'), ...s.daemonArgs('controller')]);
      await s.until('ovn-controller to register the chassis', async () => (await s.sbctl(['--bare', '--columns=name', 'list', 'Chassis'])).includes(s.chassis));
      return s;
    } catch (err) {
      await s.stop();
      throw err;
    }
  }

  private async startDb(name: 'ovsdb' | 'nb' | 'sb'): Promise<void> {
    const file = name === 'ovsdb' ? 'conf.db' : `${name}.db`;
    const sockName = name === 'ovsdb' ? 'db' : name;
    await this.exec('ovsdb-server', [
      join(this.dir, file),
      `--remote=punix:${join(this.dir, `${sockName}.sock`)}`,
      `--unixctl=${join(this.dir, `${name}.ctl`)}`,
      ...this.daemonArgs(name),
    ]);
  }

  async until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }

  nbctl(args: string[]): Promise<string> {
    return this.exec('ovn-nbctl', [`--db=${this.sock('nb')}`, ...args]);
  }
  sbctl(args: string[]): Promise<string> {
    return this.exec('ovn-sbctl', [`--db=${this.sock('sb')}`, ...args]);
  }
  vsctl(args: string[]): Promise<string> {
    return this.exec('ovs-vsctl', [`--db=${this.sock('db')}`, ...args]);
  }

  pid(name: Daemon): number | undefined {
    try {
      return Number(readFileSync(join(this.dir, `${name}.pid`), 'utf8').trim());
    } catch {
      return undefined;
    }
  }

  /** Kill one daemon (by pid) and wait until it is gone. */
  async kill(name: Daemon): Promise<void> {
    const pid = this.pid(name);
    if (!pid) return;
    await killPid(pid);
    rmSync(join(this.dir, `${name}.pid`), { force: true });
  }

  /** Restart a database server on the same file and socket. */
  async restartDb(name: 'nb' | 'sb'): Promise<void> {
    await this.kill(name);
    await this.startDb(name);
  }

  /**
   * A VM: a namespace whose eth0 has the port's MAC and address, its peer
   * plugged into br-int with external_ids:iface-id=<port> (ovn-controller
   * then binds the port to this chassis).
   */
  async addVm(port: string, mac: string, ip: string, gateway: string): Promise<OvnVm> {
    const ns = unique('sbovm', 24);
    const hostIf = unique('tv');
    await run('ip', ['netns', 'add', ns]);
    const vm: OvnVm = { ns, port, mac, ip, hostIf };
    this.vms.push(vm);
    await run('ip', ['link', 'add', hostIf, 'netns', this.ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    const ipn = (...a: string[]) => run('ip', ['-n', ns, ...a]);
    await ipn('link', 'set', 'lo', 'up');
    await ipn('link', 'set', 'eth0', 'address', mac);
    await ipn('addr', 'add', ip, 'dev', 'eth0');
    await ipn('link', 'set', 'eth0', 'up');
    await ipn('route', 'add', 'default', 'via', gateway);
    await this.exec('ip', ['link', 'set', hostIf, 'up']);
    await this.vsctl(['add-port', 'br-int', hostIf, '--', 'set', 'Interface', hostIf, `external_ids:iface-id=${port}`]);
    return vm;
  }

  async stop(): Promise<void> {
    for (const d of ['controller', 'northd', 'vswitchd', 'sb', 'nb', 'ovsdb'] as const) await this.kill(d);
    for (const vm of this.vms) await run('ip', ['netns', 'delete', vm.ns]).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
