// End to end: the real agent process traces a real Keystone (Debian's
// package under uwsgi) running on a real MariaDB: HTTP API events with
// status, latency and the user; the SQL behind them; processes with their
// parents; files under sensitive paths; connections with byte counts; and
// not one byte of a password or token in the store, the log or the CLI.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/paths.js';
import { profileToYaml } from '../../src/analytics/profile.js';
import type { TraceEvent } from '../../src/trace/event.js';
import { DEFAULT_SENSITIVE_PATHS } from '../../src/trace/tracer.js';
import { AgentProcess, until } from '../helpers/agent.js';
import { pinDir, skipKernel, unique } from '../helpers/kernel.js';
import { OpenStack, skipMariadb } from '../helpers/openstack.js';

const run = promisify(execFile);
const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const skip = skipKernel || skipMariadb;
if (skip && !skipKernel) process.stdout.write(`# SKIP Keystone tracing e2e: ${skip}\n`);

/** an event as the API's JSON gives it: the test reads whatever field it asserts on */
type JsonEvent = Omit<TraceEvent, 'data'> & { data: Record<string, any> };

describe('e2e: the agent traces a real Keystone on MariaDB', { skip, timeout: 300_000 }, () => {
  let os: OpenStack;
  let work: string;
  let agent: AgentProcess;
  let pins: ReturnType<typeof pinDir>;
  let token = '';
  const service = unique('sbt-svc', 20).toLowerCase();
  const cliOut: string[] = [];

  const events = async (q: string): Promise<JsonEvent[]> => {
    const r = await agent.api('GET', `/v1/events?${q}`);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json as JsonEvent[];
  };
  const stackbpf = async (args: string[]): Promise<string> => {
    const { stdout } = await run(process.execPath, [cli, ...args, '--api', `unix:${agent.socket}`], { timeout: 20_000 });
    cliOut.push(stdout);
    return stdout;
  };
  const login = (password: string): Promise<Response> =>
    fetch(`${os.keystoneUrl}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'stackbpf-e2e' },
      body: JSON.stringify({
        auth: {
          identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password } } },
          scope: { project: { name: 'admin', domain: { name: 'Default' } } },
        },
      }),
    });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'stackbpf-trace-e2e-'));
    mkdirSync(join(work, 'secure'));
    writeFileSync(
      join(work, 'rules.yaml'),
      `rules:\n  - service: ${service}\n    cmdline: "${service}-marker"\n  - service: ${service}-drift\n    cmdline: "${service}-drift-marker"\n`,
    );
    os = await OpenStack.start({ db: 'mariadb' });
    pins = pinDir();
    agent = new AgentProcess(join(work, 'api.sock'), work);
    await agent.start({
      state_dir: join(work, 'state'),
      log_level: 'debug',
      trace: { enabled: true, sensitive_paths: [...DEFAULT_SENSITIVE_PATHS, `${join(work, 'secure')}/`], rules_file: join(work, 'rules.yaml') },
      storage: { enabled: true },
      analytics: { bruteforce: { per_source: 8, per_user: 50 } },
      pin_root: pins.dir,
      accounting: { enabled: true, services: true, libvirt_dir: join(work, 'no-libvirt') },
    });
  });

  after(async () => {
    await agent?.stop();
    pins?.remove();
    await os?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('Keystone is recognised under uwsgi, its database too', async () => {
    const st = (await agent.api('GET', '/v1/status')).json;
    assert.ok(st.trace.services.keystone >= 1, JSON.stringify(st.trace.services));
    assert.ok(st.trace.services.mariadb >= 1, JSON.stringify(st.trace.services));
    assert.equal(st.dataplane, 'off');
  });

  test('a failed and a successful POST /v3/auth/tokens: HTTP events of keystone with status, latency and user', async () => {
    const bad = await login(`${os.password}-wrong`);
    assert.equal(bad.status, 401);
    const good = await login(os.password);
    assert.equal(good.status, 201);
    token = good.headers.get('x-subject-token') ?? '';
    assert.ok(token.length > 20);
    const list = await fetch(`${os.keystoneUrl}/users`, { headers: { 'x-auth-token': token } });
    assert.equal(list.status, 200);
    let http: JsonEvent[] = [];
    await until(
      'three keystone HTTP events',
      async () =>
        (http = await events(`service=keystone&pid=${os.keystoneWorkerPid()}&type=http.request&limit=50`)).filter(
          (e) => e.data.user_agent === 'stackbpf-e2e' || e.data.path === '/v3/users',
        ).length >= 3,
    );
    const failed = http.find((e) => e.data.status === 401);
    const ok = http.find((e) => e.data.status === 201);
    const users = http.find((e) => e.data.path === '/v3/users');
    assert.ok(failed && ok && users, JSON.stringify(http.map((e) => e.data)));
    for (const e of [failed, ok, users]) {
      assert.equal(e.service, 'keystone');
      assert.equal(e.pid, os.keystoneWorkerPid(), 'the uwsgi worker that served it');
      assert.ok((e.data.latency_ms as number) > 0, 'latency measured');
      assert.ok((e.data.request_bytes as number) > 0 && (e.data.response_bytes as number) > 0);
      assert.equal(e.parent?.service, 'keystone', 'process tree: the uwsgi master');
    }
    assert.equal(failed.data.method, 'POST');
    assert.equal(failed.data.path, '/v3/auth/tokens');
    assert.equal(failed.data.auth_user, 'admin', "the failure's user name");
    assert.equal(failed.data.user, undefined, 'no identity was established');
    assert.equal(ok.data.user, 'admin');
    assert.equal(ok.data.project, 'admin');
    assert.equal(users.data.user, 'admin', "the caller's token maps to its owner");
    assert.equal(users.data.status, 200);
  });

  test('the SQL statements behind them, attributed to keystone, with latency', async () => {
    let sql: JsonEvent[] = [];
    await until('keystone SQL statements', async () =>
      (sql = await events(`service=keystone&pid=${os.keystoneWorkerPid()}&type=sql&limit=2000`)).some((e) =>
        /\bFROM `?user`?\b|\blocal_user\b/.test(String(e.data.statement)),
      ),
    );
    const userLookup = sql.find((e) => /\blocal_user\b/.test(String(e.data.statement)));
    assert.ok(userLookup, 'the user lookup of the logins');
    assert.equal(userLookup.service, 'keystone');
    assert.equal(userLookup.data.command, 'query');
    assert.equal(userLookup.data.server, `127.0.0.1:${os.mariadbPort}`);
    assert.equal(userLookup.data.result, 'rows');
    assert.ok((userLookup.data.latency_ms as number) >= 0);
  });

  test('connections: accepted API sockets close with their byte counts', async () => {
    let closes: JsonEvent[] = [];
    await until(
      'closed keystone connections',
      async () =>
        (closes = await events(`service=keystone&pid=${os.keystoneWorkerPid()}&type=net.close&limit=100`)).filter((e) => e.data.protocol === 'http').length >=
        3,
    );
    const c = closes.find((e) => e.data.protocol === 'http') as JsonEvent;
    assert.equal(c.data.role, 'server');
    assert.ok((c.data.bytes_in as number) > 100 && (c.data.bytes_out as number) > 100, JSON.stringify(c.data));
    const accepts = await events(`service=keystone&pid=${os.keystoneWorkerPid()}&type=net.accept&limit=100`);
    assert.ok(accepts.some((a) => String(a.data.local).endsWith(`:${os.keystonePort}`)));
  });

  test('a shell started by a monitored process appears with its parent, and its exit', async () => {
    const marker = `${service}-marker`;
    const py = spawn('/usr/bin/python3', ['-c', 'import os,sys,time; time.sleep(1.5); os.system("/bin/sh -c \'exit 3\'")', marker], { stdio: 'ignore' });
    const exited = new Promise((r) => py.once('exit', r));
    try {
      await exited;
      let execs: JsonEvent[] = [];
      await until('the shell exec', async () =>
        (execs = await events(`service=${service}&type=process.exec&limit=50`)).some(
          (e) => e.data.filename === '/bin/sh' && (e.data.argv as string[]).includes('exit 3'),
        ),
      );
      const sh = execs.find((e) => e.data.filename === '/bin/sh' && (e.data.argv as string[]).includes('exit 3')) as JsonEvent;
      // os.system runs `sh -c "/bin/sh -c 'exit 3'"`: the inner shell's parent is the outer shell, whose parent is python
      const chain = await events(`service=${service}&limit=200`);
      const forks = chain.filter((e) => e.type === 'process.fork');
      assert.ok(
        forks.some((f) => f.pid === py.pid),
        'python forked',
      );
      assert.equal(sh.service, service);
      assert.ok(sh.ppid > 0 && sh.parent?.pid === sh.ppid);
      const ancestors = new Set([py.pid, ...chain.filter((e) => e.type === 'process.exec').map((e) => e.pid)]);
      assert.ok(ancestors.has(sh.ppid), `parent ${sh.ppid} is python or the shell it started`);
      const exits = chain.filter((e) => e.type === 'process.exit' && e.pid === sh.pid);
      assert.equal(exits[0]?.data.exit_code, 3);
    } finally {
      if (py.exitCode === null) py.kill('SIGKILL');
    }
  });

  test('writes, renames and unlinks under a sensitive path are seen whoever makes them', async () => {
    const dir = join(work, 'secure');
    await run('/bin/sh', ['-c', `echo x > ${dir}/a.conf && mv ${dir}/a.conf ${dir}/b.conf && rm ${dir}/b.conf && cat /etc/hostname > /dev/null`]);
    let files: JsonEvent[] = [];
    await until('the file events', async () => (files = await events(`type=file&path=${encodeURIComponent(dir)}&limit=50`)).length >= 3);
    const types = files.map((e) => e.type).sort();
    assert.deepEqual(types, ['file.rename', 'file.unlink', 'file.write']);
    const w = files.find((e) => e.type === 'file.write') as JsonEvent;
    assert.equal(w.data.path, `${dir}/a.conf`);
    assert.equal(w.data.sensitive, true);
    assert.match(String(w.data.flags), /O_WRONLY\|O_CREAT\|O_TRUNC/);
    assert.equal(w.service, '', 'an unmonitored shell');
    assert.equal(files.find((e) => e.type === 'file.rename')?.data.new_path, `${dir}/b.conf`);
    assert.ok(!files.some((e) => String(e.data.path).includes('/etc/hostname')), 'reads by unmonitored processes are not traced');
  });

  test('stackbpf trace and status: live stream, stored events, counters', async () => {
    const live = run(process.execPath, [cli, 'trace', '--api', `unix:${agent.socket}`, '--service', 'keystone', '--type', 'http', '--json', '--count', '1'], {
      timeout: 20_000,
    });
    await new Promise((r) => setTimeout(r, 500));
    await login(`${os.password}-again-wrong`);
    const { stdout } = await live;
    cliOut.push(stdout);
    const ev = JSON.parse(stdout.trim()) as JsonEvent;
    assert.equal(ev.type, 'http.request');
    assert.equal(ev.data.status, 401);
    const table = await stackbpf(['trace', '--since', '10m', '--service', 'keystone', '--type', 'http']);
    assert.match(table, /keystone\s+\d+ http\.request\s+POST \/v3\/auth\/tokens 401 .*auth_user=admin/);
    cliOut.push(await stackbpf(['trace', '--since', '10m', '--json', '--limit', '5000']));
    const status = await stackbpf(['status']);
    assert.match(status, /tracing\s+\d+ programs attached, \d+ processes monitored: .*keystone/);
    assert.match(status, /lost\s+nothing/);
    assert.match(status, /storage\s+\d+ events/);
    cliOut.push(await stackbpf(['status', '--json']));
    const { stdout: metrics } = await run('curl', ['-sf', '--unix-socket', agent.socket, 'http://agent/metrics']);
    assert.match(metrics, /^stackbpf_trace_events_total\{type="http.request"\} [1-9]/m);
    assert.match(metrics, /^stackbpf_trace_lost_total\{stage="ring"\} 0$/m);
    assert.match(metrics, /^stackbpf_pipeline_dropped_total\{consumer="store"\} 0$/m);
  });

  test('brute force: repeated failed logins from one source raise an alert with its evidence, stored and shown by the CLI', async () => {
    const follow = run(process.execPath, [cli, 'alerts', '--api', `unix:${agent.socket}`, '--follow', '--json', '--rule', 'keystone.bruteforce.source'], {
      timeout: 60_000,
    }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 8; i++) assert.equal((await login(`${os.password}-guess-${i}`)).status, 401);
    let active: any[] = [];
    await until('the brute-force alert', async () =>
      (active = (await agent.api('GET', '/v1/alerts?active=1')).json).some((a: any) => a.rule === 'keystone.bruteforce.source'),
    );
    const a = active.find((x: any) => x.rule === 'keystone.bruteforce.source');
    assert.equal(a.subject, '127.0.0.1');
    assert.equal(a.service, 'keystone');
    assert.equal(a.severity, 'high');
    assert.ok(a.details.failures >= 8);
    assert.ok(a.evidence.some((e: any) => /POST \/v3\/auth\/tokens 401 auth_user=admin/.test(e.summary)));
    const stored = (await agent.api('GET', '/v1/alerts?rule=keystone.bruteforce')).json;
    assert.ok(stored.some((x: any) => x.id === a.id));
    const table = await stackbpf(['alerts', '--active']);
    assert.match(table, /firing\s+high\s+keystone\.bruteforce\.source\s+keystone\s+\d+ failed Keystone authentications from 127\.0\.0\.1/);
    const st = await stackbpf(['status']);
    assert.match(st, /analytics\s+[1-9]\d* alerts firing/);
    // the follower saw it raised (stop it: it streams until interrupted)
    await run('pkill', ['-INT', '-f', `alerts --api unix:${agent.socket} --follow`]).catch(() => undefined);
    const { stdout } = await follow;
    cliOut.push(stdout);
    assert.ok(
      stdout.split('\n').some((l) => l.includes('"change":"raised"') && l.includes('keystone.bruteforce.source')),
      stdout.slice(0, 500),
    );
  });

  test('SQL injection: a payload in a query string raises an alert; Keystone bound it as data, so no statement carries it', async () => {
    const payload = "admin' OR '1'='1";
    const res = await fetch(`${os.keystoneUrl}/users?name=${encodeURIComponent(payload)}`, { headers: { 'x-auth-token': token } });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { users: unknown[] }).users, [], 'Keystone found no such user');
    let active: any[] = [];
    await until('the injection alert', async () => (active = (await agent.api('GET', '/v1/alerts?active=1')).json).some((a: any) => a.rule === 'sqli.request'));
    const a = active.find((x: any) => x.rule === 'sqli.request');
    assert.equal(a.service, 'keystone');
    assert.equal(a.subject, '127.0.0.1');
    assert.equal(a.mitre, 'T1190');
    assert.deepEqual(
      a.details.values.map((v: any) => [v.where, v.value]),
      [['query:name', payload]],
    );
    assert.ok(a.details.values[0].findings.includes('tautology'));
    // the statements behind the request went through the bus before it (the request completes after them):
    // Keystone sent the payload as an escaped literal, so none of them carries injection structure
    assert.ok(!active.some((x: any) => x.rule === 'sqli.statement'), 'no statement with injection structure (benign traffic raised nothing)');
  });

  test('profiles: learned from stored events, then a shell and a read of /etc/shadow by the service are drift alerts', async () => {
    const drift = `${service}-drift`;
    const marker = `${drift}-marker`;
    const py = (code: string): Promise<unknown> => run('/usr/bin/python3', ['-c', `import os,sys,time; time.sleep(1.0); ${code}`, marker], { timeout: 20_000 });
    const t0 = Date.now();
    await py("open('/etc/hostname').read()");
    await until('the baseline in the store', async () => (await events(`service=${drift}&type=file.open&limit=5`)).length > 0);
    await new Promise((r) => setTimeout(r, 300));
    const learned = await stackbpf(['profile', 'learn', '--since', `${Math.ceil((Date.now() - t0) / 1000) + 2}s`, '--service', drift]);
    assert.match(learned, new RegExp(`${drift}\\s+monitor\\s+from \\d+ events: exec [1-9]`));
    const yaml = await stackbpf(['profile', 'show', drift]);
    assert.match(yaml, /mode: monitor/);
    assert.match(yaml, /- \/usr\/bin\/python3/);
    assert.match(yaml, /- \/etc\/hostname/);
    // the same program again is no deviation; then it starts a shell that reads /etc/shadow
    await py("open('/etc/hostname').read()");
    await py("os.system('/bin/cat /etc/shadow > /dev/null')");
    let active: any[] = [];
    await until('drift alerts', async () => {
      active = (await agent.api('GET', '/v1/alerts?active=1')).json.filter((a: any) => a.service === drift);
      return active.some((a) => a.rule === 'drift.exec') && active.some((a) => a.rule === 'drift.files_read' && a.details.value === '/etc/shadow');
    });
    const execs = active
      .filter((a) => a.rule === 'drift.exec')
      .map((a) => a.details.value)
      .sort();
    assert.deepEqual(execs, ['/bin/cat', '/bin/sh'].filter((x) => execs.includes(x)).sort());
    assert.ok(execs.includes('/bin/sh'), JSON.stringify(execs));
    assert.ok(!active.some((a) => a.details.value === '/etc/hostname' || a.details.value === '/usr/bin/python3'), 'what the profile lists raised nothing');
    assert.equal(active.find((a) => a.details.value === '/etc/shadow').severity, 'high');
    // the CLI diff lists the deviations and says so in its exit status
    const diff = await run(process.execPath, [cli, 'profile', 'diff', drift, '--since', '1m', '--api', `unix:${agent.socket}`]).then(
      () => ({ code: 0, stdout: '' }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    cliOut.push(diff.stdout);
    assert.equal(diff.code, 3);
    assert.match(diff.stdout, /exec\s+x1\s+\/bin\/sh/);
  });

  test('enforce: an executable outside the profile is killed by the kernel at exec, and that is recorded; lifting it lets it run', async () => {
    const drift = `${service}-drift`;
    const marker = `${drift}-marker`;
    const proof = join(work, 'shell-ran');
    const profile = (await agent.api('GET', `/v1/profiles/${drift}`)).json;
    assert.ok(!profile.exec.includes('/bin/sh'));
    const file = join(work, 'state', 'profiles', `${drift}.yaml`);
    writeFileSync(file, profileToYaml({ ...profile, mode: 'enforce' }));
    assert.match(await stackbpf(['profile', 'apply']), new RegExp(`in force: .*${drift}`));
    assert.deepEqual((await agent.api('GET', '/v1/status')).json.analytics.enforcedInKernel, [drift]);
    const py = async (code: string): Promise<string> =>
      (await run('/usr/bin/python3', ['-c', `import os,sys,time; time.sleep(1.0); ${code}`, marker], { timeout: 20_000 })).stdout;
    const status = await py(`print(os.system('/bin/sh -c "echo ran > ${proof}"'))`);
    assert.equal(Number(status.trim()) & 0x7f, 9, 'the shell died of SIGKILL');
    assert.ok(!existsSync(proof), 'the shell never ran a single instruction of its own');
    let kills: JsonEvent[] = [];
    await until('the response event', async () => (kills = await events(`service=${drift}&type=response.kill&limit=10`)).length > 0);
    assert.equal(kills[0]?.data.filename, '/bin/sh');
    assert.match(String(kills[0]?.data.reason), /not in the exec list of the enforce-mode profile/);
    await until('the drift alert says what was done', async () =>
      ((await agent.api('GET', '/v1/alerts?active=1')).json as any[]).some(
        (a) => a.rule === 'drift.exec' && a.service === drift && /killed by the kernel/.test(a.details.response ?? ''),
      ),
    );
    // back to monitor: the same shell runs
    writeFileSync(file, profileToYaml({ ...profile, mode: 'monitor' }));
    await stackbpf(['profile', 'apply']);
    assert.deepEqual((await agent.api('GET', '/v1/status')).json.analytics.enforcedInKernel, []);
    await py(`os.system('/bin/sh -c "echo ran > ${proof}"')`);
    assert.ok(existsSync(proof));
  });

  test('enforce: an open under files_deny and a connect to a peer outside the profile are killed by the kernel; what the profile allows is not', async () => {
    const drift = `${service}-drift`;
    const marker = `${drift}-marker`;
    const listen = async (): Promise<[Server, number]> => {
      // a killed client resets its connection: that is expected here
      const srv = createServer((c) => {
        c.on('error', () => undefined);
        c.end('hello\n');
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      return [srv, (srv.address() as { port: number }).port];
    };
    const [allowedSrv, allowed] = await listen();
    const [forbiddenSrv, forbidden] = await listen();
    const profile = (await agent.api('GET', `/v1/profiles/${drift}`)).json;
    const file = join(work, 'state', 'profiles', `${drift}.yaml`);
    try {
      writeFileSync(
        file,
        profileToYaml({
          ...profile,
          mode: 'enforce',
          peers: [...profile.peers, `127.0.0.1:${allowed}`],
          enforce: { exec: false, peers: true, files_deny: ['/etc/shadow', '/root/.ssh/'] },
        }),
      );
      assert.match(await stackbpf(['profile', 'apply']), new RegExp(`in force: .*${drift}`));
      const st = (await agent.api('GET', '/v1/status')).json.analytics;
      assert.deepEqual(st.enforcement[drift], { files_deny: 2, peers: profile.peers.filter((p: string) => !p.startsWith('unix:')).length + 1 });
      assert.equal(typeof st.lsmDeny.available, 'boolean');
      /** exit status of a stand-in run: its stdout, or the signal that ended it */
      const py = (code: string): Promise<{ out: string; signal?: string }> =>
        run('/usr/bin/python3', ['-c', `import os,socket,sys,time; time.sleep(1.0); ${code}`, marker], { timeout: 20_000 }).then(
          (r) => ({ out: r.stdout }),
          (e: { stdout?: string; signal?: string }) => ({ out: e.stdout ?? '', signal: e.signal ?? 'none' }),
        );
      // allowed: a peer in the profile, a file not under a denied prefix
      assert.deepEqual(await py(`print(socket.create_connection(('127.0.0.1', ${allowed})).recv(5).decode()); print(open('/etc/hostname').read() != '')`), {
        out: 'hello\nTrue\n',
      });
      // forbidden: killed before the result reaches the process
      const shadow = await py("print('opened', open('/etc/shadow').fileno(), flush=True)");
      assert.equal(shadow.signal, 'SIGKILL');
      assert.ok(!shadow.out.includes('opened'), 'the process never saw the descriptor');
      const peer = await py(`s = socket.create_connection(('127.0.0.1', ${forbidden})); print('connected', flush=True)`);
      assert.equal(peer.signal, 'SIGKILL');
      assert.ok(!peer.out.includes('connected'));
      let kills: JsonEvent[] = [];
      await until(
        'the response events',
        async () =>
          (kills = await events(`service=${drift}&type=response.kill&limit=20`)).filter(
            (k) => k.data.path === '/etc/shadow' || k.data.remote === `127.0.0.1:${forbidden}`,
          ).length === 2,
      );
      assert.match(String(kills.find((k) => k.data.path === '/etc/shadow')?.data.reason), /under a deny_files prefix of the enforce-mode profile/);
      assert.match(String(kills.find((k) => k.data.remote === `127.0.0.1:${forbidden}`)?.data.reason), /not among the peers of the enforce-mode profile/);
      const opens = await events(`service=${drift}&type=file.open&path=/etc/shadow&limit=5`);
      assert.equal(opens[0]?.data.killed, true);
      await until('the drift alert says what was done', async () =>
        ((await agent.api('GET', '/v1/alerts?active=1')).json as any[]).some(
          (a) =>
            a.rule === 'drift.peers' &&
            a.service === drift &&
            a.details.value === `127.0.0.1:${forbidden}` &&
            /killed by the kernel at connect/.test(a.details.response ?? ''),
        ),
      );
      // a rule the kernel cannot hold is refused with the value named, and what was in force stays
      writeFileSync(file, profileToYaml({ ...profile, mode: 'enforce', peers: ['10.0.0.0/8:5672'], enforce: { exec: false, peers: true } }));
      await stackbpf(['profile', 'apply']).catch(() => undefined);
      const refused = (await agent.api('GET', '/v1/status')).json.analytics;
      assert.match(refused.enforcementErrors.join('\n'), /10\.0\.0\.0\/8:5672.*a network with one port is not a prefix/);
      assert.deepEqual(Object.keys(refused.enforcement[drift] ?? {}).sort(), ['files_deny', 'peers']);
    } finally {
      writeFileSync(file, profileToYaml({ ...profile, mode: 'monitor' }));
      await stackbpf(['profile', 'apply']).catch(() => undefined);
      allowedSrv.close();
      forbiddenSrv.close();
    }
    assert.deepEqual((await agent.api('GET', '/v1/status')).json.analytics.enforcement, {});
    const again = await run('/usr/bin/python3', ['-c', "import time; time.sleep(1.0); print(len(open('/etc/shadow').read()) > 0)", marker], {
      timeout: 20_000,
    });
    assert.equal(again.stdout, 'True\n', 'lifted: the same open works');
  });

  test("each project's cost of Keystone: its requests, the worker's CPU and the SQL they ran (accounting)", async () => {
    const t = await login(os.password);
    const tok = t.headers.get('x-subject-token') ?? '';
    const project = ((await t.json()) as { token: { project: { id: string } } }).token.project.id;
    const N = 15;
    for (let i = 0; i < N; i++) {
      const r = await fetch(`${os.keystoneUrl}/users`, { headers: { 'x-auth-token': tok } });
      assert.equal(r.status, 200);
    }
    type Row = { resource_id: string; meter: string; volume: number };
    const rows = async (q: string) => (await agent.api('GET', `/v1/usage?since=${Date.now() - 600_000}&${q}`)).json as Row[];
    const cost = async () =>
      Object.fromEntries((await rows(`project=${project}`)).filter((r) => r.resource_id === `${project}:keystone`).map((r) => [r.meter, r.volume]));
    await until('the requests attributed to the project', async () => ((await cost())['api.requests'] ?? 0) >= N + 1, 20_000);
    const c = await cost();
    // the SQL the tracer saw from Keystone's worker in the window: what was attributed cannot exceed it
    const sql = (await events(`service=keystone&pid=${os.keystoneWorkerPid()}&type=sql.query&limit=10000`)).length;
    assert.ok(c['api.sql.statements']! >= N, `every GET /v3/users runs SQL: ${c['api.sql.statements']} statements`);
    assert.ok(c['api.sql.statements']! <= sql, `${c['api.sql.statements']} attributed of ${sql} statements seen`);
    assert.ok(c['api.sql.time']! > 0);
    // the worker's CPU while serving: more than nothing, less than the whole service used
    const svc = Object.fromEntries((await rows('service=keystone')).filter((r) => r.resource_id.endsWith('-keystone')).map((r) => [r.meter, r.volume]));
    assert.ok(c['api.cpu']! > 0 && c['api.cpu']! < svc.cpu!, `api.cpu ${c['api.cpu']} of the service's ${svc.cpu}`);
    // failed authentications are nobody's project
    const anon = (await rows('service=keystone')).filter((r) => r.resource_id === 'unauthenticated:keystone' && r.meter === 'api.requests');
    assert.ok((anon[0]?.volume ?? 0) >= 1, 'the failed login of an earlier test');
  });

  test('redaction: the admin password, the database password and the issued token appear in no stored byte, log line or CLI output', async () => {
    assert.ok(token, 'a token was issued');
    await agent.api('GET', '/v1/status'); // the store has flushed what the tests saw
    await new Promise((r) => setTimeout(r, 500));
    const secrets = { password: os.password, dbPassword: os.dbPassword, token, tokenHead: token.slice(0, 24) };
    const state = join(work, 'state');
    const files = (readdirSync(state, { recursive: true }) as string[]).filter((f) => statSync(join(state, f)).isFile());
    assert.ok(
      files.some((f) => f.startsWith('profiles/')),
      'profiles are checked too',
    );
    const stored = files.map((f) => readFileSync(join(state, f)));
    assert.ok(
      stored.some((b) => b.includes('/v3/auth/tokens')),
      'the store holds the HTTP events (the check is not vacuous)',
    );
    const places: [string, Buffer][] = [
      ...files.map((f, i): [string, Buffer] => [`state/${f}`, stored[i] as Buffer]),
      ['agent log', Buffer.from(agent.log)],
      ['CLI output', Buffer.from(cliOut.join('\n'))],
    ];
    assert.ok(agent.log.length > 0 && cliOut.join('').length > 0);
    for (const [where, bytes] of places) {
      for (const [name, value] of Object.entries(secrets)) assert.ok(!bytes.includes(value), `${name} found in ${where}`);
    }
  });
});
