// Real libvirt + QEMU (TCG: no /dev/kvm here) guests for the accounting tests
// and benchmark, set up the way Nova sets them up: a domain XML with Nova's
// metadata (instance UUID and name, owner project and user, flavor, ports),
// taps named "tap" + the first 11 characters of the Neutron port id.
//
// The guests are Debian's cloud kernel with a busybox initramfs
// (test/helpers/guest/init) that pings its peers and writes and reads its
// virtio disk with O_DIRECT. libvirtd runs inside the test's own network
// namespace (nsenter --net keeps the host's mounts, so it still sees
// /sys/fs/cgroup); the taps and a bridge "br-sb" (the tenant network,
// 192.0.2.0/24, gateway .1) live there too, with the metadata address
// 169.254.169.254 on the bridge and an "outside" address 198.51.100.1 routed
// through a veth to a second namespace (the provider side).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The guest init's source (test/helpers/guest/init in the repository). */
const INIT = join(here, '..', '..', '..', 'test', 'helpers', 'guest', 'init');
export const GUEST_CACHE = '/var/cache/stackbpf/guest';
const MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
  'virtio_blk',
  'virtio_balloon',
];

const sh = (cmd: string, args: string[], opts: { input?: string; cwd?: string } = {}): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts });

/** Why libvirt guests cannot run here, or undefined when they can. */
export function libvirtMissing(): string | undefined {
  for (const bin of ['/usr/sbin/libvirtd', '/usr/sbin/virtlogd', '/usr/bin/virsh', '/usr/bin/qemu-system-x86_64', '/bin/busybox']) {
    if (!existsSync(bin)) return `${bin} is missing (scripts/deps.sh test installs libvirt, qemu and busybox-static)`;
  }
  if (!findKernelDeb() && !existsSync(join(GUEST_CACHE, 'vmlinuz'))) return `no guest kernel in ${GUEST_CACHE} (scripts/deps.sh test downloads it)`;
  return undefined;
}

function findKernelDeb(): string | undefined {
  if (!existsSync(GUEST_CACHE)) return undefined;
  const debs = readdirSync(GUEST_CACHE).filter((f) => /^linux-image-.*-cloud-amd64_.*\.deb$/.test(f));
  return debs.length ? join(GUEST_CACHE, debs.sort().at(-1) as string) : undefined;
}

