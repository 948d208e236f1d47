// npm run bench -- robustness [--requests N] [--records N] [--files N] [--updates N] [--seed S]
//
// Malformed and hostile input at every door of a running agent, while its
// data plane forwards a ping from the lab's upstream router to a VM:
// - the API (the real agent process, on its unix socket, as root so every
//   route is reached): random and truncated JSON, wrong types, huge bodies,
//   deep nesting, path traversal in names, unknown routes and methods, and
//   many slow connections holding the socket;
// - the configuration and profile files: mutations of valid ones, parsed
//   the way the agent parses them;
// - the OVSDB peer: an OVN database that answers with mutated updates,
//   garbage bytes and oversized messages, to the agent's own OVSDB client;
// - kernel records: random and mutated ring records through the decoder.
// Counts every input; `crashes` (the agent exited, or a parser threw what it
// must not), `unclean_errors` (a 5xx, a stack trace, or an exception other
// than the parser's own error where a clear 4xx / error was due), the agent's
// peak RSS, and the ping's loss through the run.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { parse as parseYaml, stringify } from 'yaml';
import { ProfileError, profileFromYaml } from '../src/analytics/profile.js';
import { labAgentConfig } from '../src/cli/lab-cmd.js';
import { ConfigError, parseConfig } from '../src/config.js';
import { labDown, labUp, upstreamRoutes } from '../src/lab/lab.js';
import { createLogger } from '../src/log.js';
import { JsonStreamSplitter } from '../src/ovn/jsonrpc.js';
import { OvsdbClient } from '../src/ovn/ovsdb.js';
import { packageRoot } from '../src/paths.js';
import { decodeRecord, RecordError } from '../src/trace/records.js';
import { TRACE_CONN, TRACE_DATA, TRACE_EXEC, TRACE_HDR } from '../src/trace/abi.generated.js';
import { NB_SCHEMA } from '../test/helpers/ovsdb.js';
import { rng } from '../test/helpers/dpfuzz.js';
import { memKb } from './trace-throughput.js';
import { pinDir, skipKernel, unique } from '../test/helpers/kernel.js';

const run = promisify(execFile);
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const cli = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

interface Tally {
  inputs: number;
  crashes: number;
  unclean: number;
  examples: string[];
}
const tally = (): Tally => ({ inputs: 0, crashes: 0, unclean: 0, examples: [] });
const note = (t: Tally, what: string): void => {
  t.unclean++;
  if (t.examples.length < 5) t.examples.push(what.slice(0, 300));
};

// ---------- generators ----------
const NASTY = [
  '',
  ' ',
  '\u0000',
  '../../../../etc/passwd',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  "'; DROP TABLE x;--",
  '\u202e',
  '😀',
  'a'.repeat(5000),
  '-1',
  '1e309',
  'NaN',
  'null',
  '{}',
  '[]',
  'true',
];

function randomValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 8));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return [0, -1, 1.5, 2 ** 53, -(2 ** 63), Number.MAX_VALUE, 65536, 4294967296][Math.floor(r() * 8)];
    case 3:
      return NASTY[Math.floor(r() * NASTY.length)];
    case 4:
      return Math.random().toString(36).slice(2);
    case 5:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      // defineProperty: a key named __proto__ stays an own key, so it is sent as JSON text
      for (const key of [
        'prefix',
        'target',
        'mac',
        'owner',
        'vlan',
        'reason',
        'seconds',
        'since',
        'until',
        'services',
        'mode',
        'x',
        '__proto__',
        'constructor',
      ])
        if (r() < 0.3) Object.defineProperty(o, key, { value: randomValue(r, depth + 1), enumerable: true, writable: true, configurable: true });
      return o;
    }
  }
}

const ROUTES: [string, string][] = [
  ['GET', '/v1/status'],
  ['GET', '/metrics'],
  ['GET', '/v1/events'],
  ['GET', '/v1/alerts'],
  ['GET', '/v1/profiles'],
  ['GET', '/v1/profiles/keystone'],
  ['GET', '/v1/profiles/keystone/diff'],
  ['POST', '/v1/profiles/learn'],
  ['POST', '/v1/profiles/reload'],
  ['GET', '/v1/exposures'],
  ['POST', '/v1/exposures'],
  ['DELETE', '/v1/exposures'],
  ['GET', '/v1/blocks'],
  ['POST', '/v1/blocks'],
  ['DELETE', '/v1/blocks'],
  ['PUT', '/v1/blocks'],
  ['PATCH', '/v1/status'],
  ['GET', '/v1/../../etc/passwd'],
  ['GET', '/v1/profiles/..%2F..%2Fetc%2Fshadow'],
  ['GET', '/v1/profiles/%00'],
  ['GET', '/nope'],
];
const QUERY_KEYS = ['since', 'until', 'limit', 'pid', 'service', 'type', 'path', 'prefix', 'state', 'rule', 'active', 'format'];

