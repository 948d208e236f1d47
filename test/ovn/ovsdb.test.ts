// The OVSDB client against a real ovsdb-server with the OVN northbound
// schema: replica, update2/update3 diffs, conditions, transactions, ssl,
// server restart. A scripted peer is used only for what a real server never
// sends (malformed bytes, unanswered probes).
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { JsonStreamSplitter, FramingError } from '../../src/ovn/jsonrpc.js';
import { OvsdbClient, OvsdbError, parseRemote, type RowChange } from '../../src/ovn/ovsdb.js';
import { NB_SCHEMA, OvsdbServer, skipOvsdb } from '../helpers/ovsdb.js';

const lines: string[] = [];
const log = createLogger({ level: 'debug', write: (l) => lines.push(l) });

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function lsNames(c: OvsdbClient): string[] {
  return [...c.rows('Logical_Switch')].map((r) => r.name as string).sort();
}

describe('JSON stream splitter', () => {
  test('finds message boundaries across reads, in strings and escapes', () => {
    const sp = new JsonStreamSplitter(1 << 20);
    const msgs = [{ id: 1, result: ['a}]', 'b\\"{'] }, { method: 'echo', params: [], id: 'x' }, { a: { b: [1, 2, { c: '"' }] } }];
    const bytes = Buffer.from(msgs.map((m) => JSON.stringify(m)).join('\n '));
    const out: string[] = [];
    for (let i = 0; i < bytes.length; i += 3) out.push(...sp.push(bytes.subarray(i, i + 3)));
    assert.deepEqual(
      out.map((t) => JSON.parse(t)),
      msgs,
    );
    assert.equal(sp.pending(), 0);
  });
  test('refuses garbage and oversized messages with a reason', () => {
    const sp = new JsonStreamSplitter(64);
    assert.throws(
      () => sp.push(Buffer.from('hello')),
      (e: Error) => e instanceof FramingError && /expected '\{'/.test(e.message),
    );
    assert.throws(() => sp.push(Buffer.from(`{"a":"${'x'.repeat(100)}`)), /larger than the limit of 64 bytes/);
    assert.deepEqual(sp.push(Buffer.from('{"ok":1}')), ['{"ok":1}']);
  });
  test('remotes are parsed or refused by name', () => {
    assert.deepEqual(parseRemote('tcp:127.0.0.1:6641'), { kind: 'tcp', host: '127.0.0.1', port: 6641 });
    assert.deepEqual(parseRemote('ssl:[2001:db8::1]:6642'), { kind: 'ssl', host: '2001:db8::1', port: 6642 });
    assert.deepEqual(parseRemote('unix:/run/ovn/ovnnb_db.sock'), { kind: 'unix', path: '/run/ovn/ovnnb_db.sock' });
    assert.throws(() => parseRemote('http://x'), /expected tcp:HOST:PORT/);
    assert.throws(() => new OvsdbClient({ remote: 'ssl:127.0.0.1:1', database: 'x', tables: {}, log }), /needs the private key/);
  });
});

