// The agent's own attack surface, tried as a local unprivileged user would:
// `nobody` (setpriv, with and without a group the operator grants) against a
// real agent process, on the default kind of listener (a unix socket) and on
// a configured TCP listener (bearer tokens only).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { packageRoot } from '../../src/paths.js';
import { killPid, until } from '../helpers/agent.js';

const run = promisify(execFile);
const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const skip = process.getuid?.() !== 0 ? 'needs root (to start the agent and become nobody)' : false;

/** curl as `nobody`, optionally with a supplementary group; the HTTP status, or 0 when it could not connect. */
async function asNobody(args: string[], group?: number): Promise<{ status: number; body: string }> {
  const priv = ['--reuid=nobody', '--regid=nogroup', group === undefined ? '--clear-groups' : `--groups=${group}`, '--'];
  const r = await run('setpriv', [...priv, 'curl', '-s', '-o', '-', '-w', '\\n%{http_code}', '--max-time', '5', ...args]).catch((e: { stdout?: string }) => ({
    stdout: e.stdout ?? '\n0',
  }));
  const lines = r.stdout.split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe('e2e: the API refuses an unprivileged local user', { skip, timeout: 120_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'sbt-access-'));
  const group = `sbt${randomBytes(3).toString('hex')}`;
  let gid = 0;
  const agents: ChildProcess[] = [];
  const start = async (config: Record<string, unknown>, name: string, ready: () => Promise<boolean>): Promise<ChildProcess> => {
    const file = join(work, `${name}.yaml`);
    writeFileSync(file, stringify({ state_dir: join(work, `state-${name}`), trace: { enabled: false }, accounting: { enabled: false }, ...config }));
    const child = spawn(process.execPath, [cli, 'agent', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr?.on('data', (c) => (log += c));
    agents.push(child);
    await until(`the agent (${name}) to listen: ${log}`, ready);
    return child;
  };

  before(async () => {
    // the work directory is searchable by everyone: what keeps nobody out must be the agent's own doing
    chmodSync(work, 0o755);
    await run('groupadd', ['--system', group]);
    gid = Number((await run('getent', ['group', group])).stdout.split(':')[2]);
  });
  after(async () => {
    for (const a of agents) if (a.pid) await killPid(a.pid);
    await run('groupdel', [group]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  test('unix socket (the default kind): nobody cannot connect; a member of the granted group may read, not change; root may change', async () => {
    const sock = join(work, 'run', 'api.sock');
    await start({ api: { listen: `unix:${sock}`, group } }, 'unix', async () =>
      (await run('curl', ['-sf', '--unix-socket', sock, 'http://agent/v1/status'])).stdout.includes('"modules"'),
    );
    const u = (path: string, extra: string[] = []) => ['--unix-socket', sock, ...extra, `http://agent${path}`];
    const post = ['-X', 'POST', '-H', 'content-type: application/json', '-d', '{"prefix":"203.0.113.1/32","reason":"x"}'];
    // nobody, no group: the socket's directory and mode keep it out before any request is read
    assert.equal((await asNobody(u('/v1/status'))).status, 0);
    assert.equal((await asNobody(u('/v1/events'))).status, 0);
    assert.equal((await asNobody(u('/v1/blocks', post))).status, 0);
    // nobody in the granted group: status and events, no change
    assert.equal((await asNobody(u('/v1/status'), gid)).status, 200);
    assert.equal((await asNobody(u('/v1/events?limit=1'), gid)).status, 200);
    const refused = await asNobody(u('/v1/blocks', post), gid);
    assert.deepEqual(refused, { status: 403, body: '{"error":"forbidden"}' });
    assert.equal((await asNobody(u('/v1/profiles/learn', ['-X', 'POST', '-H', 'content-type: application/json', '-d', '{}']), gid)).status, 403);
    // root: past the access check (the data plane is off here, so the block itself is a 409)
    const root = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', ...u('/v1/blocks', post)]);
    assert.equal(root.stdout, '409');
    // the refusal was counted; the root's request recorded with who made it
    const st = JSON.parse((await run('curl', ['-sf', ...u('/v1/status')])).stdout);
    assert.ok(st.api.refused.scope >= 2, JSON.stringify(st.api));
    await until('the change to be stored', async () => {
      const ev = JSON.parse((await run('curl', ['-sf', ...u('/v1/events?type=api.change')])).stdout) as {
        data: { path: string; caller: { via: string; uid: number } };
      }[];
      return ev.some((e) => e.data.path === '/v1/blocks' && e.data.caller.via === 'unix' && e.data.caller.uid === 0);
    });
  });

  test('a socket directory another user could write to is refused at start, the directory named', async () => {
    const dir = join(work, 'open');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const file = join(work, 'open.yaml');
    writeFileSync(
      file,
      stringify({
        state_dir: join(work, 'state-open'),
        trace: { enabled: false },
        accounting: { enabled: false },
        api: { listen: `unix:${join(dir, 'api.sock')}` },
      }),
    );
    const r = await run(process.execPath, [cli, 'agent', '--config', file]).catch((e: { stderr: string }) => e);
    assert.match((r as { stderr: string }).stderr, new RegExp(`${dir}: the API socket's directory must be owned by root and writable by root alone`));
  });

  test('TCP: nothing anonymous, a token grants its scopes, a stranger Host is refused; a tokens file others can read is refused at start', async () => {
    const port = await freePort();
    const admin = randomBytes(24).toString('hex');
    const reader = randomBytes(24).toString('hex');
    const tokens = join(work, 'tokens.yaml');
    const sha = (t: string) => createHash('sha256').update(t).digest('hex');
    writeFileSync(
      tokens,
      stringify({
        tokens: [
          { name: 'ops', scopes: ['status', 'read', 'admin'], sha256: sha(admin) },
          { name: 'viewer', scopes: ['status', 'read'], sha256: sha(reader) },
        ],
      }),
      { mode: 0o644 },
    );
    const config = { api: { listen: `127.0.0.1:${port}`, tokens_file: tokens } };
    // readable by others: refused, the file named
    const file = join(work, 'tcp-bad.yaml');
    writeFileSync(file, stringify({ state_dir: join(work, 'state-bad'), trace: { enabled: false }, accounting: { enabled: false }, ...config }));
    const bad = await run(process.execPath, [cli, 'agent', '--config', file]).catch((e: { stderr: string; code: number }) => e);
    assert.match((bad as { stderr: string }).stderr, new RegExp(`${tokens}: the API tokens file must not be readable or writable by group or others`));
    chmodSync(tokens, 0o600);
    const base = `http://127.0.0.1:${port}`;
    await start(config, 'tcp', async () => (await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `${base}/v1/status`])).stdout === '401');
    const post = ['-X', 'POST', '-H', 'content-type: application/json', '-d', '{"prefix":"203.0.113.1/32"}', `${base}/v1/blocks`];
    assert.equal((await asNobody([`${base}/v1/status`])).status, 401);
    assert.equal((await asNobody([`${base}/v1/events`])).status, 401);
    assert.equal((await asNobody(post)).status, 401);
    assert.equal((await asNobody(['-H', 'authorization: Bearer not-the-token-at-all-123', `${base}/v1/events`])).status, 401);
    assert.equal((await asNobody(['-H', `authorization: Bearer ${reader}`, `${base}/v1/events?limit=1`])).status, 200);
    assert.equal((await asNobody(['-H', `authorization: Bearer ${reader}`, ...post])).status, 403);
    assert.equal((await asNobody(['-H', `authorization: Bearer ${admin}`, ...post])).status, 409, 'admin passes (no data plane here)');
    // DNS rebinding: a page on attacker.example resolved to 127.0.0.1 sends its own Host
    assert.equal((await asNobody(['-H', `authorization: Bearer ${admin}`, '-H', `host: attacker.example:${port}`, `${base}/v1/status`])).status, 403);
    // a cross-site form POST (a simple request, no preflight) with the token would still be refused
    assert.equal(
      (
        await asNobody([
          '-H',
          `authorization: Bearer ${admin}`,
          '-H',
          'content-type: application/x-www-form-urlencoded',
          '-d',
          'prefix=203.0.113.1',
          `${base}/v1/blocks`,
        ])
      ).status,
      415,
    );
  });
});