function randomRequest(r: () => number): { method: string; path: string; body?: Buffer; contentType: string } {
  const [method, base] = ROUTES[Math.floor(r() * ROUTES.length)] as [string, string];
  const text = (v: unknown): string => (v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v ?? ''));
  const q = QUERY_KEYS.filter(() => r() < 0.2).map((k) => `${k}=${encodeURIComponent(text(randomValue(r)))}`);
  const path = `${base}${q.length ? `?${q.join('&')}` : ''}`;
  if (method === 'GET' || method === 'DELETE') return { method, path, contentType: 'application/json' };
  const kind = r();
  let body: Buffer;
  if (kind < 0.5) body = Buffer.from(JSON.stringify(randomValue(r)));
  else if (kind < 0.7) {
    const full = JSON.stringify(randomValue(r));
    body = Buffer.from(full.slice(0, Math.floor(r() * full.length)));
  } else if (kind < 0.8) body = Buffer.from(`${'['.repeat(20_000)}${']'.repeat(20_000)}`);
  else if (kind < 0.85) body = Buffer.alloc(200_000, 0x61);
  else if (kind < 0.95) body = Buffer.from(Array.from({ length: 200 }, () => Math.floor(r() * 256)));
  else body = Buffer.from(JSON.stringify({ prefix: '203.0.113.77/32', reason: 'robustness', seconds: 1 }));
  return { method, path, body, contentType: r() < 0.9 ? 'application/json' : 'text/plain' };
}

function send(
  socket: string,
  req: { method: string; path: string; body?: Buffer; contentType: string },
): Promise<{ status: number; text: string } | { error: string }> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { 'content-type': req.contentType };
    if (req.body) headers['content-length'] = req.body.length;
    const r = request({ socketPath: socket, method: req.method, path: req.path, headers, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (e) => resolve({ error: e.message }));
    r.end(req.body);
  });
}

const STACK = /\n\s+at \S|node:internal|\/dist\/src\//;

// ---------- the parts ----------
function fuzzRecords(n: number, r: () => number): Tally {
  const t = tally();
  const valid = [Buffer.alloc(TRACE_EXEC.size), Buffer.alloc(TRACE_CONN.size), Buffer.alloc(TRACE_DATA.off.data + 64)];
  valid[0]?.writeUInt16LE(1, TRACE_HDR.off.kind);
  valid[1]?.writeUInt16LE(6, TRACE_HDR.off.kind);
  valid[2]?.writeUInt16LE(9, TRACE_HDR.off.kind);
  for (let i = 0; i < n; i++) {
    let buf: Buffer;
    if (r() < 0.5) {
      buf = Buffer.from(Array.from({ length: Math.floor(r() * 1500) }, () => Math.floor(r() * 256)));
      if (buf.length >= TRACE_HDR.size && r() < 0.7) buf.writeUInt16LE(1 + Math.floor(r() * 9), TRACE_HDR.off.kind);
    } else {
      buf = Buffer.from(valid[Math.floor(r() * valid.length)] as Buffer);
      for (let j = 0; j < 8; j++) buf[Math.floor(r() * buf.length)] = Math.floor(r() * 256);
      if (r() < 0.3) buf = buf.subarray(0, Math.floor(r() * buf.length));
    }
    t.inputs++;
    try {
      decodeRecord(buf, 0, buf.length);
    } catch (err) {
      if (!(err instanceof RecordError)) note(t, `record of ${buf.length} bytes: ${(err as Error).stack}`);
    }
  }
  return t;
}

function mutateText(text: string, r: () => number): string {
  let s = text;
  const edits = 1 + Math.floor(r() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(r() * s.length);
    const k = r();
    if (k < 0.3) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 20));
    else if (k < 0.6) s = s.slice(0, at) + (NASTY[Math.floor(r() * NASTY.length)] as string).slice(0, 50) + s.slice(at);
    else if (k < 0.8) s = s.slice(0, at) + String.fromCharCode(Math.floor(r() * 128)) + s.slice(at);
    else s = s.replace(/: \d+/, `: ${randomValue(r)}`);
  }
  return s;
}

