// End to end: brute force against a real Keystone reached through the lab's
// provider NIC is detected from the kernel's view of the API, and the
// attacker is dropped at XDP (opt-in response) until the block expires.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { labAgentConfig } from '../../src/cli/lab-cmd.js';
import { labDown, labUp, type LabState } from '../../src/lab/lab.js';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';
import { OpenStack, skipKeystone } from '../helpers/openstack.js';

const run = promisify(execFile);
const skip = skipKernel || skipKeystone;
if (skip && !skipKernel) process.stdout.write(`# SKIP response e2e: ${skip}\n`);

describe('e2e: brute force against Keystone is blocked at XDP', { skip, timeout: 300_000 }, () => {
  let lab: LabState;
  let pins: ReturnType<typeof pinDir>;
  let work: string;
  let os: OpenStack;
  let agent: AgentProcess;
  const BLOCK_SECONDS = 6;

  /** One login attempt from the lab's upstream router; the HTTP status, or 0 when nothing answered. */
  const attempt = async (password: string): Promise<number> => {
    const body = JSON.stringify({
      auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password } } } },
    });
    const { stdout } = await run('ip', [
      'netns',
      'exec',
      lab.upstream.ns,
      'curl',
      '-s',
      '-m',
      '2',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      'content-type: application/json',
      '-d',
      body,
      `http://${lab.node.ipv4}:${os.keystonePort}/v3/auth/tokens`,
    ]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '0' }));
    return Number(stdout.trim() || 0);
  };

  before(async () => {
    lab = await labUp({ name: unique('rsp', 20).toLowerCase(), vms: [] });
    pins = pinDir();
    work = mkdtempSync(join(tmpdir(), 'stackbpf-response-e2e-'));
    os = await OpenStack.start({ netns: lab.node.ns });
    agent = new AgentProcess(join(work, 'api.sock'), work);
    const { bgp: _bgp, ...base } = labAgentConfig(lab, pins.dir) as Record<string, unknown> & { bgp: unknown };
    await agent.start({
      ...base,
      state_dir: join(work, 'state'),
      exposures: [],
      trace: { enabled: true },
      storage: { enabled: true },
      analytics: { bruteforce: { per_source: 5, block_seconds: BLOCK_SECONDS } },
    });
  });

  after(async () => {
    await agent?.stop();
    await os?.stop();
    if (lab) await labDown(lab.name).catch(() => undefined);
    pins?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('five failures from the upstream router: alert, block at XDP with counters, expiry', async () => {
    assert.equal(await attempt(`${os.password}-x`), 401, 'Keystone answers through the provider NIC');
    for (let i = 0; i < 4; i++) assert.equal(await attempt(`${os.password}-${i}`), 401);
    let alert: any;
    await until('the brute-force alert and its response', async () => {
      alert = ((await agent.api('GET', '/v1/alerts?active=1')).json as any[]).find((a) => a.rule === 'keystone.bruteforce.source');
      return /blocked at XDP/.test(alert?.details?.response ?? '');
    });
    assert.equal(alert.subject, lab.upstream.ipv4);
    const blocks = (await agent.api('GET', '/v1/blocks')).json as { prefix: string; reason: string; packets: string; expires: string | null }[];
    assert.equal(blocks.length, 1);
    assert.equal(blocks[0]?.prefix, `${lab.upstream.ipv4}/32`);
    assert.match(blocks[0]?.reason ?? '', /keystone\.bruteforce\.source/);
    assert.ok(blocks[0]?.expires);
    // the attacker gets nothing back now; the drops are counted
    assert.equal(await attempt(`${os.password}-5`), 0);
    const after1 = (await agent.api('GET', '/v1/blocks')).json as { packets: string }[];
    assert.ok(Number(after1[0]?.packets) > 0, 'dropped packets are counted');
    const responses = (await agent.api('GET', '/v1/events?type=response.block&limit=5')).json as { data: { prefix: string } }[];
    assert.equal(responses[0]?.data.prefix, `${lab.upstream.ipv4}/32`, 'the response is itself an event');
    // the block expires by itself
    await until('the block to expire', async () => ((await agent.api('GET', '/v1/blocks')).json as unknown[]).length === 0, (BLOCK_SECONDS + 5) * 1000);
    assert.equal(await attempt(`${os.password}-6`), 401);
  });
});
