// `stackbpf audit verify`: every record against the log, every checkpoint's
// signature, its chain to the one before and its root against the records,
// and — what catches a root user rewriting the local database along with its
// checkpoints — every checkpoint published off the node against the roots the
// records give. Reported as CloudTrail's validate-logs does: counts of valid
// checkpoints and records, and the first bad one, precisely.
import { type Checkpoint, type CheckpointError, noteHash, openCheckpoint } from './checkpoint.js';
import type { AuditLog, StoredCheckpoint } from './log.js';
import { Frontier, leafHash } from './merkle.js';

export interface Problem {
  kind:
    | 'checkpoint-signature'
    | 'checkpoint-chain'
    | 'checkpoint-root'
    | 'record-missing'
    | 'record-changed'
    | 'record-order'
    | 'truncated'
    | 'published-mismatch'
    | 'published-missing'
    | 'published-signature'
    | 'start';
  /** record sequence number, or checkpoint number */
  at?: number;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  checkpoints: { valid: number; total: number };
  records: { valid: number; total: number; from: number };
  published?: { valid: number; total: number };
  /** the first problem found, in log order */
  first?: Problem;
  problems: Problem[];
}

export interface VerifyOptions {
  key: { name: string; raw: Buffer; id: Buffer };
  /** start at this checkpoint (its stored frontier, checked against its signed root) */
  from?: number;
  /** checkpoints published off the node: where each came from, and its note */
  published?: { source: string; note: string }[];
  /** called every so many records with progress */
  progress?: (done: number, total: number) => void;
}

