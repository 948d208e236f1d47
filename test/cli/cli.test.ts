import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { packageRoot } from '../../src/paths.js';
import { formatStatus } from '../../src/cli/status-cmd.js';
import { skipKernel } from '../helpers/kernel.js';

const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('stackbpf command line', () => {
  test('--help lists the commands; every command has --help', () => {
    const r = run('--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /Usage: stackbpf <command>/);
    const commands = [...r.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1] as string).filter((c) => !c.startsWith('-'));
    assert.ok(commands.includes('doctor'));
    for (const c of commands) {
      const h = run(c, '--help');
      assert.equal(h.status, 0, `${c} --help`);
      assert.match(h.stdout, new RegExp(`Usage: stackbpf ${c}`));
    }
  });

  test('status without a running agent says where it looked and exits 1', () => {
    const r = run('status', '--api', 'unix:/nonexistent/stackbpf-api.sock');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot reach the agent at unix:\/nonexistent\/stackbpf-api\.sock: .*is `stackbpf agent` running/);
  });

  test('an unknown command or option is a usage error (exit 2)', () => {
    const r = run('frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
    const o = run('doctor', '--bogus');
    assert.equal(o.status, 2);
    assert.match(o.stderr, /Unknown option '--bogus'/);
  });

  test('doctor --json reports what the kernel allows', { skip: skipKernel }, () => {
    const r = run('doctor', '--json');
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { report: { hooks: Record<string, { supported: boolean }> }; blockers: string[]; works: string[] };
    assert.deepEqual(report.blockers, []);
    assert.equal(report.report.hooks.xdp?.supported, true);
    assert.ok(report.works.includes('tracepoint'));
  });

  test('doctor prints one verdict line', { skip: skipKernel }, () => {
    const r = run('doctor');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^will work: .*xdp.*; will not: /m);
    assert.match(r.stdout, /stackbpf can run here\./);
  });
});

describe('status text', () => {
  test('each greenlet library: its switches followed, or why not', () => {
    const trace = {
      attached: ['uprobe x'],
      greenlet: [
        { path: '/usr/lib/python3/dist-packages/greenlet/_greenlet.cpython-311-x86_64-linux-gnu.so' },
        { path: '/opt/venv/lib/python3.12/site-packages/greenlet/_greenlet.cpython-312-x86_64-linux-gnu.so', error: 'symbol not found' },
      ],
      monitoredProcesses: 2,
      services: { 'neutron-server': 2 },
      events: {},
      eventsPerSecond: 0,
      lost: {},
      sessions: { open: 0 },
    };
    const text = formatStatus({ trace } as unknown as Parameters<typeof formatStatus>[0]);
    assert.match(text, /greenlet {2}\/usr\/lib\/python3\/dist-packages\/greenlet\/_greenlet\.cpython-311-x86_64-linux-gnu\.so: switches followed/);
    assert.match(text, /_greenlet\.cpython-312-x86_64-linux-gnu\.so: NOT FOLLOWED \(symbol not found\)/);
  });
});