describe('OVSDB client against ovsdb-server', { skip: skipOvsdb }, () => {
  let srv: OvsdbServer;
  before(async () => {
    srv = await OvsdbServer.start({ schema: NB_SCHEMA, ssl: true });
  });
  after(async () => {
    await srv?.stop();
  });

  test('replicates, applies insert/modify/delete diffs and transacts (unix socket)', async () => {
    const c = new OvsdbClient({
      remote: srv.unix,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name', 'ports', 'external_ids', 'other_config'] }, Logical_Switch_Port: {} },
      log,
    }).start();
    try {
      await c.waitSynced();
      assert.equal(c.stats().method, 'monitor_cond_since');
      const changes: RowChange[] = [];
      c.on('change', (ch: RowChange[]) => changes.push(...ch));
      await c.transact([
        { op: 'insert', table: 'Logical_Switch_Port', row: { name: 'p1', addresses: ['set', ['fa:16:3e:00:00:01 198.51.100.10']] }, 'uuid-name': 'p1' },
        {
          op: 'insert',
          table: 'Logical_Switch',
          row: { name: 'ls1', ports: ['set', [['named-uuid', 'p1']]], external_ids: ['map', [['neutron:network_name', 'public']]] },
        },
      ]);
      await until('ls1 in the replica', () => lsNames(c).includes('ls1'));
      const ls = [...c.rows('Logical_Switch')].find((r) => r.name === 'ls1');
      assert.ok(ls);
      assert.deepEqual(ls.external_ids, { 'neutron:network_name': 'public' });
      assert.equal((ls.ports as string[]).length, 1);
      const port = c.get('Logical_Switch_Port', (ls.ports as string[])[0] as string);
      assert.deepEqual(port?.addresses, ['fa:16:3e:00:00:01 198.51.100.10']);
      assert.deepEqual(port?.up, []);
      // map diff: change one key, add one, remove one
      await srv.ctl('ovn-nbctl', ['set', 'Logical_Switch', 'ls1', 'external_ids:"neutron:network_name"=pub2', 'external_ids:x=1']);
      await until(
        'map diff',
        () => ([...c.rows('Logical_Switch')].find((r) => r.name === 'ls1')?.external_ids as Record<string, string> | undefined)?.x === '1',
      );
      await srv.ctl('ovn-nbctl', ['remove', 'Logical_Switch', 'ls1', 'external_ids', 'x']);
      await until('map key removed', () => !('x' in (([...c.rows('Logical_Switch')].find((r) => r.name === 'ls1')?.external_ids ?? {}) as object)));
      assert.deepEqual([...c.rows('Logical_Switch')].find((r) => r.name === 'ls1')?.external_ids, { 'neutron:network_name': 'pub2' });
      // optional scalar (0..1 set) toggles to a new value, not to both
      await srv.ctl('ovn-nbctl', ['set', 'Logical_Switch_Port', 'p1', 'up=true']);
      await until('up=true', () => (c.get('Logical_Switch_Port', port?._uuid as string)?.up as boolean[] | undefined)?.[0] === true);
      await srv.ctl('ovn-nbctl', ['set', 'Logical_Switch_Port', 'p1', 'up=false']);
      await until('up=false', () => (c.get('Logical_Switch_Port', port?._uuid as string)?.up as boolean[] | undefined)?.[0] === false);
      assert.deepEqual(c.get('Logical_Switch_Port', port?._uuid as string)?.up, [false]);
      // set diff: a second port joins the switch
      await srv.ctl('ovn-nbctl', ['lsp-add', 'ls1', 'p2']);
      await until('two ports', () => ([...c.rows('Logical_Switch')].find((r) => r.name === 'ls1')?.ports as string[] | undefined)?.length === 2);
      await srv.ctl('ovn-nbctl', ['ls-del', 'ls1']);
      await until('ls1 deleted', () => !lsNames(c).includes('ls1'));
      assert.ok(
        changes.some((ch) => ch.table === 'Logical_Switch' && ch.old && !ch.new),
        'a delete was reported',
      );
      // a failing transaction rejects with the server's reason
      await assert.rejects(
        c.transact([{ op: 'insert', table: 'Logical_Switch', row: { no_such_column: 1 } }]),
        (e: Error) => e instanceof OvsdbError && /no_such_column|unknown column/.test(e.message),
      );
      assert.equal(c.stats().malformed, 0);
    } finally {
      await c.stop();
    }
  });

  test('conditional monitoring: only matching rows, changed at run time (tcp)', async () => {
    await srv.ctl('ovn-nbctl', ['ls-add', 'cond-a', '--', 'ls-add', 'cond-b', '--', 'ls-add', 'cond-c']);
    const c = new OvsdbClient({
      remote: srv.tcp,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'], where: [['name', '==', 'cond-a']] } },
      log,
    }).start();
    try {
      await c.waitSynced();
      assert.deepEqual(lsNames(c), ['cond-a']);
      await c.setConditions('Logical_Switch', [
        ['name', '==', 'cond-b'],
        ['name', '==', 'cond-c'],
      ]);
      await until('condition change applied', () => lsNames(c).join() === 'cond-b,cond-c');
      await srv.ctl('ovn-nbctl', ['ls-add', 'cond-d']);
      await srv.ctl('ovn-nbctl', ['ls-del', 'cond-c']);
      await until('cond-c gone', () => lsNames(c).join() === 'cond-b');
    } finally {
      await c.stop();
      await srv.ctl('ovn-nbctl', ['--if-exists', 'ls-del', 'cond-a', '--', '--if-exists', 'ls-del', 'cond-b', '--', '--if-exists', 'ls-del', 'cond-d']);
    }
  });

  test('ssl with the operator’s key, certificate and CA files', async () => {
    const ssl = srv.ssl;
    assert.ok(ssl);
    await srv.ctl('ovn-nbctl', ['ls-add', 'over-ssl']);
    const c = new OvsdbClient({
      remote: srv.sslRemote,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'] } },
      ssl: { privateKey: ssl.clientKey, certificate: ssl.clientCert, caCert: ssl.caCert },
      log,
    }).start();
    try {
      await c.waitSynced();
      assert.ok(lsNames(c).includes('over-ssl'));
    } finally {
      await c.stop();
      await srv.ctl('ovn-nbctl', ['ls-del', 'over-ssl']);
    }
  });

  test('server restart: the replica is kept while down, then resynced with only the real differences', async () => {
    await srv.ctl('ovn-nbctl', ['ls-add', 'keep-1', '--', 'ls-add', 'keep-2']);
    const c = new OvsdbClient({
      remote: `${srv.tcp},${srv.unix}`,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'] } },
      log,
      backoffMinMs: 50,
      backoffMaxMs: 200,
    }).start();
    try {
      await c.waitSynced();
      const changes: RowChange[] = [];
      c.on('change', (ch: RowChange[]) => changes.push(...ch));
      await srv.kill();
      await until('disconnect noticed', () => !c.isSynced());
      assert.deepEqual(
        lsNames(c).filter((n) => n.startsWith('keep')),
        ['keep-1', 'keep-2'],
        'rows kept while the server is down',
      );
      await srv.launch();
      await srv.ctl('ovn-nbctl', ['ls-add', 'keep-3', '--', 'ls-del', 'keep-1']);
      await until('resynced', () => c.isSynced() && lsNames(c).includes('keep-3') && !lsNames(c).includes('keep-1'), 10_000);
      const names = (r?: Record<string, unknown>) => r?.name;
      assert.ok(!changes.some((ch) => names(ch.old) === 'keep-2' || names(ch.new) === 'keep-2'), 'the unchanged row was not reported as removed and re-added');
      assert.ok(c.stats().disconnects >= 1 && c.stats().connects >= 2);
    } finally {
      await c.stop();
      await srv.ctl('ovn-nbctl', ['--if-exists', 'ls-del', 'keep-2', '--', '--if-exists', 'ls-del', 'keep-3']);
    }
  });

  test('an idle connection whose probes are answered stays up', async () => {
    const c = new OvsdbClient({
      remote: srv.unix,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'] } },
      log,
      probeIntervalMs: 100,
    }).start();
    try {
      await c.waitSynced();
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(c.stats().disconnects, 0, `no reconnect while idle (${c.stats().lastError ?? ''})`);
    } finally {
      await c.stop();
    }
  });

  test('a bad remote or an unknown column fails with the reason', async () => {
    const c = new OvsdbClient({
      remote: srv.unix,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name', 'no_such_col'] } },
      log,
      backoffMinMs: 50,
    }).start();
    try {
      await assert.rejects(c.waitSynced(1500), /table Logical_Switch has no column no_such_col/);
    } finally {
      await c.stop();
    }
  });
});