export function verifyLog(log: AuditLog, opts: VerifyOptions): VerifyReport {
  const problems: Problem[] = [];
  const all = log.checkpoints();
  const opened = new Map<number, Checkpoint>();
  let cpValid = 0;
  // signatures and chain
  let prev: StoredCheckpoint | undefined;
  for (const c of all) {
    let ok = true;
    try {
      const cp = openCheckpoint(c.note, opts.key);
      opened.set(c.seq, cp);
      if (cp.origin !== log.origin) {
        problems.push({ kind: 'checkpoint-signature', at: c.seq, detail: `checkpoint ${c.seq} is of another log (${cp.origin}, this is ${log.origin})` });
        ok = false;
      }
      if (cp.size !== c.size || cp.time !== c.time) {
        problems.push({ kind: 'checkpoint-chain', at: c.seq, detail: `checkpoint ${c.seq}: its stored size/time differ from what it signed` });
        ok = false;
      }
      if (prev) {
        const p = opened.get(prev.seq);
        if (cp.prev !== noteHash(prev.note)) {
          problems.push({
            kind: 'checkpoint-chain',
            at: c.seq,
            detail: `checkpoint ${c.seq} does not follow checkpoint ${prev.seq} (its "prev" names another)`,
          });
          ok = false;
        } else if (p && (cp.size < p.size || cp.time < p.time)) {
          problems.push({ kind: 'checkpoint-chain', at: c.seq, detail: `checkpoint ${c.seq} goes back (size ${p.size} → ${cp.size})` });
          ok = false;
        }
      } else if (cp.prev !== '' && opts.from === undefined && log.meta('pruned_before_checkpoint') === undefined) {
        problems.push({
          kind: 'checkpoint-chain',
          at: c.seq,
          detail: `checkpoint ${c.seq} names a previous checkpoint, and none is stored (checkpoints removed)`,
        });
        ok = false;
      }
    } catch (err) {
      problems.push({ kind: 'checkpoint-signature', at: c.seq, detail: `checkpoint ${c.seq}: ${(err as CheckpointError).message}` });
      ok = false;
    }
    if (ok) cpValid++;
    prev = c;
  }

  // where to start: the checkpoint asked for, the first one kept after retention, or the beginning
  const prunedAt = Number(log.meta('pruned_before_checkpoint') ?? 0);
  const startSeq = opts.from ?? (prunedAt || undefined);
  let frontier = new Frontier();
  let lastLeaf: Buffer | undefined;
  if (startSeq !== undefined) {
    const c = all.find((x) => x.seq === startSeq);
    const cp = opened.get(startSeq);
    if (!c || !cp) {
      problems.push({ kind: 'start', at: startSeq, detail: `checkpoint ${startSeq} is not in the log, or its signature failed` });
      return report(problems, cpValid, all.length, 0, 0, 0, undefined);
    }
    const saved = JSON.parse(c.frontier) as { size: number; hashes: string[]; last?: string };
    frontier = Frontier.load(saved);
    lastLeaf = saved.last ? Buffer.from(saved.last, 'base64') : undefined;
    if (!frontier.root().equals(cp.root) || frontier.size !== cp.size) {
      problems.push({ kind: 'start', at: startSeq, detail: `checkpoint ${startSeq}: the stored tree state does not give its signed root` });
      return report(problems, cpValid, all.length, 0, 0, cp.size, undefined);
    }
  }
  const from = frontier.size;
  const roots = new Map<number, Buffer>([[frontier.size, frontier.root()]]);
  const bySize = new Map<number, StoredCheckpoint[]>();
  for (const c of all) if (c.size > from) bySize.set(c.size, [...(bySize.get(c.size) ?? []), c]);
  const publishedSizes = new Set<number>();
  const pub: { source: string; cp: Checkpoint }[] = [];
  let pubValid = 0;
  for (const p of opts.published ?? []) {
    try {
      const cp = openCheckpoint(p.note, opts.key);
      if (cp.origin !== log.origin) continue;
      pub.push({ source: p.source, cp });
      publishedSizes.add(cp.size);
    } catch (err) {
      problems.push({ kind: 'published-signature', detail: `${p.source}: ${(err as Error).message}` });
    }
  }
  const total = Math.max(0, log.end() - from);
  let valid = 0;
  let lastGood = from - 1;
  let expect = from;
  let recordProblem = false;
  const checkRoot = (): void => {
    const cps = bySize.get(frontier.size);
    if (publishedSizes.has(frontier.size)) roots.set(frontier.size, frontier.root());
    if (!cps) return;
    const root = frontier.root();
    for (const c of cps) {
      const cp = opened.get(c.seq);
      if (cp && !cp.root.equals(root))
        problems.push({
          kind: 'checkpoint-root',
          at: c.seq,
          detail: `checkpoint ${c.seq} (${c.size} records) does not match the records: a record before ${c.size} was changed, added or removed${recordProblem ? '' : ` after record ${lastGood}`}`,
        });
    }
  };
  for (const r of log.each(from)) {
    if (r.seq !== expect) {
      problems.push({
        kind: r.seq > expect ? 'record-missing' : 'record-order',
        at: expect,
        detail: r.seq > expect ? `records ${expect}..${r.seq - 1} are missing` : `record ${r.seq} appears twice`,
      });
      recordProblem = true;
      expect = r.seq;
    }
    let body: { v?: number; seq?: number; prev?: string; event?: { id?: string } };
    try {
      body = JSON.parse(r.body);
    } catch {
      body = {};
    }
    const leaf = leafHash(r.bytes);
    const wantPrev = lastLeaf ? lastLeaf.toString('base64') : '';
    if (body.v !== 1 || body.seq !== r.seq || body.event?.id !== r.id) {
      problems.push({
        kind: body.seq !== undefined && body.seq !== r.seq ? 'record-order' : 'record-changed',
        at: r.seq,
        detail:
          body.seq !== undefined && body.seq !== r.seq
            ? `record ${r.seq} holds record ${body.seq} (records moved)`
            : `record ${r.seq} (${r.id}) is not the record it was: its body does not parse or does not match its row`,
      });
      recordProblem = true;
    } else if (body.prev !== wantPrev && !(r.seq === from && lastLeaf === undefined && from > 0)) {
      problems.push({
        kind: 'record-changed',
        at: r.seq - 1,
        detail: `record ${r.seq - 1} was changed or replaced: record ${r.seq} names another before it`,
      });
      recordProblem = true;
    } else if (!recordProblem) {
      valid++;
      lastGood = r.seq;
    } else valid++;
    frontier.append(leaf);
    lastLeaf = leaf;
    expect = r.seq + 1;
    checkRoot();
    if (opts.progress && frontier.size % 100_000 === 0) opts.progress(frontier.size - from, total);
  }
  const count = frontier.size;
  for (const c of all) {
    if (c.size > count)
      problems.push({
        kind: 'truncated',
        at: c.seq,
        detail: `checkpoint ${c.seq} covers ${c.size} records and the log has ${count}: records ${count}..${c.size - 1} were removed from its end`,
      });
  }
  // the published checkpoints: each must be in the local log and give the same root
  const localNotes = new Set(all.map((c) => c.note.split('\n\n')[0]));
  for (const p of pub) {
    const root = roots.get(p.cp.size);
    const body = `${p.cp.origin}\n${p.cp.size}\n${p.cp.root.toString('base64')}\ntime ${p.cp.time}\nprev ${p.cp.prev || '-'}\n`.slice(0, -1);
    if (p.cp.size < from) {
      pubValid++;
      continue;
    }
    if (root === undefined) {
      problems.push({ kind: 'published-missing', detail: `${p.source}: a checkpoint of ${p.cp.size} records, and the log has ${count}` });
    } else if (!root.equals(p.cp.root)) {
      problems.push({
        kind: 'published-mismatch',
        detail: `${p.source}: published at ${new Date(p.cp.time).toISOString()} with root ${p.cp.root.toString('base64')} for ${p.cp.size} records; the log gives ${root.toString('base64')}: it was rewritten after it was published`,
      });
    } else if (!localNotes.has(body)) {
      problems.push({
        kind: 'published-missing',
        detail: `${p.source}: published checkpoint (${p.cp.size} records, ${new Date(p.cp.time).toISOString()}) is not in the log's checkpoints`,
      });
    } else pubValid++;
  }
  return report(problems, cpValid, all.length, valid, total, from, opts.published ? { valid: pubValid, total: opts.published.length } : undefined);
}