function fuzzFiles(n: number, r: () => number, configText: string, profileText: string): { config: Tally; profile: Tally } {
  const config = tally();
  const profile = tally();
  for (let i = 0; i < n; i++) {
    const c = mutateText(configText, r);
    config.inputs++;
    try {
      parseConfig(parseYaml(c, { logLevel: 'error' }), 'fuzz.yaml');
    } catch (err) {
      // a YAML error is the file reader's to report ((yaml) in ConfigError); anything else from the schema must be a ConfigError
      if (!(err instanceof ConfigError) && !(err as Error).name?.startsWith('YAML')) note(config, `${(err as Error).stack}`);
    }
    const p = mutateText(profileText, r);
    profile.inputs++;
    try {
      profileFromYaml(p, 'fuzz.yaml');
    } catch (err) {
      if (!(err instanceof ProfileError)) note(profile, `${(err as Error).stack}`);
    }
  }
  return { config, profile };
}

async function fuzzOvsdb(updates: number, r: () => number): Promise<Tally & { malformed: number; resyncs: number; rss_mb: number }> {
  const t = { ...tally(), malformed: 0, resyncs: 0, rss_mb: 0 };
  const schema = JSON.parse(readFileSync(NB_SCHEMA, 'utf8')) as unknown;
  let monitorId: unknown;
  let sent = 0;
  let active: Socket | undefined;
  const server = createServer((sock) => {
    active = sock;
    const sp = new JsonStreamSplitter(1 << 24);
    sock.on('data', (d) => {
      for (const text of sp.push(d)) {
        const msg = JSON.parse(text) as { id: unknown; method: string; params: unknown[] };
        if (msg.method === 'get_schema') sock.write(JSON.stringify({ id: msg.id, result: schema, error: null }));
        else if (msg.method === 'monitor_cond_since') {
          t.resyncs++;
          monitorId = msg.params[1];
          sock.write(JSON.stringify({ id: msg.id, result: [false, 'aaaaaaaa-0000-0000-0000-000000000001', { Logical_Switch: {} }], error: null }));
        } else if (msg.method === 'echo') sock.write(JSON.stringify({ id: msg.id, result: msg.params, error: null }));
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  const port = (server.address() as { port: number }).port;
  const errors: string[] = [];
  const onUncaught = (e: unknown) => errors.push(String((e as Error)?.stack ?? e));
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const c = new OvsdbClient({
    remote: `tcp:127.0.0.1:${port}`,
    database: 'OVN_Northbound',
    tables: { Logical_Switch: { columns: ['name', 'ports', 'external_ids'] } },
    log: createLogger({ level: 'error', write: () => undefined }),
    backoffMinMs: 10,
  }).start();
  try {
    const uuid = () => `aaaaaaaa-0000-0000-0000-${String(Math.floor(r() * 1e12)).padStart(12, '0')}`;
    for (let i = 0; i < updates; i++) {
      for (let w = 0; w < 200 && (!active || monitorId === undefined || active.destroyed); w++) await new Promise((res) => setTimeout(res, 10));
      const sock = active as Socket;
      const k = r();
      let msg: string;
      if (k < 0.6) {
        const row: Record<string, unknown> = {};
        if (r() < 0.8) row.name = r() < 0.7 ? `ls-${i}` : randomValue(r);
        if (r() < 0.3) row.ports = r() < 0.5 ? ['set', [['uuid', uuid()]]] : randomValue(r);
        if (r() < 0.3) row.external_ids = r() < 0.5 ? ['map', [['k', 'v']]] : randomValue(r);
        const op = ['insert', 'modify', 'delete', 'initial', 'bogus'][Math.floor(r() * 5)] as string;
        msg = JSON.stringify({
          id: null,
          method: 'update3',
          params: [
            monitorId,
            uuid(),
            { [r() < 0.9 ? 'Logical_Switch' : 'Nope']: { [r() < 0.9 ? uuid() : 'not-a-uuid']: { [op]: op === 'delete' ? null : row } } },
          ],
        });
      } else if (k < 0.8)
        msg = JSON.stringify({ id: r() < 0.5 ? null : 7, method: ['update3', 'update2', 'echo', 'lock'][Math.floor(r() * 4)], params: randomValue(r) });
      else if (k < 0.95) msg = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 100) }, () => Math.floor(r() * 256))).toString('latin1');
      else msg = `{"id":null,"method":"update3","params":["${'x'.repeat(1 << 20)}"]}`;
      t.inputs++;
      sent++;
      sock.write(msg);
      if (i % 50 === 0) await new Promise((res) => setImmediate(res));
    }
    await new Promise((res) => setTimeout(res, 500));
    t.malformed = c.stats().malformed;
    for (const e of errors) note(t, e);
    t.crashes = errors.length;
  } finally {
    await c.stop();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    await new Promise<void>((res) => server.close(() => res()));
  }
  void sent;
  return t;
}

async function slowConnections(
  socket: string,
  n: number,
  holdMs: number,
): Promise<{ opened: number; held_at_end: number; legit_ok: number; legit_tried: number; first_ok_ms: number | null }> {
  const socks: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = connect(socket);
    s.on('error', () => undefined);
    s.write('GET /v1/status HTTP/1.1\r\nHost: x\r\n');
    socks.push(s);
  }
  const drip = setInterval(() => {
    for (const s of socks) if (!s.destroyed) s.write('X-Slow: 1\r\n');
  }, 500);
  let ok = 0;
  let tried = 0;
  let firstOk: number | null = null;
  const t0 = Date.now();
  const end = t0 + holdMs;
  while (Date.now() < end) {
    tried++;
    const res = await send(socket, { method: 'GET', path: '/v1/status', contentType: 'application/json' });
    if ('status' in res && res.status === 200) {
      ok++;
      firstOk ??= Date.now() - t0;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  clearInterval(drip);
  const held = socks.filter((s) => !s.destroyed).length;
  for (const s of socks) s.destroy();
  return { opened: n, held_at_end: held, legit_ok: ok, legit_tried: tried, first_ok_ms: firstOk };
}

export const bench = {
  summary:
    'malformed and hostile input at every door of a running agent (API, config and profile files, OVSDB peer, kernel records) while its data plane forwards',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({
      args,
      options: {
        requests: { type: 'string', default: '20000' },
        records: { type: 'string', default: '1000000' },
        files: { type: 'string', default: '20000' },
        updates: { type: 'string', default: '20000' },
        seed: { type: 'string', default: '1' },
      },
    });
    if (skipKernel) throw new Error(`robustness needs the kernel: ${skipKernel}`);
    const r = rng(Number(values.seed));
    const t0 = performance.now();

    log('kernel records through the decoder');
    const records = fuzzRecords(Number(values.records), r);
    log(`  ${records.inputs} records, ${records.unclean} unclean`);

    const lab = await labUp({ name: unique('rob', 20).toLowerCase(), vms: [0] });
    const pins = pinDir();
    const work = mkdtempSync(join(tmpdir(), 'stackbpf-rob-'));
    const socket = join(work, 'api.sock');
    const configObj = { ...labAgentConfig(lab, pins.dir), state_dir: join(work, 'state'), api: { listen: `unix:${socket}` } };
    const configText = stringify(configObj);
    writeFileSync(join(work, 'agent.yaml'), configText);
    let agentLog = '';
    const agent = spawn(process.execPath, [cli, 'agent', '--config', join(work, 'agent.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    agent.stderr?.on('data', (c) => {
      agentLog += c;
      if (agentLog.length > 1 << 20) agentLog = agentLog.slice(-(1 << 19));
    });
    let exited: string | undefined;
    agent.on('exit', (code, sig) => (exited = `exit ${code ?? sig}`));
    let ping: ReturnType<typeof spawn> | undefined;
    try {
      const ready = Date.now() + 30_000;
      while (Date.now() < ready) {
        const s = await send(socket, { method: 'GET', path: '/v1/status', contentType: 'application/json' });
        if ('status' in s && s.status === 200 && (await upstreamRoutes(lab)).length >= 2) break;
        await new Promise((res) => setTimeout(res, 200));
      }
      // the data plane under the run: a ping from the upstream router to the VM, every 50 ms
      const pingOut: string[] = [];
      ping = spawn('ip', ['netns', 'exec', lab.upstream.ns, 'ping', '-i', '0.05', '-W', '1', '-w', '600', '-I', lab.upstream.client4, '198.51.100.10'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      ping.stdout?.on('data', (c) => pingOut.push(String(c)));

      const rssBefore = memKb(agent.pid as number, 'VmRSS') / 1024;
      log('the API');
      const api = tally();
      const byStatus: Record<string, number> = {};
      const n = Number(values.requests);
      for (let i = 0; i < n && !exited; i++) {
        const req = randomRequest(r);
        api.inputs++;
        const res = await send(socket, req);
        if ('error' in res) {
          byStatus.connection_error = (byStatus.connection_error ?? 0) + 1;
          continue;
        }
        byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
        if (res.status >= 500) note(api, `${req.method} ${req.path.slice(0, 120)} → ${res.status} ${res.text.slice(0, 200)}`);
        else if (STACK.test(res.text)) note(api, `${req.method} ${req.path.slice(0, 120)} → ${res.status} with a stack trace`);
        else if (res.status >= 400) {
          let ok = false;
          try {
            ok = typeof (JSON.parse(res.text) as { error?: unknown }).error === 'string';
          } catch {
            /* not JSON */
          }
          if (!ok) note(api, `${req.method} ${req.path.slice(0, 120)} → ${res.status} without a reason: ${res.text.slice(0, 100)}`);
        }
        if (i % 2000 === 0) log(`  ${i}/${n}`);
      }
      log('slow connections');
      const slow = await slowConnections(socket, 300, 10_000);

      log('configuration and profile files');
      const profileText = stringify({
        service: 'keystone',
        mode: 'enforce',
        exec: ['/usr/bin/uwsgi-core'],
        files_read: ['/etc/keystone/*'],
        files_write: [],
        peers: ['127.0.0.1:3306'],
        api: ['POST /v3/auth/tokens'],
        sql: ['SELECT ?'],
        enforce: { files_deny: ['/etc/shadow'] },
      });
      const files = fuzzFiles(Number(values.files), r, configText, profileText);

      log('the OVSDB peer');
      const ovsdb = await fuzzOvsdb(Number(values.updates), r);

      ping.kill('SIGINT');
      await new Promise((res) => ping?.once('exit', res));
      const summary = /(\d+) packets transmitted, (\d+) received/.exec(pingOut.join(''));
      const sentPings = Number(summary?.[1] ?? 0);
      const received = Number(summary?.[2] ?? 0);
      const peak = exited ? 0 : memKb(agent.pid as number, 'VmHWM') / 1024;
      const rssAfter = exited ? 0 : memKb(agent.pid as number, 'VmRSS') / 1024;
      const crashes = (exited ? 1 : 0) + records.crashes + files.config.crashes + files.profile.crashes + ovsdb.crashes;
      const unclean = api.unclean + records.unclean + files.config.unclean + files.profile.unclean + ovsdb.unclean;
      const examples = [...api.examples, ...records.examples, ...files.config.examples, ...files.profile.examples, ...ovsdb.examples];
      for (const e of examples) log(`unclean: ${e}`);
      if (exited) log(`the agent ${exited}:\n${agentLog.slice(-3000)}`);
      return {
        inputs: api.inputs + records.inputs + files.config.inputs + files.profile.inputs + ovsdb.inputs,
        crashes,
        unclean_errors: unclean,
        peak_rss_mb: Math.round(peak * 10) / 10,
        rss_before_mb: Math.round(rssBefore * 10) / 10,
        rss_after_mb: Math.round(rssAfter * 10) / 10,
        api: { requests: api.inputs, unclean: api.unclean, by_status: byStatus, agent: exited ?? 'running' },
        slow_connections: slow,
        config_files: { inputs: files.config.inputs, unclean: files.config.unclean },
        profile_files: { inputs: files.profile.inputs, unclean: files.profile.unclean },
        ovsdb: { messages: ovsdb.inputs, unclean: ovsdb.unclean, malformed_counted: ovsdb.malformed, resyncs: ovsdb.resyncs },
        kernel_records: { inputs: records.inputs, unclean: records.unclean },
        dataplane: {
          pings_sent: sentPings,
          pings_received: received,
          loss_pct: sentPings ? Math.round(((sentPings - received) / sentPings) * 10000) / 100 : 100,
        },
        seconds: Math.round((performance.now() - t0) / 100) / 10,
      };
    } finally {
      ping?.kill('SIGKILL');
      agent.kill('SIGKILL');
      await labDown(lab.name);
      pins.remove();
      rmSync(work, { recursive: true, force: true });
      await run('true');
    }
  },
};