/** The guest kernel and initramfs, built once into the cache (keyed by the init script's hash). */
export function guestArtifacts(): { kernel: string; initrd: string } {
  mkdirSync(GUEST_CACHE, { recursive: true });
  const kernel = join(GUEST_CACHE, 'vmlinuz');
  const root = join(GUEST_CACHE, 'root');
  if (!existsSync(kernel) || !existsSync(join(root, 'lib', 'modules'))) {
    const deb = findKernelDeb();
    if (!deb) throw new Error(`no linux-image-*-cloud-amd64 .deb in ${GUEST_CACHE}: run scripts/deps.sh test`);
    rmSync(root, { recursive: true, force: true });
    sh('dpkg-deb', ['-x', deb, root]);
    const vmlinuz = readdirSync(join(root, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`${deb} has no vmlinuz`);
    copyFileSync(join(root, 'boot', vmlinuz), kernel);
  }
  const init = readFileSync(INIT);
  const tag = createHash('sha256').update(init).digest('hex').slice(0, 12);
  const initrd = join(GUEST_CACHE, `initramfs-${tag}.cpio.gz`);
  if (existsSync(initrd)) return { kernel, initrd };
  const kver = readdirSync(join(root, 'lib', 'modules'))[0] as string;
  const stage = join(GUEST_CACHE, `stage-${process.pid}`);
  rmSync(stage, { recursive: true, force: true });
  for (const d of ['bin', 'lib/modules', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(stage, d), { recursive: true });
  copyFileSync('/bin/busybox', join(stage, 'bin', 'busybox'));
  chmodSync(join(stage, 'bin', 'busybox'), 0o755);
  copyFileSync(INIT, join(stage, 'init'));
  chmodSync(join(stage, 'init'), 0o755);
  for (const m of MODULES) {
    const found = sh('find', [join(root, 'lib', 'modules', kver), '-name', `${m}.ko`])
      .trim()
      .split('\n')[0];
    if (!found) throw new Error(`module ${m}.ko not found in the guest kernel package`);
    copyFileSync(found, join(stage, 'lib', 'modules', `${m}.ko`));
  }
  const list = sh('find', ['.'], { cwd: stage });
  const cpio = spawnSync('/bin/busybox', ['cpio', '-o', '-H', 'newc'], { cwd: stage, input: list, maxBuffer: 64 << 20 });
  if (cpio.status !== 0) throw new Error(`cpio failed: ${cpio.stderr}`);
  const gz = spawnSync('gzip', ['-1'], { input: cpio.stdout, maxBuffer: 64 << 20 });
  writeFileSync(`${initrd}.tmp`, gz.stdout);
  execFileSync('mv', [`${initrd}.tmp`, initrd]);
  rmSync(stage, { recursive: true, force: true });
  return { kernel, initrd };
}

export interface GuestSpec {
  /** libvirt domain name, as Nova names them (instance-XXXXXXXX) */
  name: string;
  uuid: string;
  displayName: string;
  projectId: string;
  userId: string;
  portId: string;
  mac: string;
  ip: string; // address/len
  gw?: string;
  ping?: string[];
  size?: number;
  disk?: boolean;
  pause?: number;
  /** break the XML on purpose (tests of bad input) */
  rawXml?: string;
  /** the tap was created already (addTap) */
  tapReady?: boolean;
}

export const tapName = (portId: string): string => `tap${portId.slice(0, 11)}`;
export const uuid4 = (): string => {
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};

export function domainXml(g: GuestSpec, dir: string, art: { kernel: string; initrd: string }): string {
  const cmd = [
    'console=ttyS0 panic=-1 quiet',
    `sb.ip=${g.ip}`,
    g.gw ? `sb.gw=${g.gw}` : '',
    g.ping?.length ? `sb.ping=${g.ping.join(',')}` : '',
    `sb.size=${g.size ?? 1000}`,
    `sb.disk=${g.disk ? 1 : 0}`,
    `sb.pause=${g.pause ?? 1}`,
  ]
    .filter(Boolean)
    .join(' ');
  return `<domain type="qemu">
  <uuid>${g.uuid}</uuid>
  <name>${g.name}</name>
  <memory>131072</memory>
  <vcpu>1</vcpu>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="26.2.0"/>
      <nova:name>${g.displayName}</nova:name>
      <nova:creationTime>2026-12-07 00:00:00</nova:creationTime>
      <nova:flavor name="m1.nano">
        <nova:memory>128</nova:memory>
        <nova:disk>1</nova:disk>
        <nova:swap>0</nova:swap>
        <nova:ephemeral>0</nova:ephemeral>
        <nova:vcpus>1</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="${g.userId}">demo</nova:user>
        <nova:project uuid="${g.projectId}">demo</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="b3cd7380-9885-43c8-b117-a45a1bb18a85"/>
      <nova:ports>
        <nova:port uuid="${g.portId}">
          <nova:ip type="fixed" address="${g.ip.split('/')[0]}" ipVersion="4"/>
        </nova:port>
      </nova:ports>
    </nova:instance>
  </metadata>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <kernel>${art.kernel}</kernel>
    <initrd>${art.initrd}</initrd>
    <cmdline>${cmd}</cmdline>
  </os>
  <features><acpi/><apic/><tcg><tb-cache unit="MiB">32</tb-cache></tcg></features>
  <clock offset="utc"/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw" cache="none" io="native"/>
      <source file="${dir}/${g.name}.raw"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <interface type="ethernet">
      <mac address="${g.mac}"/>
      <model type="virtio"/>
      <mtu size="1450"/>
      <target dev="${tapName(g.portId)}" managed="no"/>
    </interface>
    <serial type="pty"><log file="${dir}/${g.name}.console" append="off"/></serial>
    <console type="pty"><target type="serial" port="0"/></console>
    <memballoon model="virtio"><stats period="2"/></memballoon>
  </devices>
</domain>
`;
}

const run = (args: string[]): void => {
  const r = spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr || r.stdout}`);
};
const tryRun = (args: string[]): void => {
  spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8' });
};

/** A namespace with libvirtd, the tenant bridge and the provider side. */
export class LibvirtLab {
  readonly ns: string;
  readonly provider: string;
  readonly dir: string;
  private startedLibvirt = false;
  private readonly domains = new Set<string>();
  private readonly art: { kernel: string; initrd: string };

  private constructor(id: string, dir: string, art: { kernel: string; initrd: string }) {
    this.ns = `sbv${id}`;
    this.provider = `sbp${id}`;
    this.dir = dir;
    this.art = art;
  }

  static async start(): Promise<LibvirtLab> {
    await clearLeftover();
    const art = guestArtifacts();
    const id = randomBytes(3).toString('hex');
    const dir = `/var/tmp/stackbpf-libvirt-${id}`;
    mkdirSync(dir, { recursive: true });
    const lab = new LibvirtLab(id, dir, art);
    try {
      lab.up();
    } catch (err) {
      await lab.stop();
      throw err;
    }
    return lab;
  }

  /** Run a command inside the lab's namespace. */
  exec(args: string[], ns = this.ns): string {
    return sh('ip', ['netns', 'exec', ns, ...args]);
  }

  private up(): void {
    const { ns, provider } = this;
    run(['ip', 'netns', 'add', ns]);
    run(['ip', 'netns', 'add', provider]);
    this.exec(['ip', 'link', 'set', 'lo', 'up']);
    // IPv4 only: no router solicitations or MLD reports from the host side, which a suspended
    // guest would leave queued in its tap (counted by us when handed over, by the device when read)
    this.exec(['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    this.exec(['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
    this.exec(['ip', 'link', 'add', 'br-sb', 'type', 'bridge']);
    this.exec(['ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'br-sb']);
    this.exec(['ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'br-sb']);
    this.exec(['ip', 'link', 'set', 'br-sb', 'up']);
    this.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // the provider side: 198.51.100.0/24 behind a veth
    this.exec(['ip', 'link', 'add', 'prov0', 'type', 'veth', 'peer', 'name', 'prov1', 'netns', provider]);
    this.exec(['ip', 'addr', 'add', '203.0.113.1/30', 'dev', 'prov0']);
    this.exec(['ip', 'link', 'set', 'prov0', 'up']);
    this.exec(['ip', 'route', 'add', '198.51.100.0/24', 'via', '203.0.113.2']);
    this.exec(['ip', 'link', 'set', 'lo', 'up'], provider);
    this.exec(['ip', 'addr', 'add', '203.0.113.2/30', 'dev', 'prov1'], provider);
    this.exec(['ip', 'addr', 'add', '198.51.100.1/32', 'dev', 'lo'], provider);
    this.exec(['ip', 'link', 'set', 'prov1', 'up'], provider);
    this.exec(['ip', 'route', 'add', '192.0.2.0/24', 'via', '203.0.113.1'], provider);
    // libvirtd and virtlogd: one per node (system mode); started here unless one runs
    if (!libvirtRunning()) {
      writeFileSync(join(this.dir, 'libvirtd.conf'), `log_outputs="3:file:${this.dir}/libvirtd.log"\n`);
      writeFileSync(join(this.dir, 'virtlogd.conf'), `log_outputs="3:file:${this.dir}/virtlogd.log"\n`);
      run(['nsenter', `--net=/run/netns/${ns}`, '/usr/sbin/virtlogd', '-d', '-f', join(this.dir, 'virtlogd.conf')]);
      run(['nsenter', `--net=/run/netns/${ns}`, '/usr/sbin/libvirtd', '-d', '-f', join(this.dir, 'libvirtd.conf')]);
      this.startedLibvirt = true;
      const deadline = Date.now() + 30_000;
      while (spawnSync('virsh', ['-c', 'qemu:///system', 'version'], { stdio: 'ignore' }).status !== 0) {
        if (Date.now() > deadline) throw new Error(`libvirtd did not answer within 30 s (log: ${this.dir}/libvirtd.log)`);
        spawnSync('sleep', ['0.1']);
      }
    }
  }

  /** The tap for a port (created before the domain starts: managed="no"). */
  addTap(portId: string): string {
    const tap = tapName(portId);
    this.exec(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr']);
    this.exec(['ip', 'link', 'set', tap, 'master', 'br-sb']);
    this.exec(['ip', 'link', 'set', tap, 'up']);
    return tap;
  }

  /** Define and start a guest; returns its qemu pid. */
  startGuest(g: GuestSpec): number {
    if (!g.tapReady) this.addTap(g.portId);
    // written out (not sparse): writes into holes would add the file system's own block allocation to the guest's I/O
    run(['dd', 'if=/dev/zero', `of=${join(this.dir, `${g.name}.raw`)}`, 'bs=1M', 'count=8', 'conv=fsync', 'status=none']);
    const xml = g.rawXml ?? domainXml(g, this.dir, this.art);
    const file = join(this.dir, `${g.name}.xml`);
    writeFileSync(file, xml);
    this.domains.add(g.name);
    run(['virsh', '-q', '-c', 'qemu:///system', 'define', file]);
    run(['virsh', '-q', '-c', 'qemu:///system', 'start', g.name]);
    return this.pidOf(g.name);
  }

  pidOf(name: string): number {
    const pidFile = `/run/libvirt/qemu/${name}.pid`;
    return Number(readFileSync(pidFile, 'utf8').trim());
  }

  /** Stop a guest (its qemu exits; the tap stays, as Nova's would until unplugged). */
  destroyGuest(name: string): void {
    tryRun(['virsh', '-q', '-c', 'qemu:///system', 'destroy', name]);
  }

  removeTap(portId: string): void {
    tryRun(['ip', 'netns', 'exec', this.ns, 'ip', 'link', 'del', tapName(portId)]);
  }

  /** The kernel's own counters of a tap (/proc/net/dev of the lab's namespace). */
  tapCounters(tap: string): { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number } {
    const line = this.exec(['cat', '/proc/net/dev'])
      .split('\n')
      .find((l) => l.trim().startsWith(`${tap}:`));
    if (!line) throw new Error(`${tap} is not in /proc/net/dev of ${this.ns}`);
    const f = line.split(':')[1]?.trim().split(/\s+/).map(Number) as number[];
    return { rxBytes: f[0] as number, rxPackets: f[1] as number, txBytes: f[8] as number, txPackets: f[9] as number };
  }

  async stop(): Promise<void> {
    for (const d of this.domains) {
      tryRun(['virsh', '-q', '-c', 'qemu:///system', 'destroy', d]);
      tryRun(['virsh', '-q', '-c', 'qemu:///system', 'undefine', d]);
    }
    if (this.startedLibvirt) {
      for (const pidFile of ['/run/libvirtd.pid', '/run/virtlogd.pid']) {
        if (!existsSync(pidFile)) continue;
        const pid = Number(readFileSync(pidFile, 'utf8').trim());
        try {
          process.kill(pid, 'SIGTERM');
        } catch {}
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline) {
          try {
            process.kill(pid, 0);
          } catch {
            break;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    tryRun(['ip', 'netns', 'del', this.ns]);
    tryRun(['ip', 'netns', 'del', this.provider]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const pidOf = (file: string): number | undefined => {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
};

/**
 * A libvirtd left by a test that was killed lives in a namespace that is
 * gone or about to be: remove its domains, stop it, delete its namespaces.
 * A libvirtd that is not ours is left alone (the lab then uses it).
 */
async function clearLeftover(): Promise<void> {
  const pid = pidOf('/run/libvirtd.pid');
  if (!pid) return;
  let cmd = '';
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {}
  const m = /stackbpf-libvirt-([0-9a-f]+)/.exec(cmd);
  if (!m) return;
  const names = spawnSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const n of names) {
    const xml = spawnSync('virsh', ['-q', '-c', 'qemu:///system', 'dumpxml', n], { encoding: 'utf8' }).stdout;
    if (!xml.includes('/var/tmp/stackbpf-libvirt-')) continue;
    tryRun(['virsh', '-q', '-c', 'qemu:///system', 'destroy', n]);
    tryRun(['virsh', '-q', '-c', 'qemu:///system', 'undefine', n]);
  }
  for (const f of ['/run/libvirtd.pid', '/run/virtlogd.pid']) {
    const p = pidOf(f);
    if (!p) continue;
    try {
      process.kill(p, 'SIGTERM');
    } catch {}
    for (let i = 0; i < 200 && pidOf(f) === p; i++) await new Promise((r) => setTimeout(r, 50));
  }
  tryRun(['ip', 'netns', 'del', `sbv${m[1]}`]);
  tryRun(['ip', 'netns', 'del', `sbp${m[1]}`]);
  rmSync(`/var/tmp/stackbpf-libvirt-${m[1]}`, { recursive: true, force: true });
}

function libvirtRunning(): boolean {
  if (!existsSync('/run/libvirtd.pid')) return false;
  const pid = Number(readFileSync('/run/libvirtd.pid', 'utf8').trim());
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** virsh on the system connection (the lab's libvirtd). */
export const virsh = (...args: string[]): string => execFileSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });

/** The scheduler's CPU time of every live thread of a process, ns (each thread's /proc schedstat). */
export function schedCpu(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      n += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {}
  }
  return n;
}

/** QEMU's block statistics of a disk (virsh domblkstat): rd_req rd_bytes wr_req wr_bytes ... */
export function blkstat(domain: string, dev = 'vda'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of virsh('domblkstat', domain, dev).split('\n')) {
    const [, k, v] = line.trim().split(/\s+/);
    if (k && v) out[k] = Number(v);
  }
  return out;
}
