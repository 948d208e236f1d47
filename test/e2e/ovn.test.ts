// End to end with real OVN: ovsdb-server, ovs-vswitchd (userspace datapath),
// ovn-northd and ovn-controller run inside the lab's node namespace; the real
// agent learns what to expose from the NB (then the SB) database, programs
// the XDP/TC path and announces through FRR to the lab's upstream peer, and
// real traffic from upstream reaches VM namespaces plugged into br-int.
// Scenarios are driven with ovn-nbctl, as Neutron's ML2/OVN driver writes them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { labAgentConfig } from '../../src/cli/lab-cmd.js';
import { labDown, labUp, type LabState, upstreamRoutes } from '../../src/lab/lab.js';
import { packageRoot } from '../../src/paths.js';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';
import { OvnStack, skipOvn } from '../helpers/ovn.js';

const run = promisify(execFile);
const skip = skipKernel || skipOvn;
if (skip && !skipKernel) process.stdout.write(`# SKIP OVN e2e: ${skip}\n`);

const VM1 = { port: 'vm1-port', mac: 'fa:16:3e:00:00:10', ip: '198.51.100.10' };
const VM2 = { port: 'vm2-port', mac: 'fa:16:3e:00:00:20', ip: '198.51.100.130' };
const GW = { lrp: 'lrp-gw', mac: 'fa:16:3e:00:00:01', ip: '198.51.100.2' };
const FIP = '198.51.100.50';

