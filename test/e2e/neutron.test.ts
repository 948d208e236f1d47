// End to end with real Neutron: neutron-server (ML2/OVN) against a real
// Keystone writes the OVN NB database of a real OVN chassis running in the
// lab's node namespace; the agent (SB mode, the default) learns from what
// ovn-northd and ovn-controller make of it, programs the fast path and
// announces to the lab's FRR peer; traffic from upstream reaches the VMs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { labAgentConfig } from '../../src/cli/lab-cmd.js';
import { labDown, labUp, type LabState, upstreamRoutes } from '../../src/lab/lab.js';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';
import { OvnStack, skipOvn } from '../helpers/ovn.js';
import { OpenStack, skipOpenStack } from '../helpers/openstack.js';

const run = promisify(execFile);
const skip = skipKernel || skipOvn || skipOpenStack;
if (skip && !skipKernel) process.stdout.write(`# SKIP Neutron e2e: ${skip}\n`);

describe('e2e: Neutron (ML2/OVN, real Keystone) drives the exposures', { skip, timeout: 600_000 }, () => {
  let lab: LabState;
  let ovn: OvnStack;
  let os: OpenStack;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let agent: AgentProcess;
  const ids: Record<string, string> = {};

  const installed = () => agent.ovnExposures();
  const routes = (): Promise<string[]> => upstreamRoutes(lab);
  const exposedAndAnnounced = async (prefix: string): Promise<boolean> =>
    (await installed()).get(prefix)?.installed === true && (await routes()).includes(prefix);
  const gone = async (prefix: string): Promise<boolean> => !(await installed()).has(prefix) && !(await routes()).includes(prefix);
  const ping = async (dst: string): Promise<string> =>
    (
      await run('ip', ['netns', 'exec', lab.upstream.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '1', '-I', lab.upstream.client4, dst], {
        timeout: 20_000,
      }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }))
    ).stdout;
  const redirected = (): Promise<number> => agent.redirected();

  before(async () => {
    lab = await labUp({ name: unique('neu', 20).toLowerCase(), vms: [] });
    pins = pinDir();
    work = mkdtempSync(join(tmpdir(), 'stackbpf-neutron-e2e-'));
    ovn = await OvnStack.start(lab.node.ns);
    // Neutron schedules router gateways only on chassis that offer to host them
    await ovn.vsctl(['set', 'Open_vSwitch', '.', 'external_ids:ovn-cms-options=enable-chassis-as-gw']);
    // Neutron 21 (Debian 12) reads a chassis' bridge mappings and CMS options from Chassis
    // external_ids, where OVN 23.03's ovn-controller no longer writes them (other_config):
    // copy them over, as a deployment of this pair must, or Neutron refuses to bind ports
    await ovn.sbctl(['set', 'Chassis', ovn.chassis, 'external_ids:ovn-bridge-mappings=physnet1:br-ex', 'external_ids:ovn-cms-options=enable-chassis-as-gw']);
    await run('ip', ['-n', lab.node.ns, 'addr', 'add', '198.51.100.1/25', 'dev', 'br-ex']);
    os = await OpenStack.start({ neutron: { nbConnection: ovn.sock('nb'), sbConnection: ovn.sock('sb') } });
    agent = new AgentProcess(join(work, 'api.sock'), work);
    await agent.start({
      ...labAgentConfig(lab, pins.dir),
      state_dir: join(work, 'state'),
      dataplane: { provider_interfaces: [lab.node.provider], return_interfaces: ['br-ex'] },
      ovn: { mode: 'sb', connection: ovn.sock('sb'), ovs_connection: ovn.sock('db') },
      exposures: [],
    });
    await until('the agent to sync with OVN', async () => (await agent.api('GET', '/v1/status')).json?.ovn?.ready === true, 30_000);
  });

  after(async () => {
    await agent?.stop();
    if (os) await os.stop();
    if (ovn) await ovn.stop();
    if (lab) await labDown(lab.name);
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
    if (process.env.STACKBPF_TEST_DEBUG) process.stderr.write(agent?.log ?? '');
  });

  test('a port created on a provider network and bound to this host is exposed, announced and reachable', async () => {
    const net = (
      await os.neutronApi('POST', '/networks', {
        network: { name: 'public', 'provider:network_type': 'flat', 'provider:physical_network': 'physnet1', 'router:external': true },
      })
    ).network;
    ids.net = net.id;
    const sub = (
      await os.neutronApi('POST', '/subnets', {
        subnet: {
          network_id: net.id,
          ip_version: 4,
          cidr: '198.51.100.0/25',
          gateway_ip: '198.51.100.1',
          enable_dhcp: false,
          allocation_pools: [{ start: '198.51.100.10', end: '198.51.100.60' }],
        },
      })
    ).subnet;
    ids.sub = sub.id;
    // a security group that lets the upstream clients ping (port security stays on: OVN then knows the MAC)
    const sg = (await os.neutronApi('POST', '/security-groups', { security_group: { name: 'allow-icmp' } })).security_group;
    ids.sg = sg.id;
    await os.neutronApi('POST', '/security-group-rules', {
      security_group_rule: { security_group_id: sg.id, direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remote_ip_prefix: '0.0.0.0/0' },
    });
    // Neutron binds only to a chassis whose agent it sees alive (it refuses "dead agents")
    await until(
      'Neutron to see this chassis alive',
      async () => ((await os.neutronApi('GET', `/agents?host=${ovn.hostname}`)).agents as { alive: boolean }[]).some((a) => a.alive),
      60_000,
      500,
    );
    const port = (
      await os.neutronApi('POST', '/ports', {
        port: {
          network_id: net.id,
          name: 'vm1',
          fixed_ips: [{ subnet_id: sub.id, ip_address: '198.51.100.20' }],
          'binding:host_id': ovn.hostname,
          security_groups: [sg.id],
        },
      })
    ).port;
    ids.port = port.id;
    // Neutron names the logical switch port after the port's id: plug a VM in with that iface-id
    await ovn.addVm(port.id, port.mac_address, '198.51.100.20/25', '198.51.100.1');
    await until('the port exposed and announced', () => exposedAndAnnounced('198.51.100.20/32'), 60_000);
    assert.equal((await installed()).get('198.51.100.20/32')?.mac, port.mac_address);
    const r0 = await redirected();
    assert.match(await ping('198.51.100.20'), /3 received/);
    assert.ok((await redirected()) - r0 >= 3, 'through the XDP path');
    const bound = (await os.neutronApi('GET', `/ports/${port.id}`)).port;
    assert.equal(bound['binding:host_id'], ovn.hostname);
    assert.notEqual(bound['binding:vif_type'], 'binding_failed', 'Neutron bound the port to this chassis');
  });

  test('floating IP associate → exposed and reachable through the router; disassociate → withdrawn', async () => {
    const tnet = (await os.neutronApi('POST', '/networks', { network: { name: 'private' } })).network;
    const tsub = (
      await os.neutronApi('POST', '/subnets', {
        subnet: { network_id: tnet.id, ip_version: 4, cidr: '198.51.100.128/25', gateway_ip: '198.51.100.129', enable_dhcp: false },
      })
    ).subnet;
    // the gateway's and the floating IP's addresses are asked for outside the allocation pool
    // (.10-.60): Neutron allocates from the pool at random for what it makes itself, and an
    // address asked for inside it was at times taken already (409 IpAddressAlreadyAllocated)
    const router = (
      await os.neutronApi('POST', '/routers', {
        router: { name: 'r1', external_gateway_info: { network_id: ids.net, external_fixed_ips: [{ subnet_id: ids.sub, ip_address: '198.51.100.61' }] } },
      })
    ).router;
    await os.neutronApi('PUT', `/routers/${router.id}/add_router_interface`, { subnet_id: tsub.id });
    const gwIp = router.external_gateway_info.external_fixed_ips[0].ip_address as string;
    assert.equal(gwIp, '198.51.100.61');
    await until('the router gateway exposed (cr-lrp)', () => exposedAndAnnounced(`${gwIp}/32`), 60_000);
    const vm2 = (
      await os.neutronApi('POST', '/ports', {
        port: {
          network_id: tnet.id,
          name: 'vm2',
          fixed_ips: [{ subnet_id: tsub.id, ip_address: '198.51.100.130' }],
          'binding:host_id': ovn.hostname,
          security_groups: [ids.sg],
        },
      })
    ).port;
    await ovn.addVm(vm2.id, vm2.mac_address, '198.51.100.130/25', '198.51.100.129');
    const fip = (
      await os.neutronApi('POST', '/floatingips', { floatingip: { floating_network_id: ids.net, floating_ip_address: '198.51.100.62', port_id: vm2.id } })
    ).floatingip;
    await until('the floating IP exposed and announced', () => exposedAndAnnounced('198.51.100.62/32'), 60_000);
    assert.ok(!(await installed()).has('198.51.100.130/32'), 'the tenant address itself is not exposed');
    assert.match(await ping('198.51.100.62'), /3 received/, 'the FIP reaches the tenant VM through the OVN router');
    await os.neutronApi('PUT', `/floatingips/${fip.id}`, { floatingip: { port_id: null } });
    await until('the floating IP withdrawn', () => gone('198.51.100.62/32'), 60_000);
    assert.ok(await exposedAndAnnounced(`${gwIp}/32`), 'the gateway stays exposed');
  });

  test('port delete → withdrawn', async () => {
    await os.neutronApi('DELETE', `/ports/${ids.port}`);
    await until('the port withdrawn', () => gone('198.51.100.20/32'), 60_000);
  });
});
