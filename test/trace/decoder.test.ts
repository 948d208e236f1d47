// Pure logic of the tracer's user-space half: redaction, protocol parsers,
// the session tracker, record decoding. Kernel behaviour is in
// tracer.test.ts and keystone.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  keystoneAuthSubject,
  keystoneTokenIdentity,
  looksLikeHttp,
  parseHttpHead,
  parseJsonRpcHead,
  parseMysqlCommand,
  parseMysqlGreeting,
  parseMysqlLogin,
  parseMysqlResult,
} from '../../src/trace/protocols.js';
import { decodeRecord, RecordError } from '../../src/trace/records.js';
import { REDACTED, redactArgv, redactEndpoint, redactJsonText, redactSql, redactUrl } from '../../src/trace/redact.js';
import { type SessionOutput, SessionTracker } from '../../src/trace/sessions.js';
import { inspectRequest } from '../../src/analytics/sqli.js';

const PW = 's3cr3t-Pa55';
const FERNET = `gAAAAAB${'x'.repeat(150)}`;

describe('redaction', () => {
  test('Keystone auth bodies: the password goes, whole or cut off at any byte', () => {
    const body = JSON.stringify({
      auth: { identity: { methods: ['password'], password: { user: { name: 'alice', domain: { name: 'Default' }, password: PW } } } },
    });
    const r = redactJsonText(body);
    assert.ok(!r.includes(PW));
    assert.ok(r.includes('"alice"'));
    assert.ok(r.includes(REDACTED));
    // every truncation of the body: no prefix of the password longer than 2 bytes survives
    for (let i = 0; i <= body.length; i++) {
      const cut = redactJsonText(body.slice(0, i));
      for (let k = 3; k <= PW.length; k++) assert.ok(!cut.includes(PW.slice(0, k)), `cut at ${i} leaked ${PW.slice(0, k)}`);
    }
    const tokenAuth = JSON.stringify({ auth: { identity: { methods: ['token'], token: { id: 'opaque-token-value' } } } });
    assert.ok(!redactJsonText(tokenAuth).includes('opaque-token-value'));
    const appCred = '{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"abc","secret":"topsecret"}}}}';
    assert.ok(!redactJsonText(appCred).includes('topsecret'));
    assert.ok(!redactJsonText(`{"x": "${FERNET}"}`).includes(FERNET.slice(0, 40)));
    const nova = redactJsonText('{"server": {"name": "vm1", "adminPass": "n0va-pw", "key_name": "mykey"}}');
    assert.ok(!nova.includes('n0va-pw') && nova.includes('"mykey"') && nova.includes('"vm1"'));
    assert.ok(!redactJsonText('{"user": {"name": "u", "new_password": "np1", "original_password": "op1"}}').match(/np1|op1/));
  });

  test('HTTP heads: credential headers are replaced, tokens kept aside for correlation only', () => {
    const raw = `GET /v3/projects?name=x&token=${FERNET} HTTP/1.1\r\nHost: a\r\nX-Auth-Token: ${FERNET}\r\nAuthorization: Basic dXNlcjpwYXNz\r\nCookie: s=1\r\nUser-Agent: t\r\n\r\n`;
    const h = parseHttpHead(Buffer.from(raw));
    assert.ok(h);
    assert.equal(h.headers['x-auth-token'], REDACTED);
    assert.equal(h.headers.authorization, REDACTED);
    assert.equal(h.headers.cookie, REDACTED);
    assert.equal(h.secrets.authToken, FERNET);
    const { secrets, ...visible } = h;
    assert.ok(!JSON.stringify(visible).includes('dXNlcjpwYXNz'));
    assert.ok(!JSON.stringify(visible).includes(FERNET.slice(0, 30)));
    assert.equal(secrets.authToken, FERNET);
    assert.equal(redactUrl('/v1/x?password=abc&limit=1'), `/v1/x?password=${REDACTED}&limit=1`);
    // an endpoint an operator configured, as status and logs show it
    assert.equal(
      redactEndpoint('http://otel:s3cret@127.0.0.1:4318/v1/metrics?token=abc'),
      `http://otel:${REDACTED}@127.0.0.1:4318/v1/metrics?token=${REDACTED}`,
    );
    assert.equal(redactEndpoint('rabbit://guest:guest@127.0.0.1:5672/'), `rabbit://guest:${REDACTED}@127.0.0.1:5672/`);
  });

  test('command lines and SQL', () => {
    assert.deepEqual(redactArgv(['openstack', '--os-password', PW, 'token', 'issue']), ['openstack', '--os-password', REDACTED, 'token', 'issue']);
    assert.deepEqual(redactArgv(['keystone-manage', `--bootstrap-password=${PW}`]), ['keystone-manage', `--bootstrap-password=${REDACTED}`]);
    assert.deepEqual(redactArgv(['/usr/bin/mysql', `-p${PW}`, 'keystone']), ['/usr/bin/mysql', `-p${REDACTED}`, 'keystone']);
    assert.ok(
      !redactArgv(['x', `mysql+pymysql://keystone:${PW}@db/keystone`])
        .join(' ')
        .includes(PW),
    );
    assert.ok(
      !redactArgv(['env', `OS_PASSWORD=${PW}`])
        .join(' ')
        .includes(PW),
    );
    const upd = `UPDATE password SET password_hash='$2b$04$abcdefghijklmnopqrstuv' WHERE id = 1`;
    assert.ok(!redactSql(upd).includes('abcdefghij'));
    assert.ok(!redactSql(`CREATE USER 'k'@'%' IDENTIFIED BY '${PW}'`).includes(PW));
    assert.ok(!redactSql(`INSERT INTO credential (blob) VALUES ('${PW}`).includes(PW), 'an unterminated literal is redacted to the end');
    assert.equal(redactSql("SELECT * FROM project WHERE name = 'admin'"), "SELECT * FROM project WHERE name = 'admin'");
  });
});