describe('OVSDB client against a clustered ovsdb-server', { skip: skipOvsdb }, () => {
  test('a reconnect resumes from the last transaction id: only what changed comes over', async () => {
    const srv = await OvsdbServer.start({ schema: NB_SCHEMA, cluster: true });
    const c = new OvsdbClient({
      remote: srv.unix,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'] } },
      log,
      backoffMinMs: 50,
      backoffMaxMs: 200,
    }).start();
    try {
      await c.waitSynced();
      await srv.ctl('ovn-nbctl', ['ls-add', 'before-restart']);
      await until('first row', () => lsNames(c).includes('before-restart'));
      const txn = c.stats().lastTxnId;
      assert.notEqual(txn, '00000000-0000-0000-0000-000000000000', 'a clustered database gives transaction ids');
      await srv.kill();
      await until('disconnect noticed', () => !c.isSynced());
      await srv.launch();
      await srv.ctl('ovn-nbctl', ['ls-add', 'after-restart']);
      await until('resynced with the new row', () => c.isSynced() && lsNames(c).includes('after-restart'), 15_000);
      const st = c.stats();
      assert.ok(st.resumed >= 1, `resumed from ${txn} (stats: resumed ${st.resumed}, full syncs ${st.fullSyncs})`);
      assert.equal(st.fullSyncs, 1, 'no second full copy');
      assert.deepEqual(lsNames(c), ['after-restart', 'before-restart']);
    } finally {
      await c.stop();
      await srv.stop();
    }
  });
});

