// `stackbpf lab`: an emulated OpenStack network node in network namespaces.
//
//   <base>-up    upstream router: FRR (AS 65001), eBGP peer of the node;
//                clients 203.0.113.1/24 and 2001:db8:ff::1/64 on its lo
//        up0 192.0.2.1/30, 2001:db8:ffff::1/64
//         |
//        prov0 192.0.2.2/30, 2001:db8:ffff::2/64   (provider NIC, forwarding off)
//   <base>-node  the node: FRR (AS 64999, configured by the agent), the
//                XDP fast path on prov0, the TC return path on each tap
//        tapN 169.254.1.1/32, fe80::1/64            (the VM side of br-ex)
//         |
//        eth0 (or eth0.VLAN) 198.51.100.(10+N)/32, 2001:db8:1::(10+N)/128
//   <base>-vmN   a VM
//
// Only documentation ranges (RFC 5737 / RFC 3849) and link-local addresses
// are used. State is kept in /run/stackbpf/lab/<name>.json so `down` and
// `status` find everything, and `down` removes it all even after a crash.
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { BpfObject, ensurePinDir, type Link } from '../ebpf/index.js';
import { objectPath } from '../paths.js';

const run = promisify(execFile);

export const LAB_STATE_DIR = '/run/stackbpf/lab';
export const NODE_ASN = 64999;
export const UPSTREAM_ASN = 65001;

export interface LabVm {
  ns: string;
  tap: string;
  mac: string;
  ipv4: string;
  ipv6: string;
  vlan: number;
}

export interface LabState {
  name: string;
  base: string;
  upstream: { ns: string; ifname: string; ipv4: string; ipv6: string; client4: string; client6: string; frr: string };
  node: { ns: string; provider: string; ipv4: string; ipv6: string; frr: string; asn: number };
  vms: LabVm[];
  createdAt: string;
}

export interface LabOptions {
  name?: string;
  /** VLAN of each VM's provider network (0: untagged); its length is the VM count. */
  vms?: number[];
  log?: (line: string) => void;
}

async function sh(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: timeoutMs });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

const nsExec = (ns: string, cmd: string, args: string[]): Promise<string> => sh('ip', ['netns', 'exec', ns, cmd, ...args]);
const ipn = (ns: string, ...args: string[]): Promise<string> => sh('ip', ['-n', ns, ...args]);
const sysctl = (ns: string, kv: string): Promise<string> => nsExec(ns, 'sysctl', ['-qw', kv]);

async function macIn(ns: string, ifname: string): Promise<string> {
  const info = JSON.parse(await ipn(ns, '-j', 'link', 'show', 'dev', ifname)) as { address: string }[];
  return info[0]?.address as string;
}

export const labPinDir = (name: string): string => `/sys/fs/bpf/stackbpf-lab/${name}`;
/** Pin root of an agent run with the configuration `lab up --write-config` writes. */
export const labAgentPinRoot = (name: string): string => `/sys/fs/bpf/stackbpf-lab-agent-${name}`;

/** xdp_pass on the VM's eth0 (redirect targets need it), and VLAN tagging for tagged VMs. */
async function attachVmPrograms(state: LabState, vm: LabVm): Promise<void> {
  const dir = `${labPinDir(state.name)}/${vm.ns}`;
  ensurePinDir(dir);
  const obj = BpfObject.open(objectPath('lab'));
  try {
    obj.setConstant('vlan_id', vm.vlan);
    if (!vm.vlan) {
      obj.setAutoload('tc_vlan_untag', false);
      obj.setAutoload('tc_vlan_tag', false);
    }
    await obj.load();
    const links: [string, Link][] = [['xdp', obj.program('xdp_pass').attachXdp('eth0', { netns: vm.ns })]];
    if (vm.vlan) {
      links.push(['tc-in', obj.program('tc_vlan_untag').attachTc('eth0', { direction: 'ingress', netns: vm.ns, mode: 'tcx' }) as Link]);
      links.push(['tc-out', obj.program('tc_vlan_tag').attachTc('eth0', { direction: 'egress', netns: vm.ns, mode: 'tcx' }) as Link]);
    }
    for (const [n, l] of links) {
      l.pin(`${dir}/${n}`);
      l.close();
    }
  } finally {
    obj.close();
  }
}

