// `stackbpf audit ...`: the audit log read directly (root only, as the file is).
import { existsSync, readFileSync } from 'node:fs';
import { parseSince } from '../cli/trace-cmd.js';
import { loadConfig, parseConfig } from '../config.js';
import type { CadfEvent } from './cadf.js';
import { loadOrCreateKey, openCheckpoint, parseVerifierKey, verifierKey } from './checkpoint.js';
import { AuditLog } from './log.js';
import { inclusionProof, knownFromFrontier, leafHash, verifyInclusion } from './merkle.js';
import { auditPaths } from './module.js';
import { readPublishedBus, readPublishedDir } from './publish.js';
import { formatReport, verifyLog } from './verify.js';

interface Opts {
  since?: string;
  initiator?: string;
  project?: string;
  action?: string;
  outcome?: string;
  kind?: string;
  limit?: string;
  from?: string;
  published?: string;
  bus?: string;
  exchange?: string;
  key?: string;
  format?: string;
  db?: string;
  config?: string;
  json?: boolean;
}

const DEFAULT_CONFIG = '/etc/stackbpf/stackbpf.yaml';

class UsageError extends Error {}

function where(o: Opts): { db: string; keyFile: string; exchange: string; node: string } {
  const file = o.config ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined);
  const cfg = file ? loadConfig(file) : parseConfig({});
  const p = auditPaths(cfg.audit, cfg.stateDir);
  return { db: o.db ?? p.db, keyFile: p.key, exchange: o.exchange ?? cfg.audit.publish.exchange, node: p.node };
}

/** The signing key's name: stackbpf-audit-NODE, the node the log is of. */
export const keyNameOf = (origin: string): string => `stackbpf-audit-${origin.replace(/^stackbpf\.audit\//, '')}`;

function open(o: Opts): { log: AuditLog; keyFile: string; exchange: string } {
  const w = where(o);
  return { log: new AuditLog(w.db, undefined, { append: false }), keyFile: w.keyFile, exchange: w.exchange };
}

function trustedKey(o: Opts, keyFile: string, origin: string, published?: string): { key: ReturnType<typeof parseVerifierKey>; source: string } {
  if (o.key) {
    const text = existsSync(o.key) ? readFileSync(o.key, 'utf8') : o.key;
    return { key: parseVerifierKey(text), source: existsSync(o.key) ? o.key : '--key' };
  }
  if (published) return { key: parseVerifierKey(published), source: 'the key published beside the checkpoints' };
  if (!existsSync(keyFile)) throw new UsageError(`no key to verify with: give --key (what \`stackbpf audit key\` printed), or --published DIR`);
  const { key } = loadOrCreateKey(keyFile, keyNameOf(origin));
  return { key, source: `${keyFile} (local: a root user who rewrote the log could have used it; pin the key with --key or compare with --published)` };
}

