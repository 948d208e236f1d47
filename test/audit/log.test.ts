// The audit log on a real SQLite file: append, checkpoint, reopen (as after a
// crash), verify; and every way of tampering with the file that the issue
// names, each done with the sqlite3 tool, caught by verify with the first bad
// record named.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { agentEvent, type CadfEvent, gapEvent } from '../../src/audit/cadf.js';
import { loadOrCreateKey, openCheckpoint, parseVerifierKey, verifierKey } from '../../src/audit/checkpoint.js';
import { AuditLog } from '../../src/audit/log.js';
import { verifyInclusion } from '../../src/audit/merkle.js';
import { buildProof } from '../../src/audit/cmd.js';
import { publishToDir, readPublishedDir } from '../../src/audit/publish.js';
import { verifyLog } from '../../src/audit/verify.js';
import { TAMPER_KINDS, tamper } from '../helpers/audit-tamper.js';

const dir = mkdtempSync(join(tmpdir(), 'sbt-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const NODE = 'node-a';
const observer = { node: NODE, id: '8b5d5c94-b1c4-5670-bece-cece1f5b48bc' };
const prov = { node: NODE, pid: 1, uid: 0, comm: 'test', service: '' };
const events = (n: number, from = 0): CadfEvent[] =>
  Array.from({ length: n }, (_, i) =>
    i % 2
      ? agentEvent('configure', 1_700_000_000_000 + from + i, observer, prov, { n: from + i })
      : gapEvent(1_700_000_000_000 + from + i, observer, prov, { from: 0, to: 1, cause: `test ${from + i}` }),
  );

let fresh = 0;
function build(n = 40, every = 7): { db: string; keyFile: string; publish: string } {
  const d = join(dir, `log-${fresh++}`);
  const db = join(d, 'audit.db');
  const keyFile = join(d, 'audit.key');
  const publish = join(d, 'published');
  const { key } = loadOrCreateKey(keyFile, `stackbpf-audit-${NODE}`);
  const log = new AuditLog(db, `stackbpf.audit/${NODE}`);
  for (let i = 0; i < n; i += every) {
    log.add(events(Math.min(every, n - i), i));
    const cp = log.checkpoint(key, 1_700_000_000_000 + i);
    publishToDir(publish, log.origin, cp.seq, cp.note, verifierKey(key));
  }
  log.close();
  return { db, keyFile, publish };
}

const trusted = (keyFile: string) => loadOrCreateKey(keyFile, `stackbpf-audit-${NODE}`).key;

describe('audit log', () => {
  it('an untouched log verifies, also against what was published, and resumes after a crash', () => {
    const { db, keyFile, publish } = build();
    let log = new AuditLog(db, undefined, { append: false });
    const pub = readPublishedDir(publish, log.origin);
    assert.equal(pub.key, verifierKey(trusted(keyFile)));
    const r = verifyLog(log, { key: parseVerifierKey(pub.key as string), published: pub.notes });
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.deepEqual(r.checkpoints, { valid: 6, total: 6 });
    assert.deepEqual(r.records, { valid: 40, total: 40, from: 0 });
    assert.deepEqual(r.published, { valid: 6, total: 6 });
    log.close();
    // records committed after the last checkpoint, then the process dies: reopening rebuilds the tree
    log = new AuditLog(db);
    log.add(events(5, 100));
    log.db.close(); // no checkpoint, no clean close of the log object
    log = new AuditLog(db);
    assert.equal(log.size, 45);
    log.checkpoint(trusted(keyFile));
    const r2 = verifyLog(log, { key: trusted(keyFile) });
    assert.equal(r2.ok, true, JSON.stringify(r2.problems));
    assert.equal(r2.records.valid, 45);
    log.close();
  });

  it('an inclusion proof checks with the public key alone', () => {
    const { db, keyFile } = build(25, 25);
    const log = new AuditLog(db, undefined, { append: false });
    const id = log.query({ limit: 100 }).find((r) => r.seq === 13)?.id as string;
    const p = buildProof(log, id);
    log.close();
    const pk = parseVerifierKey(verifierKey(trusted(keyFile)));
    const cp = openCheckpoint(p.checkpoint as string, pk);
    const proof = (p.proof as string[]).map((h) => Buffer.from(h, 'base64'));
    assert.ok(verifyInclusion(Buffer.from(p.leaf_hash as string, 'base64'), 13, cp.size, proof, cp.root));
    assert.ok(!verifyInclusion(Buffer.from(p.leaf_hash as string, 'base64'), 12, cp.size, proof, cp.root));
    // a Python verifier written from docs/audit.md alone agrees
    const out = execFileSync('/usr/bin/python3', [join(import.meta.dirname, '../../../test/helpers/audit-proof-check.py'), verifierKey(trusted(keyFile))], {
      input: JSON.stringify(p),
      encoding: 'utf8',
    });
    assert.match(out, /^ok leaf 13 of 25/);
  });

  for (const kind of TAMPER_KINDS)
    it(`catches tampering: ${kind}`, () => {
      const { db, keyFile, publish } = build();
      const before = new AuditLog(db, undefined, { append: false });
      const pubKey = readPublishedDir(publish, before.origin).key as string;
      before.close();
      const what = tamper(db, kind, (n) => Math.min(n - 1, 17), NODE, keyFile);
      const log = new AuditLog(db, undefined, { append: false });
      const published = kind === 'rewritten-after-publish' ? readPublishedDir(publish, log.origin).notes : undefined;
      // the local key verifies a log re-signed with it: only what was published shows the rewrite
      const local = verifyLog(log, { key: trusted(keyFile) });
      const r = verifyLog(log, { key: parseVerifierKey(pubKey), ...(published ? { published } : {}) });
      log.close();
      assert.equal(r.ok, false, `${what}: verify passed`);
      assert.ok(r.first, what);
      if (kind === 'rewritten-after-publish') {
        assert.equal(local.ok, true, 'the rewritten log is self-consistent under the node key');
        assert.ok(
          r.problems.some((p) => p.kind === 'published-mismatch'),
          JSON.stringify(r.problems),
        );
      }
      if (kind === 'forged-resign')
        assert.ok(r.problems.every((p) => p.kind === 'checkpoint-signature' || p.kind.startsWith('checkpoint') || p.kind === 'truncated'));
      if (kind === 'changed-byte' || kind === 'swapped-records') assert.equal(r.first?.at, 18, JSON.stringify(r.first));
      if (kind === 'deleted-record') assert.match(r.first?.detail ?? '', /records 18\.\.18 are missing/);
      if (kind === 'truncated-tail') assert.ok(r.problems.some((p) => p.kind === 'truncated'));
    });

  it('retention removes whole checkpoint spans; the rest still verifies and proves from the kept frontier', () => {
    const { db, keyFile } = build(40, 7);
    const log = new AuditLog(db);
    // records are from 1_700_000_000_000 + i ms: keep those from record 20 on
    const removed = log.prune(1_700_000_000_000 + 20);
    assert.equal(removed, 14, 'up to the last checkpoint at or before record 20 (size 14)');
    const r = verifyLog(log, { key: trusted(keyFile) });
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.deepEqual(r.records, { valid: 26, total: 26, from: 14 });
    const id = log.query({ limit: 100 }).find((x) => x.seq === 30)?.id as string;
    const p = buildProof(log, id);
    const cp = openCheckpoint(p.checkpoint as string, parseVerifierKey(verifierKey(trusted(keyFile))));
    assert.ok(
      verifyInclusion(
        Buffer.from(p.leaf_hash as string, 'base64'),
        30,
        cp.size,
        (p.proof as string[]).map((h) => Buffer.from(h, 'base64')),
        cp.root,
      ),
    );
    // and it goes on appending where it was
    log.add(events(3, 500));
    log.checkpoint(trusted(keyFile));
    assert.equal(verifyLog(log, { key: trusted(keyFile) }).ok, true);
    log.close();
  });

  it('refuses a key file of another kind, and a public key whose id does not match', () => {
    const f = join(dir, 'rsa.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', f], { stdio: 'ignore' });
    assert.throws(() => loadOrCreateKey(f, 'x'), /an rsa key, expected Ed25519/);
    const { keyFile } = build(3, 3);
    const good = verifierKey(trusted(keyFile));
    assert.throws(() => parseVerifierKey(good.replace(/\+[0-9a-f]{8}\+/, '+00000000+')), /does not match the key/);
  });
});
