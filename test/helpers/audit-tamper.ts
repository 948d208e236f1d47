// Ways a root user could tamper with an audit log on disk, each done with the
// `sqlite3` command-line tool on the file (not through our code), for the
// tests and the `audit` benchmark: `verify` must catch every one.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { keyId, noteHash, signCheckpoint } from '../../src/audit/checkpoint.js';
import { Frontier, leafHash } from '../../src/audit/merkle.js';

export const TAMPER_KINDS = ['changed-byte', 'deleted-record', 'swapped-records', 'truncated-tail', 'forged-resign', 'rewritten-after-publish'] as const;
export type TamperKind = (typeof TAMPER_KINDS)[number];

const sql = (db: string, stmt: string): string => execFileSync('sqlite3', [db, stmt], { encoding: 'utf8', maxBuffer: 1 << 30 });
const rowsOf = <T>(db: string, stmt: string): T[] =>
  JSON.parse(execFileSync('sqlite3', ['-json', db, stmt], { encoding: 'utf8', maxBuffer: 1 << 30 }) || '[]') as T[];

/** seq of records in the log (one past the last) */
export function recordCount(db: string): number {
  return Number(sql(db, 'SELECT COALESCE(MAX(seq) + 1, 0) FROM records').trim());
}

/** The last checkpoint's size: records covered by a signature. */
function covered(db: string): number {
  return Number(sql(db, 'SELECT COALESCE(MAX(size), 0) FROM checkpoints').trim());
}

/**
 * Tamper with the log at `db`. `pick` chooses a record among those covered by a checkpoint
 * (random in the benchmark). Returns what was done, for messages.
 */
export function tamper(db: string, kind: TamperKind, pick: (n: number) => number, node: string, keyFile?: string): string {
  const n = covered(db);
  if (n < 3) throw new Error(`tamper: the log has ${n} records under a checkpoint, need 3`);
  const i = 1 + pick(n - 2);
  switch (kind) {
    case 'changed-byte': {
      // one character of the body, inside the CADF event (a digit or letter changed to another)
      const body = sql(db, `SELECT body FROM records WHERE seq = ${i}`).replace(/\n$/, '');
      const at = body.indexOf('"outcome":"') + 11;
      const changed = `${body.slice(0, at)}${body[at] === 's' ? 'f' : 's'}${body.slice(at + 1)}`;
      writeFileSync(`${db}.tamper.sql`, `UPDATE records SET body = '${changed.replace(/'/g, "''")}' WHERE seq = ${i};`);
      execFileSync('sqlite3', [db, `.read ${db}.tamper.sql`]);
      return `changed one byte of record ${i}`;
    }
    case 'deleted-record':
      sql(db, `DELETE FROM records WHERE seq = ${i}`);
      return `deleted record ${i}`;
    case 'swapped-records':
      sql(
        db,
        `UPDATE records SET seq = -1 WHERE seq = ${i}; UPDATE records SET seq = ${i} WHERE seq = ${i + 1}; UPDATE records SET seq = ${i + 1} WHERE seq = -1;`,
      );
      return `swapped records ${i} and ${i + 1}`;
    case 'truncated-tail':
      sql(db, `DELETE FROM records WHERE seq >= ${i}`);
      return `removed records ${i}.. from the end`;
    case 'forged-resign':
    case 'rewritten-after-publish': {
      // remove a record and rebuild the whole log so that it is self-consistent: new prev chain,
      // new roots, checkpoints re-signed — with a key of the attacker's own (forged-resign), or
      // with the node's real key, which root can read (rewritten-after-publish, caught only by
      // what was published)
      sql(db, `DELETE FROM records WHERE seq = ${i}`);
      const rows = rowsOf<{ seq: number; body: string }>(db, 'SELECT seq, body FROM records ORDER BY seq');
      const cps = rowsOf<{ seq: number; size: number; time: number; note: string }>(db, 'SELECT seq, size, time, note FROM checkpoints ORDER BY seq');
      const origin = `stackbpf.audit/${node}`;
      const name = `stackbpf-audit-${node}`;
      let priv: KeyObject;
      let raw: Buffer;
      if (kind === 'forged-resign') {
        const kp = generateKeyPairSync('ed25519');
        priv = kp.privateKey;
        raw = kp.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
      } else {
        if (!keyFile) throw new Error("tamper: rewritten-after-publish needs the node's key file");
        priv = createPrivateKey(readFileSync(keyFile));
        raw = createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(-32);
      }
      const key = { name, private: priv, public: priv, raw, id: keyId(name, raw) };
      const f = new Frontier();
      let prev = '';
      const stmts: string[] = ['BEGIN;', 'DELETE FROM records;', 'DELETE FROM checkpoints;'];
      const sizes = new Map<number, { root: Buffer; frontier: string }>();
      const wantSizes = new Set(cps.map((c) => Math.min(c.size > i ? c.size - 1 : c.size, rows.length)));
      if (wantSizes.has(0)) sizes.set(0, { root: f.root(), frontier: JSON.stringify(f.save()) });
      rows.forEach((r, seq) => {
        const b = JSON.parse(r.body) as { v: number; seq: number; prev: string; event: unknown };
        const body = JSON.stringify({ v: 1, seq, prev, event: b.event });
        const e = b.event as {
          id: string;
          eventTime: string;
          action: string;
          outcome: string;
          initiator: { id: string; user_id?: string; project_id?: string };
        };
        stmts.push(
          `INSERT INTO records (seq, id, ts, kind, action, outcome, initiator, project, body) VALUES (${seq}, '${e.id}', ${Date.parse(e.eventTime.replace(/(\.\d{3})\d*\+0000$/, '$1Z'))}, 'api', '${e.action}', '${e.outcome}', '${e.initiator.user_id ?? e.initiator.id}', ${e.initiator.project_id ? `'${e.initiator.project_id}'` : 'NULL'}, '${body.replace(/'/g, "''")}');`,
        );
        const leaf = leafHash(Buffer.from(body));
        f.append(leaf);
        prev = leaf.toString('base64');
        if (wantSizes.has(f.size)) sizes.set(f.size, { root: f.root(), frontier: JSON.stringify({ ...f.save(), last: prev }) });
      });
      let prevNote = '';
      cps.forEach((c, k) => {
        const size = Math.min(c.size > i ? c.size - 1 : c.size, rows.length);
        const s = sizes.get(size) as { root: Buffer; frontier: string };
        const note = signCheckpoint({ origin, size, root: s.root, time: c.time, prev: prevNote ? noteHash(prevNote) : '' }, key);
        prevNote = note;
        stmts.push(
          `INSERT INTO checkpoints (seq, size, time, note, frontier) VALUES (${k + 1}, ${size}, ${c.time}, '${note.replace(/'/g, "''")}', '${s.frontier}');`,
        );
      });
      stmts.push('COMMIT;');
      writeFileSync(`${db}.tamper.sql`, stmts.join('\n'));
      execFileSync('sqlite3', [db, `.read ${db}.tamper.sql`]);
      return kind === 'forged-resign'
        ? `removed record ${i} and re-signed the rebuilt log with another key`
        : `removed record ${i} and re-signed the rebuilt log with the node's own key`;
    }
  }
}