function num(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name}: expected a whole number, got "${v}"`);
  return n;
}

export async function runAudit(o: Opts, positionals: string[]): Promise<number> {
  const [sub = 'list', ...rest] = positionals;
  try {
    switch (sub) {
      case 'list':
        return list(o);
      case 'verify':
        return await verify(o);
      case 'proof':
        return proof(o, rest[0]);
      case 'export':
        return exportCadf(o);
      case 'key':
        return key(o);
      default:
        throw new UsageError(`unknown subcommand "${sub}" (list, verify, proof, export, key)`);
    }
  } catch (err) {
    process.stderr.write(`stackbpf audit ${sub}: ${(err as Error).message}\n`);
    return 2;
  }
}

function list(o: Opts): number {
  const { log } = open(o);
  try {
    const rows = log.query({
      since: o.since ? parseSince(o.since) : Date.now() - 86_400_000,
      ...(o.initiator ? { initiator: o.initiator } : {}),
      ...(o.project ? { project: o.project } : {}),
      ...(o.action ? { action: o.action } : {}),
      ...(o.outcome ? { outcome: o.outcome } : {}),
      ...(o.kind ? { kind: o.kind } : {}),
      limit: num(o.limit, 'limit', 50),
    });
    if (o.json) {
      process.stdout.write(`${JSON.stringify(rows.map((r) => ({ seq: r.seq, ...JSON.parse(r.body).event })))}\n`);
      return 0;
    }
    for (const r of rows) {
      const e = JSON.parse(r.body).event as CadfEvent;
      const who = (e.initiator.name as string | undefined) ?? e.initiator.id;
      const what = (e.requestPath as string | undefined) ?? e.target.name ?? e.target.typeURI;
      process.stdout.write(
        `${String(r.seq).padStart(8)} ${e.eventTime.slice(0, 23)} ${e.action.padEnd(13)} ${e.outcome.padEnd(8)} ${String(who).slice(0, 24).padEnd(24)} ${what}\n`,
      );
    }
    if (rows.length === 0) process.stdout.write('no records match\n');
    return 0;
  } finally {
    log.close();
  }
}

async function verify(o: Opts): Promise<number> {
  const { log, keyFile, exchange } = open(o);
  try {
    let published: { source: string; note: string }[] | undefined;
    let pubKey: string | undefined;
    if (o.published) {
      const p = readPublishedDir(o.published, log.origin);
      published = p.notes;
      pubKey = p.key;
    }
    if (o.bus) published = [...(published ?? []), ...(await readPublishedBus(o.bus, exchange, log.origin.replace(/^stackbpf\.audit\//, '')))];
    const k = trustedKey(o, keyFile, log.origin, pubKey);
    const r = verifyLog(log, {
      key: k.key,
      ...(o.from !== undefined ? { from: num(o.from, 'from', 0) } : {}),
      ...(published ? { published } : {}),
      progress: o.json || !process.stderr.isTTY ? undefined : (done, total) => process.stderr.write(`\rverified ${done}/${total} records`),
    });
    if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
    if (o.json) process.stdout.write(`${JSON.stringify({ ...r, key_source: k.source })}\n`);
    else process.stdout.write(`${formatReport(r)}\n(key: ${k.source})\n`);
    return r.ok ? 0 : 1;
  } finally {
    log.close();
  }
}

/** An inclusion proof of one record in the latest checkpoint (format: docs/audit.md). */
export function buildProof(log: AuditLog, recordId: string): Record<string, unknown> {
  const rec = log.byId(recordId) ?? (/^\d+$/.test(recordId) ? log.query({ limit: 1 }).find((r) => r.seq === Number(recordId)) : undefined);
  if (!rec) throw new UsageError(`no record "${recordId}" in ${log.path}`);
  const cps = log.checkpoints();
  const cp = [...cps].reverse().find((c) => c.size > rec.seq);
  if (!cp) throw new UsageError(`record ${rec.seq} is not in a checkpoint yet (one is made every audit.checkpoint_seconds)`);
  const pruned = Number(log.meta('pruned_before_checkpoint') ?? 0);
  const base = pruned ? cps.find((c) => c.seq === pruned) : undefined;
  const start = base?.size ?? 0;
  const leaves = new Array(start).fill(undefined).concat(log.leaves(start, cp.size));
  const known = base ? knownFromFrontier(JSON.parse(base.frontier)) : undefined;
  const path = inclusionProof(leaves, rec.seq, cp.size, known);
  return {
    format: 'stackbpf-audit-inclusion-proof/1',
    record_id: rec.id,
    leaf_index: rec.seq,
    tree_size: cp.size,
    leaf: Buffer.from(rec.body).toString('base64'),
    leaf_hash: leafHash(Buffer.from(rec.body)).toString('base64'),
    proof: path.map((h) => h.toString('base64')),
    checkpoint: cp.note,
  };
}

function proof(o: Opts, id: string | undefined): number {
  if (!id) throw new UsageError('which record? stackbpf audit proof RECORD_ID (its CADF id, or its sequence number)');
  const { log, keyFile } = open(o);
  try {
    const p = buildProof(log, id);
    const k = trustedKey(o, keyFile, log.origin);
    p.public_key = verifierKey(k.key);
    // check it as a third party would before printing it
    const cp = openCheckpoint(p.checkpoint as string, k.key);
    const ok = verifyInclusion(
      Buffer.from(p.leaf_hash as string, 'base64'),
      p.leaf_index as number,
      p.tree_size as number,
      (p.proof as string[]).map((h) => Buffer.from(h, 'base64')),
      cp.root,
    );
    if (!ok) throw new Error(`the proof of record ${p.leaf_index} does not verify against checkpoint (${cp.size} records): run \`stackbpf audit verify\``);
    process.stdout.write(o.json ? `${JSON.stringify(p)}\n` : `${JSON.stringify(p, null, 2)}\n`);
    return 0;
  } finally {
    log.close();
  }
}

function exportCadf(o: Opts): number {
  if ((o.format ?? 'cadf') !== 'cadf') throw new UsageError(`--format: only "cadf" (JSON lines of CADF events), not "${o.format}"`);
  const { log } = open(o);
  try {
    const since = o.since ? parseSince(o.since) : undefined;
    for (const r of log.each(0)) {
      const b = JSON.parse(r.body) as { event: CadfEvent };
      if (since !== undefined && Date.parse(b.event.eventTime.replace(/(\.\d{3})\d*\+0000$/, '$1Z')) < since) continue;
      process.stdout.write(`${JSON.stringify(b.event)}\n`);
    }
    return 0;
  } finally {
    log.close();
  }
}

function key(o: Opts): number {
  const { keyFile, node } = where(o);
  if (!existsSync(keyFile)) throw new UsageError(`no key at ${keyFile}: the agent makes it on its first start with the audit module on`);
  const { key: k } = loadOrCreateKey(keyFile, `stackbpf-audit-${node}`);
  process.stdout.write(`${verifierKey(k)}\n`);
  return 0;
}
