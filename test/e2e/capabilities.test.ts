// Least privilege: the agent runs with exactly the capabilities
// docs/security.md lists for its enabled modules (root's uid, every other
// capability dropped from the bounding set), and does its work.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { labAgentConfig } from '../../src/cli/lab-cmd.js';
import { labDown, labUp, type LabState, upstreamRoutes } from '../../src/lab/lab.js';
import { packageRoot } from '../../src/paths.js';
import { killPid, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';

const run = promisify(execFile);
const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const skip = skipKernel || (!existsSync('/usr/lib/frr/frrinit.sh') && 'needs FRR (scripts/deps.sh test installs it)');

/** The capabilities of docs/security.md, per module. */
export const MODULE_CAPABILITIES = {
  tracing: ['bpf', 'perfmon', 'sys_ptrace'],
  exposure: ['bpf', 'net_admin'],
  exposureInNetns: ['sys_admin'],
  exposureWithFrr: ['dac_override'],
  apiGroup: ['chown'],
  accounting: ['bpf', 'perfmon', 'net_admin', 'sys_ptrace'],
  accountingInNetns: ['sys_admin'],
} as const;

function api(socket: string, path: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(t));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('e2e: the agent with only the capabilities its modules need', { skip, timeout: 120_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'sbt-caps-'));
  const children: ChildProcess[] = [];
  let lab: LabState | undefined;
  let pins: ReturnType<typeof pinDir> | undefined;
  const start = (config: Record<string, unknown>, name: string, caps: readonly string[]): { socket: string; log: () => string } => {
    const socket = join(work, `${name}.sock`);
    const file = join(work, `${name}.yaml`);
    writeFileSync(file, stringify({ state_dir: join(work, `state-${name}`), ...config, api: { listen: `unix:${socket}` } }));
    const bounding = ['-all', ...caps.map((c) => `+${c}`)].join(',');
    const child = spawn('setpriv', [`--bounding-set=${bounding}`, '--inh-caps=-all', process.execPath, cli, 'agent', '--config', file], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr?.on('data', (c) => (log += c));
    children.push(child);
    return { socket, log: () => log };
  };
  after(async () => {
    for (const c of children) if (c.pid) await killPid(c.pid);
    if (lab) await labDown(lab.name);
    pins?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  test('tracing: CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE (and CAP_CHOWN for the API group) — a service running as another user is traced', async () => {
    const marker = `sbt-caps-${process.pid}`;
    writeFileSync(join(work, 'rules.yaml'), `rules:\n  - service: caps-probe\n    cmdline: "${marker}"\n`);
    const a = start({ trace: { rules_file: join(work, 'rules.yaml') }, accounting: { enabled: false } }, 'trace', [
      ...MODULE_CAPABILITIES.tracing,
      ...MODULE_CAPABILITIES.apiGroup,
    ]);
    await until(`the agent to answer: ${a.log()}`, async () => (await api(a.socket, '/v1/status')).modules.tracing === 'on');
    // a "service" of another user: its executable and descriptors are read through /proc (CAP_SYS_PTRACE)
    const probe = spawn(
      'setpriv',
      [
        '--reuid=nobody',
        '--regid=nogroup',
        '--clear-groups',
        'bash',
        '-c',
        `exec -a "probe ${marker}" bash -c 'for i in 1 2 3 4 5 6 7 8 9 10; do cat /etc/hostname >/dev/null; sleep 0.3; done'`,
      ],
      { stdio: 'ignore' },
    );
    children.push(probe);
    await until('the probe to be traced', async () => {
      const events = (await api(a.socket, '/v1/events?service=caps-probe&type=file.open&limit=50')) as { data: { path: string } }[];
      return events.some((e) => e.data.path === '/etc/hostname');
    });
    const st = await api(a.socket, '/v1/status');
    assert.equal(st.trace.lost.ring, 0);
  });

  test('the data plane in a namespace with FRR: CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN (the namespace), CAP_DAC_OVERRIDE (FRR) — forwards and announces', async () => {
    lab = await labUp({ name: unique('caps', 20).toLowerCase(), vms: [0] });
    pins = pinDir();
    const caps = [
      ...MODULE_CAPABILITIES.exposure,
      ...MODULE_CAPABILITIES.exposureInNetns,
      ...MODULE_CAPABILITIES.exposureWithFrr,
      ...MODULE_CAPABILITIES.apiGroup,
    ];
    const a = start({ ...labAgentConfig(lab, pins.dir), trace: { enabled: false }, accounting: { enabled: false } }, 'dp', caps);
    const l = lab;
    await until(`the upstream to learn the VM's routes: ${a.log()}`, async () => (await upstreamRoutes(l)).includes('198.51.100.10/32'), 30_000);
    const ping = await run('ip', ['netns', 'exec', l.upstream.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '1', '-I', l.upstream.client4, '198.51.100.10']);
    assert.match(ping.stdout, / 3 received/);
    const st = await api(a.socket, '/v1/status');
    assert.ok(Number(st.verdicts.redirect.packets) >= 3, 'through XDP');
  });

  test('accounting: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_ADMIN (taps in a namespace) — a tap is counted', async () => {
    const ns = unique('sbcap', 15);
    await run('ip', ['netns', 'add', ns]);
    const p = pinDir();
    try {
      await run('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'tapcaps0-00', 'mode', 'tap']);
      const a = start(
        {
          pin_root: p.dir,
          trace: { enabled: false },
          storage: { enabled: false },
          accounting: { tap_namespaces: [ns], orphan_seconds: 1, libvirt_dir: join(work, 'no-libvirt'), services: false },
        },
        'acct',
        [...MODULE_CAPABILITIES.accounting, ...MODULE_CAPABILITIES.accountingInNetns],
      );
      // a tap no domain claims is counted from the moment it appears (TC attached in its namespace), then reported
      await until(`the tap to be counted and reported: ${a.log()}`, async () => {
        const st = await api(a.socket, '/v1/status').catch(() => undefined);
        return !!st?.accounting?.orphanTaps?.some((t: string) => t.startsWith('tapcaps0-00'));
      });
      const st = await api(a.socket, '/v1/status');
      assert.equal(st.modules.accounting, 'on');
    } finally {
      p.remove();
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  });
});