function validName(name: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,20}$/.test(name)) throw new Error(`lab name "${name}": use 1-21 lower-case letters, digits and dashes`);
  return name;
}

export function statePath(name: string): string {
  return `${LAB_STATE_DIR}/${validName(name)}.json`;
}

export function readLab(name: string): LabState | undefined {
  const p = statePath(name);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as LabState) : undefined;
}

export function listLabs(): string[] {
  return existsSync(LAB_STATE_DIR)
    ? readdirSync(LAB_STATE_DIR)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5))
    : [];
}

function frrFiles(instance: string, hostname: string, config: string): void {
  const dir = `/etc/frr/${instance}`;
  mkdirSync(dir, { recursive: true });
  const daemons = [
    'bgpd=yes',
    'vtysh_enable=yes',
    'zebra_options="  -A 127.0.0.1 -s 90000000"',
    'bgpd_options="   -A 127.0.0.1"',
    'staticd_options="-A 127.0.0.1"',
    '',
  ].join('\n');
  writeFileSync(`${dir}/daemons`, daemons);
  writeFileSync(`${dir}/frr.conf`, `frr defaults traditional\nhostname ${hostname}\n${config}`);
  writeFileSync(`${dir}/vtysh.conf`, 'service integrated-vtysh-config\n');
  const ids = frrIds();
  for (const f of ['', '/daemons', '/frr.conf', '/vtysh.conf']) chownSync(`${dir}${f}`, ids.uid, ids.gid);
}

function frrIds(): { uid: number; gid: number } {
  const passwd = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('frr:'));
  if (!passwd) throw new Error('FRR is not installed (no frr user): apt-get install frr');
  const f = passwd.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

export async function startFrr(ns: string, instance: string): Promise<void> {
  await nsExec(ns, '/usr/lib/frr/frrinit.sh', ['start', instance]);
}

export async function stopFrr(ns: string, instance: string): Promise<void> {
  await nsExec(ns, '/usr/lib/frr/frrinit.sh', ['stop', instance]).catch(() => undefined);
}

function upstreamConfig(s: LabState['upstream'], node: LabState['node']): string {
  return `router bgp ${UPSTREAM_ASN}
 bgp router-id ${s.ipv4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor ${node.ipv4} remote-as ${NODE_ASN}
 neighbor ${node.ipv4} timers 1 3
 neighbor ${node.ipv4} timers connect 1
 neighbor ${node.ipv4} advertisement-interval 0
 neighbor ${node.ipv6} remote-as ${NODE_ASN}
 neighbor ${node.ipv6} timers 1 3
 neighbor ${node.ipv6} timers connect 1
 neighbor ${node.ipv6} advertisement-interval 0
 address-family ipv4 unicast
  network 203.0.113.0/24
  neighbor ${node.ipv4} activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:ff::/64
  neighbor ${node.ipv6} activate
 exit-address-family
exit
`;
}