describe('e2e: OVN drives the exposures (NB and SB modes)', { skip }, () => {
  let lab: LabState;
  let ovn: OvnStack;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let agent: AgentProcess;

  const startAgent = (mode: 'nb' | 'sb'): Promise<void> =>
    agent.start(
      {
        ...labAgentConfig(lab, pins.dir),
        state_dir: join(work, 'state'),
        log_level: 'debug',
        dataplane: { provider_interfaces: [lab.node.provider], return_interfaces: ['br-ex'] },
        ovn: { mode, connection: ovn.sock(mode), ovs_connection: ovn.sock('db') },
        exposures: [],
      },
      `agent-${mode}`,
    );
  const installed = () => agent.ovnExposures();
  const routes = (): Promise<string[]> => upstreamRoutes(lab);
  const exposedAndAnnounced = async (prefix: string): Promise<boolean> =>
    (await installed()).get(prefix)?.installed === true && (await routes()).includes(prefix);
  const gone = async (prefix: string): Promise<boolean> => !(await installed()).has(prefix) && !(await routes()).includes(prefix);
  const ping = async (dst: string): Promise<string> => {
    const r = await run('ip', ['netns', 'exec', lab.upstream.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '1', '-I', lab.upstream.client4, dst], {
      timeout: 20_000,
    }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    return r.stdout;
  };
  const redirected = (): Promise<number> => agent.redirected();
  const status = async (): Promise<any> => (await agent.api('GET', '/v1/status')).json;

  before(async () => {
    lab = await labUp({ name: unique('ovn', 20).toLowerCase(), vms: [] });
    pins = pinDir();
    work = mkdtempSync(join(tmpdir(), 'stackbpf-ovn-e2e-'));
    agent = new AgentProcess(join(work, 'api.sock'), work);
    ovn = await OvnStack.start(lab.node.ns);
    // the provider network's gateway, as a physical router would be: the node's side of br-ex
    await run('ip', ['-n', lab.node.ns, 'addr', 'add', '198.51.100.1/25', 'dev', 'br-ex']);
    // a provider network (as Neutron names it) with its localnet port
    await ovn.nbctl([
      'ls-add',
      'neutron-pub',
      '--',
      'lsp-add',
      'neutron-pub',
      'provnet-pub',
      '--',
      'lsp-set-type',
      'provnet-pub',
      'localnet',
      '--',
      'lsp-set-addresses',
      'provnet-pub',
      'unknown',
      '--',
      'lsp-set-options',
      'provnet-pub',
      'network_name=physnet1',
    ]);
    // a VM port bound to this host, as Neutron's binding does
    await ovn.nbctl([
      'lsp-add',
      'neutron-pub',
      VM1.port,
      '--',
      'lsp-set-addresses',
      VM1.port,
      `${VM1.mac} ${VM1.ip}`,
      '--',
      'lsp-set-options',
      VM1.port,
      `requested-chassis=${ovn.hostname}`,
    ]);
    await ovn.addVm(VM1.port, VM1.mac, `${VM1.ip}/25`, '198.51.100.1');
    await until('ovn-controller to bind the VM port', async () => (await ovn.nbctl(['get', 'Logical_Switch_Port', VM1.port, 'up'])).trim() === 'true');
  });

  after(async () => {
    await agent?.stop();
    if (ovn) await ovn.stop();
    if (lab) await labDown(lab.name);
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
    if (process.env.STACKBPF_TEST_DEBUG) process.stderr.write(agent?.log ?? '');
  });

  test('NB: a VM port on a provider network bound here is exposed, announced, and reached on the fast path', async () => {
    await startAgent('nb');
    await until('vm1 exposed and announced', () => exposedAndAnnounced(`${VM1.ip}/32`));
    const e = (await installed()).get(`${VM1.ip}/32`);
    assert.equal(e?.mac, VM1.mac);
    assert.equal(e?.target, 'br-ex');
    const r0 = await redirected();
    assert.match(await ping(VM1.ip), /3 received/);
    assert.ok((await redirected()) - r0 >= 3, 'the echo requests took the XDP path');
    const st = await status();
    // what an operator sees
    const { stdout } = await run(process.execPath, [join(packageRoot, 'dist', 'src', 'cli', 'main.js'), 'status', '--api', `unix:${agent.socket}`]);
    assert.match(stdout, /^ovn {9}NB mode, ready, 1 exposures, chassis /m);
    assert.match(stdout, /^ {2}database {2}monitoring unix:\S+nb\.sock \(monitor_cond_since\)/m);
    assert.equal(st.ovn.ready, true);
    assert.deepEqual(st.ovn.chassis, [ovn.chassis, ovn.hostname]);
    assert.deepEqual(st.ovn.bridgeMappings, { physnet1: 'br-ex' });
  });

  test('NB: router gateway and floating IP associate → exposed and reachable; disassociate → withdrawn', async () => {
    await ovn.nbctl([
      'lr-add',
      'router1',
      '--',
      'lrp-add',
      'router1',
      GW.lrp,
      GW.mac,
      `${GW.ip}/25`,
      '--',
      'lrp-set-gateway-chassis',
      GW.lrp,
      ovn.chassis,
      '10',
    ]);
    await ovn.nbctl([
      'lsp-add',
      'neutron-pub',
      'gw-port',
      '--',
      'lsp-set-type',
      'gw-port',
      'router',
      '--',
      'lsp-set-addresses',
      'gw-port',
      'router',
      '--',
      'lsp-set-options',
      'gw-port',
      `router-port=${GW.lrp}`,
      'nat-addresses=router',
    ]);
    await ovn.nbctl([
      'ls-add',
      'neutron-tenant',
      '--',
      'lrp-add',
      'router1',
      'lrp-tenant',
      'fa:16:3e:00:00:02',
      '198.51.100.129/25',
      '--',
      'lsp-add',
      'neutron-tenant',
      'tenant-rp',
      '--',
      'lsp-set-type',
      'tenant-rp',
      'router',
      '--',
      'lsp-set-addresses',
      'tenant-rp',
      'router',
      '--',
      'lsp-set-options',
      'tenant-rp',
      'router-port=lrp-tenant',
    ]);
    await ovn.nbctl([
      'lsp-add',
      'neutron-tenant',
      VM2.port,
      '--',
      'lsp-set-addresses',
      VM2.port,
      `${VM2.mac} ${VM2.ip}`,
      '--',
      'lsp-set-options',
      VM2.port,
      `requested-chassis=${ovn.hostname}`,
    ]);
    await ovn.nbctl(['lr-route-add', 'router1', '0.0.0.0/0', '198.51.100.1']);
    await ovn.addVm(VM2.port, VM2.mac, `${VM2.ip}/25`, '198.51.100.129');
    await until('the router gateway exposed', () => exposedAndAnnounced(`${GW.ip}/32`));
    assert.equal((await installed()).get(`${GW.ip}/32`)?.owner, `cr-lrp:${GW.lrp}`);
    assert.ok(!(await installed()).has(`${VM2.ip}/32`), 'a tenant VM is not exposed by itself');

    await ovn.nbctl(['lr-nat-add', 'router1', 'dnat_and_snat', FIP, VM2.ip]);
    await until('the floating IP exposed and announced', () => exposedAndAnnounced(`${FIP}/32`));
    assert.equal((await installed()).get(`${FIP}/32`)?.mac, GW.mac, 'a centralized FIP goes to the gateway port');
    const r0 = await redirected();
    assert.match(await ping(FIP), /3 received/, 'the FIP reaches the tenant VM through the OVN router');
    assert.ok((await redirected()) - r0 >= 3);

    await ovn.nbctl(['lr-nat-del', 'router1', 'dnat_and_snat', FIP]);
    await until('the floating IP withdrawn', () => gone(`${FIP}/32`));
    assert.ok(await exposedAndAnnounced(`${GW.ip}/32`), 'the gateway stays');
  });

  test('NB: a port moved to another chassis is withdrawn here, and comes back when it returns', async () => {
    await ovn.nbctl(['lsp-set-options', VM1.port, 'requested-chassis=elsewhere-host']);
    await until('vm1 withdrawn', () => gone(`${VM1.ip}/32`));
    await ovn.nbctl(['lsp-set-options', VM1.port, `requested-chassis=${ovn.hostname}`]);
    await until('vm1 back', () => exposedAndAnnounced(`${VM1.ip}/32`));
  });

  test('NB: the OVSDB server restarting withdraws nothing; changes made after it are applied', async () => {
    const before = [...(await installed()).keys()].sort();
    const routesBefore = await routes();
    await ovn.kill('nb');
    await until('the agent to notice', async () => (await status()).ovn.ovn.state !== 'monitoring');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual([...(await installed()).keys()].sort(), before, 'nothing removed while the database is down');
    assert.deepEqual(await routes(), routesBefore, 'nothing withdrawn while the database is down');
    await ovn.restartDb('nb');
    await until('resynced', async () => (await status()).ovn.ovn.state === 'monitoring');
    await ovn.nbctl(['lr-nat-add', 'router1', 'dnat_and_snat', FIP, VM2.ip]);
    await until('a change after the restart is applied', () => exposedAndAnnounced(`${FIP}/32`));
    assert.deepEqual([...(await installed()).keys()].filter((k) => k !== `${FIP}/32`).sort(), before);
  });

  test('NB: a port bound before its bridge exists waits, and is exposed as soon as the bridge appears', async () => {
    const LATE = { port: 'late-port', mac: 'fa:16:3e:00:00:30', ip: '198.51.100.30' };
    await ovn.vsctl(['set', 'Open_vSwitch', '.', 'external_ids:ovn-bridge-mappings=physnet1:br-ex,physnet2:br-late']);
    await ovn.nbctl([
      'ls-add',
      'neutron-late',
      '--',
      'lsp-add',
      'neutron-late',
      'provnet-late',
      '--',
      'lsp-set-type',
      'provnet-late',
      'localnet',
      '--',
      'lsp-set-addresses',
      'provnet-late',
      'unknown',
      '--',
      'lsp-set-options',
      'provnet-late',
      'network_name=physnet2',
    ]);
    await ovn.nbctl([
      'lsp-add',
      'neutron-late',
      LATE.port,
      '--',
      'lsp-set-addresses',
      LATE.port,
      `${LATE.mac} ${LATE.ip}`,
      '--',
      'lsp-set-options',
      LATE.port,
      `requested-chassis=${ovn.hostname}`,
    ]);
    await ovn.addVm(LATE.port, LATE.mac, `${LATE.ip}/25`, '198.51.100.1');
    await until('the port to wait for its bridge', async () =>
      ((await status()).ovn.pending as { owner: string; why: string }[]).some((p) => p.owner === `lsp:${LATE.port}` && /br-late is not there yet/.test(p.why)),
    );
    assert.ok(!(await installed()).has(`${LATE.ip}/32`), 'not exposed while its bridge is missing');
    await ovn.vsctl(['add-br', 'br-late', '--', 'set', 'Bridge', 'br-late', 'datapath_type=netdev']);
    await run('ip', ['-n', lab.node.ns, 'link', 'set', 'br-late', 'up']);
    await until('exposed once the bridge is there', () => exposedAndAnnounced(`${LATE.ip}/32`));
    assert.equal((await installed()).get(`${LATE.ip}/32`)?.target, 'br-late');
    await ovn.nbctl(['lsp-del', LATE.port]);
    await until('withdrawn again', () => gone(`${LATE.ip}/32`));
  });

  test('NB: port delete → withdrawn', async () => {
    await ovn.nbctl(['lsp-del', VM1.port]);
    await until('vm1 withdrawn', () => gone(`${VM1.ip}/32`));
    await agent.stop();
  });

  test('SB: the same cases from the southbound database (bindings, chassisredirect, nat_addresses)', async () => {
    await ovn.nbctl([
      'lsp-add',
      'neutron-pub',
      VM1.port,
      '--',
      'lsp-set-addresses',
      VM1.port,
      `${VM1.mac} ${VM1.ip}`,
      '--',
      'lsp-set-options',
      VM1.port,
      `requested-chassis=${ovn.hostname}`,
    ]);
    await startAgent('sb');
    await until(
      'vm1, the gateway and the FIP exposed from the SB',
      async () => (await exposedAndAnnounced(`${VM1.ip}/32`)) && (await exposedAndAnnounced(`${GW.ip}/32`)) && (await exposedAndAnnounced(`${FIP}/32`)),
    );
    const now = await installed();
    assert.equal(now.get(`${FIP}/32`)?.mac, GW.mac);
    assert.equal(now.get(`${VM1.ip}/32`)?.mac, VM1.mac);
    assert.match(await ping(VM1.ip), /3 received/);
    assert.match(await ping(FIP), /3 received/);
    assert.equal((await status()).ovn.mode, 'sb');
    // only what this node needs is replicated: no VM port bound elsewhere
    await ovn.nbctl(['lsp-add', 'neutron-pub', 'far-port', '--', 'lsp-set-addresses', 'far-port', 'fa:16:3e:00:00:99 198.51.100.99']);
    await ovn.nbctl(['lr-nat-del', 'router1', 'dnat_and_snat', FIP]);
    await until('FIP withdrawn (SB)', () => gone(`${FIP}/32`));
    // unplugging the VM releases the binding: withdrawn here
    await ovn.vsctl(['del-port', 'br-int', ovn.vms[0]!.hostIf]);
    await until('vm1 withdrawn after its binding went away', () => gone(`${VM1.ip}/32`));
    assert.ok(await exposedAndAnnounced(`${GW.ip}/32`));
  });
});