describe('OVSDB client against a misbehaving peer', { skip: skipOvsdb }, () => {
  // A scripted peer: the real server's schema and monitor reply, then bytes a real server never sends.
  async function peer(
    script: (sock: Socket, msg: { id: unknown; method: string; params: unknown[] }) => void,
  ): Promise<{ remote: string; close(): Promise<void>; conns: () => number }> {
    const schema = JSON.parse((await import('node:fs')).readFileSync(NB_SCHEMA, 'utf8')) as unknown;
    let conns = 0;
    const socks: Socket[] = [];
    const server = createServer((sock) => {
      conns++;
      socks.push(sock);
      const sp = new JsonStreamSplitter(1 << 24);
      sock.on('data', (d) => {
        for (const t of sp.push(d)) {
          const msg = JSON.parse(t) as { id: unknown; method: string; params: unknown[] };
          if (msg.method === 'get_schema') sock.write(JSON.stringify({ id: msg.id, result: schema, error: null }));
          else script(sock, msg);
        }
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    return {
      remote: `tcp:127.0.0.1:${port}`,
      conns: () => conns,
      close: () =>
        new Promise((r) => {
          for (const s of socks) s.destroy();
          server.close(() => r());
        }),
    };
  }
  const row = { name: 'good', ports: ['set', []] };

  test('malformed updates are logged with the offending part; the replica stays whole and is resynced', async () => {
    let n = 0;
    const p = await peer((sock, msg) => {
      if (msg.method === 'monitor_cond_since') {
        n++;
        sock.write(
          JSON.stringify({
            id: msg.id,
            result: [false, 'aaaaaaaa-0000-0000-0000-000000000001', { Logical_Switch: { 'aaaaaaaa-0000-0000-0000-0000000000a1': { initial: row } } }],
            error: null,
          }),
        );
        if (n === 1) {
          // one good insert and one bad column in the same update: neither may be applied
          sock.write(
            JSON.stringify({
              id: null,
              method: 'update3',
              params: [
                msg.params[1],
                'aaaaaaaa-0000-0000-0000-000000000002',
                {
                  Logical_Switch: {
                    'aaaaaaaa-0000-0000-0000-0000000000a2': { insert: { name: 'half' } },
                    'aaaaaaaa-0000-0000-0000-0000000000a3': { insert: { name: 42 } },
                  },
                },
              ],
            }),
          );
          sock.write('not json at all');
        }
      }
    });
    const local: string[] = [];
    const c = new OvsdbClient({
      remote: p.remote,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name', 'ports'] } },
      log: createLogger({ level: 'debug', write: (l) => local.push(l) }),
      backoffMinMs: 20,
    }).start();
    try {
      await until('resynced after the bad update', () => n >= 2 && c.isSynced());
      assert.deepEqual(lsNames(c), ['good'], 'the half-good update was not applied');
      assert.ok(c.stats().malformed >= 1);
      const refused = local.find((l) => l.includes('ovsdb update refused'));
      assert.ok(refused, `the bad update is logged: ${local.join('')}`);
      assert.match(refused, /Logical_Switch row aaaaaaaa-0000-0000-0000-0000000000a3\.name: expected string, got 42/);
    } finally {
      await c.stop();
      await p.close();
    }
  });

  test('an unanswered inactivity probe drops the connection and reconnects', async () => {
    const p = await peer((sock, msg) => {
      if (msg.method === 'monitor_cond_since')
        sock.write(JSON.stringify({ id: msg.id, result: [false, 'aaaaaaaa-0000-0000-0000-000000000001', {}], error: null }));
      // echo requests go unanswered
    });
    const c = new OvsdbClient({
      remote: p.remote,
      database: 'OVN_Northbound',
      tables: { Logical_Switch: { columns: ['name'] } },
      log,
      probeIntervalMs: 100,
      backoffMinMs: 20,
    }).start();
    try {
      await until('second connection', () => p.conns() >= 2, 5000);
      assert.ok(c.stats().disconnects >= 1);
    } finally {
      await c.stop();
      await p.close();
    }
  });
});