/** Build the lab. Idempotent per name: an existing lab of that name is torn down first. */
export async function labUp(opts: LabOptions = {}): Promise<LabState> {
  const name = validName(opts.name ?? 'lab');
  const log = opts.log ?? (() => undefined);
  if (readLab(name)) await labDown(name, log);
  const base = `sbl-${name}`;
  const vlans = opts.vms ?? [0];
  const state: LabState = {
    name,
    base,
    upstream: {
      ns: `${base}-up`,
      ifname: 'up0',
      ipv4: '192.0.2.1',
      ipv6: '2001:db8:ffff::1',
      client4: '203.0.113.1',
      client6: '2001:db8:ff::1',
      frr: `${base}-up`,
    },
    node: { ns: `${base}-node`, provider: 'prov0', ipv4: '192.0.2.2', ipv6: '2001:db8:ffff::2', frr: `${base}-node`, asn: NODE_ASN },
    vms: vlans.map((vlan, i) => ({
      ns: `${base}-vm${i}`,
      tap: `tap${i}`,
      mac: `02:5b:00:00:00:${(0x10 + i).toString(16).padStart(2, '0')}`,
      ipv4: `198.51.100.${10 + i}`,
      ipv6: `2001:db8:1::${(0x10 + i).toString(16)}`,
      vlan,
    })),
    createdAt: new Date().toISOString(),
  };
  mkdirSync(LAB_STATE_DIR, { recursive: true });
  writeFileSync(statePath(name), `${JSON.stringify(state, null, 2)}\n`);
  try {
    const { upstream: up, node } = state;
    for (const ns of [up.ns, node.ns, ...state.vms.map((v) => v.ns)]) {
      await sh('ip', ['netns', 'add', ns]);
      await ipn(ns, 'link', 'set', 'lo', 'up');
    }
    log(`namespaces: ${up.ns}, ${node.ns}, ${state.vms.map((v) => v.ns).join(', ')}`);

    // upstream <-> provider NIC
    await sh('ip', ['link', 'add', up.ifname, 'netns', up.ns, 'type', 'veth', 'peer', 'name', node.provider, 'netns', node.ns]);
    await ipn(up.ns, 'addr', 'add', `${up.ipv4}/30`, 'dev', up.ifname);
    await ipn(up.ns, 'addr', 'add', `${up.ipv6}/64`, 'dev', up.ifname, 'nodad');
    await ipn(up.ns, 'addr', 'add', `${up.client4}/24`, 'dev', 'lo');
    await ipn(up.ns, 'addr', 'add', `${up.client6}/64`, 'dev', 'lo', 'nodad');
    await ipn(up.ns, 'link', 'set', up.ifname, 'up');
    // veth hands TCP/UDP over with the checksum left to "offload"; an XDP
    // redirect loses that state, so the upstream side computes checksums
    // itself (a real NIC delivers complete checksums)
    await nsExec(up.ns, 'ethtool', ['-K', up.ifname, 'tx', 'off']);
    await ipn(node.ns, 'addr', 'add', `${node.ipv4}/30`, 'dev', node.provider);
    await ipn(node.ns, 'addr', 'add', `${node.ipv6}/64`, 'dev', node.provider, 'nodad');
    await ipn(node.ns, 'link', 'set', node.provider, 'up');
    // the node forwards nothing by itself: exposed traffic must take the eBPF path
    for (const kv of [
      'net.ipv4.conf.all.forwarding=0',
      'net.ipv6.conf.all.forwarding=0',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
    ]) {
      await sysctl(node.ns, kv);
    }
    await sysctl(up.ns, 'net.ipv4.conf.all.forwarding=1');
    await sysctl(up.ns, 'net.ipv6.conf.all.forwarding=1');

    for (const vm of state.vms) {
      await sh('ip', ['link', 'add', vm.tap, 'netns', node.ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm.ns]);
      await ipn(vm.ns, 'link', 'set', 'eth0', 'address', vm.mac);
      await ipn(vm.ns, 'link', 'set', 'eth0', 'up');
      await ipn(vm.ns, 'addr', 'add', `${vm.ipv4}/32`, 'dev', 'eth0');
      await ipn(vm.ns, 'addr', 'add', `${vm.ipv6}/128`, 'dev', 'eth0', 'nodad');
      await ipn(vm.ns, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0', 'onlink');
      await ipn(vm.ns, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0');
      await ipn(node.ns, 'addr', 'add', '169.254.1.1/32', 'dev', vm.tap);
      await ipn(node.ns, 'addr', 'add', 'fe80::1/64', 'dev', vm.tap, 'nodad');
      await ipn(node.ns, 'link', 'set', vm.tap, 'up');
      if (vm.vlan) {
        // no VLAN devices in this kernel: the node cannot answer ARP/NDP on the
        // tagged network, so the VM knows its gateway's MAC statically
        const gw = await macIn(node.ns, vm.tap);
        await ipn(vm.ns, 'neigh', 'replace', '169.254.1.1', 'lladdr', gw, 'dev', 'eth0', 'nud', 'permanent');
        await ipn(vm.ns, 'neigh', 'replace', 'fe80::1', 'lladdr', gw, 'dev', 'eth0', 'nud', 'permanent');
      }
      await attachVmPrograms(state, vm);
      // the return path looks up the FIB on the VM side: that needs forwarding on there (only)
      await sysctl(node.ns, `net.ipv4.conf.${vm.tap}.forwarding=1`);
      await sysctl(node.ns, `net.ipv6.conf.${vm.tap}.forwarding=1`);
    }
    log(`VMs: ${state.vms.map((v) => `${v.ns} ${v.ipv4} ${v.ipv6}${v.vlan ? ` vlan ${v.vlan}` : ''}`).join('; ')}`);

    frrFiles(up.frr, 'upstream', upstreamConfig(up, node));
    frrFiles(node.frr, 'node', '');
    await startFrr(up.ns, up.frr);
    await startFrr(node.ns, node.frr);
    log(`FRR: ${up.frr} (AS ${UPSTREAM_ASN}) and ${node.frr} (AS ${NODE_ASN}, configured by the agent)`);
    return state;
  } catch (err) {
    await labDown(name, log).catch(() => undefined);
    throw err;
  }
}

/** Tear the lab down: FRR, namespaces, FRR files, state. Safe to call twice. */
export async function labDown(name: string, log: (l: string) => void = () => undefined): Promise<boolean> {
  const state = readLab(name);
  const base = state?.base ?? `sbl-${validName(name)}`;
  const namespaces = state
    ? [state.upstream.ns, state.node.ns, ...state.vms.map((v) => v.ns)]
    : (await sh('ip', ['netns', 'list']).catch(() => ''))
        .split('\n')
        .map((l) => l.split(' ')[0] ?? '')
        .filter((n) => n.startsWith(`${base}-`));
  for (const ns of namespaces) {
    if (existsSync(`/etc/frr/${ns}`)) await stopFrr(ns, ns);
  }
  for (const ns of namespaces) {
    await sh('ip', ['netns', 'delete', ns]).catch(() => undefined);
    for (const dir of [`/etc/frr/${ns}`, `/var/run/frr/${ns}`]) if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
  // the lab's own pins, and what an agent run with the lab's written configuration pinned
  for (const dir of [labPinDir(validName(name)), labAgentPinRoot(name), `/run/stackbpf/lab-agent/${name}`]) {
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
  if (existsSync('/sys/fs/bpf/stackbpf-lab') && readdirSync('/sys/fs/bpf/stackbpf-lab').length === 0) rmSync('/sys/fs/bpf/stackbpf-lab', { recursive: true });
  if (existsSync(statePath(name))) rmSync(statePath(name));
  if (namespaces.length) log(`removed ${namespaces.join(', ')}`);
  return namespaces.length > 0;
}

export interface LabStatus {
  name: string;
  namespaces: Record<string, boolean>;
  bgp: { established: boolean; routes: string[] } | undefined;
}

/** What is up, and what the upstream router learned from the node. */
export async function labStatus(name: string): Promise<LabStatus | undefined> {
  const s = readLab(name);
  if (!s) return undefined;
  const present = new Set((await sh('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]));
  const namespaces: Record<string, boolean> = {};
  for (const ns of [s.upstream.ns, s.node.ns, ...s.vms.map((v) => v.ns)]) namespaces[ns] = present.has(ns);
  let bgp: LabStatus['bgp'];
  try {
    bgp = { established: false, routes: await upstreamRoutes(s) };
    const summary = await nsExec(s.upstream.ns, 'vtysh', ['-N', s.upstream.frr, '-c', 'show bgp summary json']);
    bgp.established = /"state":\s*"Established"/.test(summary);
  } catch {
    bgp = undefined;
  }
  return { name, namespaces, bgp };
}

/** Prefixes the upstream router learned by BGP from the node (its RIB). */
export async function upstreamRoutes(s: LabState): Promise<string[]> {
  const out: string[] = [];
  for (const fam of ['ip', 'ipv6'] as const) {
    const json = await nsExec(s.upstream.ns, 'vtysh', ['-N', s.upstream.frr, '-c', `show ${fam} route bgp json`]);
    out.push(...Object.keys(JSON.parse(json || '{}') as Record<string, unknown>));
  }
  return out.sort();
}