describe('protocol parsers', () => {
  test('HTTP', () => {
    assert.equal(looksLikeHttp(Buffer.from('POST /v3/auth/tokens HTTP/1.1\r\n')), true);
    assert.equal(looksLikeHttp(Buffer.from('HTTP/1.1 201 CREATED\r\n')), true);
    assert.equal(looksLikeHttp(Buffer.from('\x03SELECT 1')), false);
    const res = parseHttpHead(Buffer.from('HTTP/1.1 401 UNAUTHORIZED\r\nContent-Type: application/json\r\nx-openstack-request-id: req-1\r\n\r\n{"error":{}}'));
    assert.equal(res?.status, 401);
    assert.equal(res?.headers['x-openstack-request-id'], 'req-1');
    assert.equal(res?.body, '{"error":{}}');
    assert.equal(parseHttpHead(Buffer.from('garbage')), undefined);
  });

  test('Keystone bodies: who authenticates, who owns a token', () => {
    const req =
      '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "bob", "domain": {"name": "Default"}, "password": "<redacted>"}}}, "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}}';
    assert.deepEqual(keystoneAuthSubject(req), { user: 'bob', domain: 'Default', project: 'demo' });
    const tok =
      '{"token": {"methods": ["password"], "user": {"domain": {"id": "default", "name": "Default"}, "id": "u1", "name": "bob", "password_expires_at": null}, "audit_ids": ["a"], "project": {"domain": {"id": "default", "name": "Default"}, "id": "p1", "name": "demo"}, "roles": [';
    assert.deepEqual(keystoneTokenIdentity(tok), { user: 'bob', userId: 'u1', project: 'demo', projectId: 'p1' });
    assert.equal(keystoneTokenIdentity('{"error": {}}'), undefined);
  });

  test('MySQL: greeting, login without auth data, commands, results, lengths never trusted', () => {
    const greeting = Buffer.concat([Buffer.from([0x30, 0, 0, 0, 10]), Buffer.from('10.11.19-MariaDB\0'), Buffer.alloc(40)]);
    assert.equal(parseMysqlGreeting(greeting)?.version, '10.11.19-MariaDB');
    // handshake response: caps (CLIENT_SECURE_CONNECTION | CONNECT_WITH_DB | PLUGIN_AUTH_LENENC), user, 20-byte scramble, db
    const scramble = Buffer.alloc(20, 0xab);
    const body = Buffer.concat([
      Buffer.from([0x08, 0x80, 0x20, 0x00]),
      Buffer.alloc(4),
      Buffer.from([0x21]),
      Buffer.alloc(23),
      Buffer.from('keystone\0'),
      Buffer.from([20]),
      scramble,
      Buffer.from('keystone\0'),
    ]);
    const login = Buffer.concat([Buffer.from([body.length & 255, body.length >> 8, 0, 1]), body]);
    assert.deepEqual(parseMysqlLogin(login), { user: 'keystone', database: 'keystone' });
    const q = Buffer.concat([Buffer.from([9, 0, 0, 0, 3]), Buffer.from('SELECT 1')]);
    assert.deepEqual(parseMysqlCommand(q, q.length), { command: 'query', statement: 'SELECT 1', truncated: false });
    const lying = Buffer.from([0xff, 0xff, 0xff, 0, 3, 0x53]);
    assert.equal(parseMysqlCommand(lying, lying.length)?.statement, 'S');
    assert.deepEqual(parseMysqlResult(Buffer.from([7, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0])), { result: 'ok', affectedRows: 2 });
    const err = Buffer.concat([Buffer.from([30, 0, 0, 1, 0xff, 0x15, 0x04, 0x23]), Buffer.from('28000'), Buffer.from('Access denied')]);
    assert.deepEqual(parseMysqlResult(err), { result: 'error', errorCode: 1045, sqlState: '28000', error: 'Access denied' });
    assert.deepEqual(parseMysqlResult(Buffer.from([1, 0, 0, 1, 3])), { result: 'rows', columns: 3 });
    assert.equal(parseMysqlResult(Buffer.from([1, 0])), undefined);
  });
});