function report(
  problems: Problem[],
  cpValid: number,
  cpTotal: number,
  valid: number,
  total: number,
  from: number,
  published: { valid: number; total: number } | undefined,
): VerifyReport {
  const order = (p: Problem): number => (p.kind.startsWith('record') ? (p.at ?? 0) : Number.MAX_SAFE_INTEGER);
  const first = [...problems].sort((a, b) => order(a) - order(b))[0];
  // a checkpoint whose root fails is not valid either
  const badRoots = new Set(problems.filter((p) => p.kind === 'checkpoint-root' || p.kind === 'truncated').map((p) => p.at));
  return {
    ok: problems.length === 0,
    checkpoints: { valid: Math.max(0, cpValid - badRoots.size), total: cpTotal },
    records: { valid, total, from },
    ...(published ? { published } : {}),
    ...(first ? { first } : {}),
    problems,
  };
}

/** CloudTrail-like lines for a terminal. */
export function formatReport(r: VerifyReport): string {
  const lines = [
    `Results:`,
    `${r.checkpoints.valid}/${r.checkpoints.total} checkpoints valid`,
    `${r.records.valid}/${r.records.total} records valid${r.records.from ? ` (from record ${r.records.from})` : ''}`,
  ];
  if (r.published) lines.push(`${r.published.valid}/${r.published.total} published checkpoints match the log`);
  if (r.first) lines.push(`first problem: ${r.first.detail}`);
  for (const p of r.problems.slice(0, 20)) if (p !== r.first) lines.push(`  ${p.detail}`);
  if (r.problems.length > 20) lines.push(`  ... and ${r.problems.length - 20} more`);
  lines.push(r.ok ? 'the log is intact' : 'the log FAILED verification');
  return lines.join('\n');
}
