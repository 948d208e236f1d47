// End to end on the lab: the real agent process, real FRR on both sides of
// an eBGP session, real traffic (ping, iperf3) from the upstream namespace
// to VM namespaces through the XDP fast path and back through the TC return
// path, with IP forwarding off on the node's provider NIC.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { labAgentConfig } from '../../src/cli/lab-cmd.js';
import { labDown, labUp, type LabState, upstreamRoutes } from '../../src/lab/lab.js';
import { packageRoot } from '../../src/paths.js';
import { until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';

const run = promisify(execFile);
const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const missingTools = ['/usr/lib/frr/frrinit.sh', '/usr/bin/iperf3', '/usr/sbin/ethtool'].filter((p) => !existsSync(p));
const skip = skipKernel || (missingTools.length > 0 && `needs ${missingTools.join(', ')} (scripts/deps.sh test installs them)`);
if (skip && !skipKernel) process.stdout.write(`# SKIP e2e: ${skip}\n`);

describe('e2e: exposures through the fast path, announced by FRR', { skip }, () => {
  let lab: LabState;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let configFile: string;
  let socket: string;
  let agent: ChildProcess | undefined;
  let config: Record<string, unknown>;
  let agentLog = '';

  const api = (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> =>
    new Promise((resolve, reject) => {
      const req = request({ socketPath: socket, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });

  const startAgent = async (): Promise<void> => {
    agent = spawn(process.execPath, [cli, 'agent', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    agent.stderr?.on('data', (c) => (agentLog += c));
    await until('the agent API to answer', async () => (await api('GET', '/v1/status')).status === 200);
  };
  const killAgent = async (signal: NodeJS.Signals): Promise<void> => {
    const a = agent;
    if (!a || a.exitCode !== null || a.signalCode !== null) return;
    const exited = new Promise((r) => a.once('exit', r));
    a.kill(signal);
    await exited;
  };
  const upExec = (cmd: string, args: string[], timeout = 20_000) => run('ip', ['netns', 'exec', lab.upstream.ns, cmd, ...args], { timeout });
  const ping = async (dst: string, count = 3, interval = '0.2'): Promise<string> => {
    const v6 = dst.includes(':');
    const r = await upExec('ping', [
      ...(v6 ? ['-6'] : []),
      '-c',
      String(count),
      '-i',
      interval,
      '-W',
      '1',
      '-I',
      v6 ? lab.upstream.client6 : lab.upstream.client4,
      dst,
    ]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    return r.stdout;
  };
  const redirected = async (): Promise<number> => Number((await api('GET', '/v1/status')).json.verdicts.redirect.packets);
  const returned = async (): Promise<number> => {
    const v = (await api('GET', '/v1/status')).json.returnVerdicts;
    return Number(v.redirect.packets) + Number(v.neigh.packets);
  };
  const routes = (): Promise<string[]> => upstreamRoutes(lab);

  before(async () => {
    lab = await labUp({ name: unique('e2e', 20).toLowerCase(), vms: [0, 100] });
    pins = pinDir();
    work = mkdtempSync(join(tmpdir(), 'stackbpf-e2e-'));
    socket = join(work, 'api.sock');
    configFile = join(work, 'agent.yaml');
    config = { ...labAgentConfig(lab, pins.dir), state_dir: join(work, 'state'), api: { listen: `unix:${socket}` } };
    writeFileSync(configFile, stringify(config));
    await startAgent();
    await until('the upstream to learn the VM routes', async () => (await routes()).length === 4, 20_000);
  });

  after(async () => {
    await killAgent('SIGKILL');
    if (lab) await labDown(lab.name);
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('exposed: the peer learns the routes; ping, TCP and UDP reach the VM and come back on the fast path', async () => {
    assert.deepEqual(await routes(), ['198.51.100.10/32', '198.51.100.11/32', '2001:db8:1::10/128', '2001:db8:1::11/128']);
    const [r0, b0] = [await redirected(), await returned()];
    assert.match(await ping('198.51.100.10'), /3 received/);
    assert.ok((await redirected()) - r0 >= 3, 'XDP redirected the echo requests');
    assert.ok((await returned()) - b0 >= 3, 'the TC return path sent the replies');
    const listed = (await api('GET', '/v1/exposures')).json as { key: string; installed: boolean; packets: string; source: string }[];
    const vm0 = listed.find((e) => e.key === '198.51.100.10/32');
    assert.equal(vm0?.installed, true);
    assert.equal(vm0?.source, 'config');
    assert.ok(Number(vm0?.packets) >= 3, 'per-exposure counters count the forwarded packets');

    const vm = lab.vms[0]!;
    for (const udp of [false, true]) {
      const server = spawn('ip', ['netns', 'exec', vm.ns, 'iperf3', '-s', '-1', '-p', '5201', '-B', vm.ipv4], { stdio: 'ignore' });
      try {
        await new Promise((r) => setTimeout(r, 300));
        const { stdout } = await upExec('iperf3', [
          '-c',
          vm.ipv4,
          '-B',
          lab.upstream.client4,
          '-p',
          '5201',
          '-t',
          '1',
          '-J',
          ...(udp ? ['-u', '-b', '20M'] : []),
        ]);
        const res = JSON.parse(stdout);
        if (udp) {
          assert.ok(res.end.sum.packets > 100, 'UDP packets sent');
          assert.equal(res.end.sum.lost_packets, 0, 'no UDP datagram lost');
        } else {
          assert.ok(res.end.sum_received.bytes > 1_000_000, `TCP moved ${res.end.sum_received.bytes} bytes`);
        }
      } finally {
        server.kill('SIGKILL');
      }
    }
  });

  test('a VLAN-tagged provider network and IPv6 work end to end', async () => {
    assert.match(await ping('198.51.100.11'), /3 received/, 'VLAN 100, IPv4');
    assert.match(await ping('2001:db8:1::11'), /3 received/, 'VLAN 100, IPv6');
    assert.match(await ping('2001:db8:1::10'), /3 received/, 'untagged, IPv6');
  });

  test('unexposed: withdrawn at the peer, traffic stops; exposed again: back', async () => {
    const without = { ...config, exposures: (config.exposures as { prefix: string }[]).filter((e) => e.prefix !== '198.51.100.10') };
    writeFileSync(configFile, stringify(without));
    agent?.kill('SIGHUP');
    await until('the route to be withdrawn at the peer', async () => !(await routes()).includes('198.51.100.10/32'));
    assert.match(await ping('198.51.100.10', 2), /0 received|100% packet loss/);
    writeFileSync(configFile, stringify(config));
    agent?.kill('SIGHUP');
    await until('the route to come back', async () => (await routes()).includes('198.51.100.10/32'));
    assert.match(await ping('198.51.100.10'), /3 received/);
  });

  test('the agent killed with SIGKILL and restarted while traffic flows: zero packets lost', async () => {
    const flow = ping('198.51.100.10', 300, '0.01');
    await new Promise((r) => setTimeout(r, 700));
    await killAgent('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await startAgent();
    const out = await flow;
    assert.match(out, /300 packets transmitted, 300 received, 0% packet loss/, out.split('\n').slice(-3).join('\n'));
    assert.match(agentLog, /"readopted":true/, 'the restarted agent re-adopted the pinned programs');
  });

  test('FRR restarted: the routes are announced again without operator action', async () => {
    await run('ip', ['netns', 'exec', lab.node.ns, '/usr/lib/frr/frrinit.sh', 'restart', lab.node.frr], { timeout: 30_000 });
    await until('the routes to be re-announced', async () => (await routes()).length === 4, 30_000);
    // FRR's RIB has the routes a moment before the peer's kernel does
    await until('the route in the peer kernel', async () => (await upExec('ip', ['route', 'show', '198.51.100.11'])).stdout.trim() !== '', 10_000);
    assert.match(await ping('198.51.100.11'), /3 received/);
  });

  test('the local API adds and removes exposures, and refuses bad ones naming the field', async () => {
    const vm = lab.vms[0]!;
    const bad = await api('POST', '/v1/exposures', { prefix: '198.51.100.10', target: vm.tap, mac: vm.mac, owner: 'someone-else' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /198.51.100.10\/32 is claimed by both "lab-vm0" and "someone-else"/);
    const worse = await api('POST', '/v1/exposures', { prefix: '198.51.100.20', target: vm.tap, mac: 'zz', owner: 'x' });
    assert.equal(worse.status, 400);
    assert.match(worse.json.error, /mac: "zz" is not a MAC address/);
    const ok = await api('POST', '/v1/exposures', { prefix: '198.51.100.20', target: vm.tap, mac: vm.mac, owner: 'api-test' });
    assert.equal(ok.status, 201);
    await until('the API exposure to be announced', async () => (await routes()).includes('198.51.100.20/32'));
    assert.equal((await api('DELETE', '/v1/exposures?prefix=198.51.100.20')).status, 204);
    await until('the API exposure to be withdrawn', async () => !(await routes()).includes('198.51.100.20/32'));
  });
});