describe('records', () => {
  test('malformed records are refused with what was wrong', () => {
    assert.throws(
      () => decodeRecord(Buffer.alloc(20), 0, 20),
      (e: unknown) => e instanceof RecordError && /shorter than the 48-byte header/.test(e.message),
    );
    const b = Buffer.alloc(64);
    b.writeUInt16LE(77, 8);
    assert.throws(() => decodeRecord(b, 0, 64), /kind 77 is unknown/);
    b.writeUInt16LE(4, 8);
    assert.throws(() => decodeRecord(b, 0, 64), /kind 4 has 64 bytes, expected at least 328/);
    const d = Buffer.alloc(124);
    d.writeUInt16LE(9, 8);
    d.writeUInt16LE(500, 108);
    assert.throws(() => decodeRecord(d, 0, 124), /says 500 captured bytes but has room for 12/);
  });
});

describe('sessions', () => {
  const hdr = { flags: 1, ppid: 1, uid: 0, service: 1, comm: 'uwsgi' };
  const data = (tgid: number, fd: number, seq: number, dir: number, ts: number, text: string, prevBytes = 0, offset = 0) => ({
    ...hdr,
    kind: 9 as const,
    ts,
    tgid,
    tid: tgid,
    connId: 7,
    prevBytes,
    prevStart: 0,
    // a thread that spends half of its time on a CPU and a tenth waiting for one
    cpuNs: ts / 2,
    runqNs: ts / 10,
    greenlet: 0,
    fd,
    seq,
    offset,
    dir,
    role: 1,
    data: Buffer.from(text),
  });

  test('a request and its response, in several chunks, become one http.request with the token owner', () => {
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: 4096 });
    const body = '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice","domain":{"name":"Default"},"password":"pw"}}}}}';
    t.onData(data(10, 5, 1, 1, 1_000_000, 'POST /v3/auth/tokens HTTP/1.1\r\nHost: k\r\nUser-Agent: cli\r\n\r\n'));
    t.onData(data(10, 5, 1, 1, 1_100_000, body, 0, 60));
    const head = `HTTP/1.1 201 CREATED\r\nX-Subject-Token: ${FERNET}\r\nContent-Type: application/json\r\n\r\n`;
    t.onData(data(10, 5, 2, 2, 51_000_000, head, 200));
    t.onData(data(10, 5, 2, 2, 51_000_100, '{"token": {"user": {"id": "u1", "name": "alice"}, "project": {"id": "p1", "name": "demo"}}}', 0, head.length));
    // the next request on the connection completes the response; it uses the token
    // (read by a greenlet the tracer saw switched in: the request says which)
    t.onData({ ...data(10, 5, 3, 1, 90_000_000, `GET /v3/projects HTTP/1.1\r\nX-Auth-Token: ${FERNET}\r\n\r\n`, 900), greenlet: 0x7f00aa00 });
    t.onData(data(10, 5, 4, 2, 95_000_000, 'HTTP/1.1 200 OK\r\n\r\n{}', 70));
    t.onClose({
      ...hdr,
      kind: 8,
      ts: 99_000_000,
      tgid: 10,
      tid: 10,
      connId: 7,
      openedNs: 0,
      bytesIn: 0,
      bytesOut: 0,
      lastMsgBytes: 22,
      lastMsgStart: 0,
      fd: 5,
      role: 1,
      lastDir: 2,
      family: 2,
    });
    assert.equal(out.length, 2);
    const [auth, list] = out.map((o) => o.data) as unknown as [Record<string, unknown>, Record<string, unknown>];
    assert.equal(auth.status, 201);
    assert.equal(auth.latency_ms, 50);
    assert.equal(auth.cpu_ms, 25, "the worker's CPU from the request's first byte to the answer's");
    assert.equal(auth.runq_ms, 5);
    assert.equal(auth.request_bytes, 200);
    assert.equal(auth.response_bytes, 900);
    assert.equal(auth.auth_user, 'alice');
    assert.equal(auth.user, 'alice');
    assert.equal(auth.project, 'demo');
    assert.equal(list.user, 'alice', 'the token maps to its owner');
    assert.equal(list.project_id, 'p1');
    assert.equal(list.response_bytes, 22);
    assert.ok(typeof list.greenlet === 'number' && list.greenlet !== 0x7f00aa00, 'an opaque id, not the address');
    assert.equal(auth.greenlet, undefined, 'no greenlet seen, none said');
    assert.ok(!JSON.stringify(out.map((o) => o.data)).includes(FERNET.slice(0, 30)));
    assert.equal(t.status().open, 0);
  });

  test("a greenlet's id: the same for the same greenlet of a process, another for another, never its address", () => {
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: 4096 });
    const exchange = (tgid: number, fd: number, greenlet: number, ts: number) => {
      t.onData({ ...data(tgid, fd, 1, 1, ts, 'GET /v2.0/ports HTTP/1.1\r\n\r\n'), greenlet });
      t.onData({ ...data(tgid, fd, 2, 2, ts + 1000, 'HTTP/1.1 200 OK\r\n\r\n{}', 30), greenlet });
      t.onData({ ...data(tgid, fd, 3, 1, ts + 2000, 'GET /v2.0/ports HTTP/1.1\r\n\r\n', 20), greenlet });
    };
    exchange(20, 7, 0x7f0010, 1_000_000);
    exchange(20, 8, 0x7f0010, 2_000_000);
    exchange(20, 9, 0x7f0020, 3_000_000);
    exchange(21, 7, 0x7f0010, 4_000_000);
    const ids = out.map((o) => (o.data as { greenlet?: number }).greenlet);
    assert.equal(ids.length, 4);
    assert.equal(ids[0], ids[1], 'one greenlet, one id');
    assert.notEqual(ids[0], ids[2], 'another greenlet');
    assert.notEqual(ids[0], ids[3], 'the same address in another process');
    assert.ok(!ids.includes(0x7f0010) && !ids.includes(0x7f0020));
  });

  test('a request the connection ends without answering is still reported', () => {
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: 4096 });
    t.onData(data(11, 6, 1, 1, 1_000_000, 'GET /v3/users?name=x%27%20AND%20SLEEP(5) HTTP/1.1\r\nUser-Agent: sqlmap\r\n\r\n'));
    t.onClose({
      ...hdr,
      kind: 8,
      ts: 2_000_000,
      tgid: 11,
      tid: 11,
      connId: 7,
      openedNs: 0,
      bytesIn: 0,
      bytesOut: 0,
      lastMsgBytes: 70,
      lastMsgStart: 0,
      fd: 6,
      role: 1,
      lastDir: 1,
      family: 2,
    });
    assert.equal(out.length, 1);
    const only = out[0]?.data as unknown as Record<string, unknown> | undefined;
    assert.equal(only?.status, null);
    assert.equal(only?.answered, false);
    assert.equal(out[0]?.data.latency_ms, null);
    assert.equal(out[0]?.data.request_bytes, 70);
  });

  test('a request line longer than the capture is still a request, marked cut, and inspected', () => {
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: 256, inspect: inspectRequest });
    // sqlmap's UNION probes make targets of several KiB; only the first 256 bytes are captured
    const target = `/v3/users?name=admin%27%20UNION%20ALL%20SELECT%20${Array(200).fill('NULL').join('%2C')}--%20-`;
    const raw = `GET ${target} HTTP/1.1\r\nHost: k\r\nUser-Agent: sqlmap\r\n\r\n`;
    assert.equal(looksLikeHttp(Buffer.from(raw.slice(0, 256))), true);
    assert.equal(looksLikeHttp(Buffer.from(`GETX /${'a'.repeat(400)}`)), false);
    t.onData({ ...data(12, 7, 1, 1, 1_000_000, raw.slice(0, 256)), prevBytes: 0 });
    t.onData(data(12, 7, 2, 2, 3_000_000, 'HTTP/1.1 200 OK\r\n\r\n{}', raw.length));
    t.onClose({
      ...hdr,
      kind: 8,
      ts: 4_000_000,
      tgid: 12,
      tid: 12,
      connId: 7,
      openedNs: 0,
      bytesIn: 0,
      bytesOut: 0,
      lastMsgBytes: 21,
      lastMsgStart: 0,
      fd: 7,
      role: 1,
      lastDir: 2,
      family: 2,
    });
    assert.equal(out.length, 1);
    const ev = out[0]?.data as unknown as Record<string, unknown>;
    assert.equal(ev.method, 'GET');
    assert.equal(ev.path_truncated, true);
    assert.equal(ev.status, 200);
    assert.equal(ev.request_bytes, raw.length);
    assert.ok(String(ev.path).startsWith('/v3/users?name=admin'));
    assert.ok(Array.isArray(ev.sqli), 'the captured start of the payload is inspected');
    // a request line cut off is not confused with a whole one with headers
    assert.equal(parseHttpHead(Buffer.from('GET /v3/users HTTP/1.1\r\nHost: k\r\n\r\n'))?.targetTruncated, undefined);
  });

  test('a pooled MySQL connection met mid-stream is recognised from a whole command packet', () => {
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: 1024 });
    t.adopt(20, 9, 5, 2, '127.0.0.1:40000', '127.0.0.1:3306');
    const q = Buffer.concat([Buffer.from([9, 0, 0, 0, 3]), Buffer.from('SELECT 1')]);
    t.onData({
      ...hdr,
      kind: 9,
      ts: 1_000_000,
      tgid: 20,
      tid: 20,
      connId: 5,
      prevBytes: 0,
      prevStart: 0,
      cpuNs: 0,
      runqNs: 0,
      greenlet: 0,
      fd: 9,
      seq: 1,
      offset: 0,
      dir: 2,
      role: 2,
      data: q,
    });
    t.onData({
      ...hdr,
      kind: 9,
      ts: 1_500_000,
      tgid: 20,
      tid: 20,
      connId: 5,
      prevBytes: q.length,
      prevStart: 0,
      cpuNs: 0,
      runqNs: 0,
      greenlet: 0,
      fd: 9,
      seq: 2,
      offset: 0,
      dir: 1,
      role: 2,
      data: Buffer.from([1, 0, 0, 1, 1]),
    });
    t.sweep(Date.now() + 1000);
    assert.equal(out.length, 1);
    assert.equal(out[0]?.type, 'sql.query');
    assert.equal(out[0]?.data.statement, 'SELECT 1');
    assert.equal(out[0]?.data.latency_ms, 0.5);
    assert.equal(out[0]?.data.result, 'rows');
  });

  test('an OVSDB client: a transact and the answer that follows become one rpc.call naming the database, tables and operations', () => {
    const out: SessionOutput[] = [];
    const t = new SessionTracker((o) => out.push(o), { captureBytes: 1024 });
    const client = (seq: number, dir: number, ts: number, text: string) => ({ ...data(30, 7, seq, dir, ts, text), role: 2 });
    const txn =
      '{"id":12,"method":"transact","params":["OVN_Northbound",{"uuid-name":"r1","table":"Logical_Switch_Port","op":"insert","row":{"name":"p1"}},{"table":"Logical_Switch","op":"mutate","where":[],"mutations":[]}]}';
    t.onData(client(1, 2, 1_000_000, txn));
    // ovsdb-server's monitor update comes first, then the reply: the answer starts with the first
    t.onData(client(2, 1, 4_000_000, '{"id":null,"method":"update3","params":[]}{"id":12,"result":[{"uuid":["uuid","x"]},{}],"error":null}'));
    // the client's reply to an echo is no call of its own
    t.onData(client(3, 2, 9_000_000, '{"id":"echo","result":[],"error":null}'));
    t.onData(client(4, 1, 9_500_000, '{"id":"echo","method":"echo","params":[]}'));
    t.sweep(Date.now() + 1000);
    assert.equal(out.length, 1, JSON.stringify(out));
    const e = out[0] as Extract<SessionOutput, { type: 'rpc.call' }>;
    assert.equal(e.type, 'rpc.call');
    assert.equal(e.data.protocol, 'ovsdb');
    assert.equal(e.data.method, 'transact');
    assert.equal(e.data.target, 'OVN_Northbound');
    assert.deepEqual(e.data.tables, ['Logical_Switch_Port', 'Logical_Switch']);
    assert.deepEqual(e.data.ops, ['insert', 'mutate']);
    assert.equal(e.data.latency_ms, 3);
    assert.equal(t.status().rpc, 1);
  });

  test('JSON-RPC is recognised by its first member, not by a brace alone', () => {
    assert.equal(parseJsonRpcHead(Buffer.from('{"name": "x"}')), undefined);
    assert.deepEqual(parseJsonRpcHead(Buffer.from('{"id":7,"result":[],"error":null}')), { reply: true, id: '7' });
    assert.equal(parseJsonRpcHead(Buffer.from('{"method":"monitor_cond_since","id":"m1","params":["OVN_Southbound"]}'))?.method, 'monitor_cond_since');
  });
});
