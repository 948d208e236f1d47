// npm run bench -- sqli-corpus [--no-waf] [--rounds N]
//
// SQL-injection detection on public corpora nobody here tuned against
// (libinjection's test data, PayloadsAllTheThings' lists) and on benign text
// (libinjection's false positives, names a cloud carries), labelled by the
// rules of test/data/sqli/README.md. No OpenStack service is needed: each
// payload goes through the agent's request inspection in the four places a
// request carries a value (query string, path segment, JSON body, form), and
// through Apache with ModSecurity + the OWASP CRS (the detect benchmark's
// WAF, paranoia level 1, threshold 5) in front of a plain backend.
// An injection counts as found when it is found in all four places; a
// benign entry counts as a false alert when any place alerts.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { inspectRequest } from '../src/analytics/sqli.js';
import { type Corpus, loadCorpora, PLACES, type Place, requestWith } from '../test/helpers/sqli-corpus.js';
import { onInterrupt } from './interrupt.js';
import { ModSecurityFront, wafMissing } from './waf.js';

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const ratio = (a: number, b: number): number | null => (b ? Math.round((a / b) * 10000) / 10000 : null);

interface Tally {
  injections: number;
  found: number;
  benign: number;
  benign_alerts: number;
  probes: number;
  probes_flagged: number;
  missed: string[];
  false_alerts: string[];
  /** injections found in each place on its own */
  by_place: Record<Place, number>;
}

function tally(c: Corpus, hit: (entry: number, place: Place) => boolean): Tally {
  const t: Tally = {
    injections: 0,
    found: 0,
    benign: 0,
    benign_alerts: 0,
    probes: 0,
    probes_flagged: 0,
    missed: [],
    false_alerts: [],
    by_place: { query: 0, path: 0, json: 0, form: 0 },
  };
  c.entries.forEach((e, i) => {
    const places = PLACES.filter((p) => hit(i, p));
    if (e.label === 'sqli') {
      t.injections++;
      for (const p of places) t.by_place[p]++;
      if (places.length === PLACES.length) t.found++;
      else t.missed.push(e.value.slice(0, 120));
    } else if (e.label === 'benign') {
      t.benign++;
      if (places.length) {
        t.benign_alerts++;
        t.false_alerts.push(e.value.slice(0, 120));
      }
    } else if (e.label === 'probe') {
      t.probes++;
      if (places.length) t.probes_flagged++;
    }
  });
  return t;
}

const summary = (t: Tally): Record<string, unknown> => ({
  injections: t.injections,
  recall: ratio(t.found, t.injections),
  ...(t.injections ? { recall_by_place: Object.fromEntries(PLACES.map((p) => [p, ratio(t.by_place[p], t.injections)])) } : {}),
  benign: t.benign,
  benign_alerts: t.benign_alerts,
  probes: t.probes,
  probes_flagged: t.probes_flagged,
  ...(t.missed.length ? { missed: t.missed.slice(0, 10) } : {}),
  ...(t.false_alerts.length ? { false_alerts: t.false_alerts.slice(0, 10) } : {}),
});

export const bench = {
  summary:
    'SQL-injection recall and false alerts on libinjection and PayloadsAllTheThings corpora (labelled), ours beside ModSecurity + CRS; needs no services',
  async run(args: string[]): Promise<Record<string, unknown>> {
    const { values } = parseArgs({ args, options: { 'no-waf': { type: 'boolean' }, rounds: { type: 'string' } }, strict: true });
    const rounds = Number(values.rounds ?? 5);
    if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: expected a whole number ≥ 1, got "${values.rounds}"`);
    const corpora = loadCorpora();
    const total = corpora.reduce((n, c) => n + c.entries.length, 0);
    log(`${corpora.length} corpora, ${total} entries, ${PLACES.length} places each`);
    // ours: the same function the tracer calls on every request it decodes
    const ours = corpora.map((c) => c.entries.map(() => Object.fromEntries(PLACES.map((p) => [p, false])) as Record<Place, boolean>));
    const perRound: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = process.hrtime.bigint();
      corpora.forEach((c, ci) =>
        c.entries.forEach((entry, ei) => {
          for (const p of PLACES) {
            const q = requestWith(entry.value, p);
            (ours[ci] as Record<Place, boolean>[])[ei][p] = inspectRequest(q.target, q.body, q.contentType).length > 0;
          }
        }),
      );
      perRound.push(Number(process.hrtime.bigint() - t0) / 1e3 / (total * PLACES.length));
    }
    perRound.sort((a, b) => a - b);
    const result: Record<string, unknown> = {
      entries: total,
      inspect_us_per_request: {
        median: Math.round((perRound[Math.floor(perRound.length / 2)] as number) * 100) / 100,
        min: Math.round((perRound[0] as number) * 100) / 100,
        max: Math.round((perRound.at(-1) as number) * 100) / 100,
        rounds,
      },
    };
    const oursBy = corpora.map((c, ci) => tally(c, (i, p) => (ours[ci] as Record<Place, boolean>[])[i]?.[p] === true));
    let waf: ReturnType<typeof tally>[] | undefined;
    if (!values['no-waf']) {
      const missing = wafMissing();
      if (missing) throw new Error(`the sqli-corpus benchmark's WAF: ${missing} (or: --no-waf)`);
      waf = await runWaf(corpora);
    }
    const per: Record<string, unknown> = {};
    corpora.forEach((c, i) => {
      per[c.name] = { source: c.source, ours: summary(oursBy[i] as Tally), ...(waf ? { modsecurity: summary(waf[i] as Tally) } : {}) };
    });
    result.corpora = per;
    const sum = (ts: Tally[]) => {
      const inj = ts.reduce((n, t) => n + t.injections, 0);
      const found = ts.reduce((n, t) => n + t.found, 0);
      return {
        recall: ratio(found, inj),
        recall_by_place: Object.fromEntries(
          PLACES.map((p) => [
            p,
            ratio(
              ts.reduce((n, t) => n + t.by_place[p], 0),
              inj,
            ),
          ]),
        ),
        min_corpus_recall: Math.min(...ts.filter((t) => t.injections).map((t) => t.found / t.injections)),
        injections: inj,
        benign: ts.reduce((n, t) => n + t.benign, 0),
        benign_alerts: ts.reduce((n, t) => n + t.benign_alerts, 0),
      };
    };
    result.ours = sum(oursBy);
    if (waf)
      result.modsecurity = {
        ruleset: 'OWASP CRS 3.3 (Debian modsecurity-crs), paranoia level 1, inbound threshold 5, DetectionOnly',
        ...sum(waf),
      };
    return result;
  },
};

/** Every entry in every place through Apache + ModSecurity + CRS; its verdicts, per corpus. */
async function runWaf(corpora: Corpus[]): Promise<Tally[]> {
  const work = mkdtempSync(join(tmpdir(), 'sbb-sqlicorpus-'));
  const backend = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  const port = (backend.address() as { port: number }).port;
  let front: ModSecurityFront | undefined;
  const stop = async () => {
    await front?.stop();
    backend.close();
    rmSync(work, { recursive: true, force: true });
  };
  const forget = onInterrupt(stop);
  try {
    front = await ModSecurityFront.start(join(work, 'waf'), port);
    const jobs: { id: number; ci: number; ei: number; place: Place }[] = [];
    corpora.forEach((c, ci) => c.entries.forEach((_, ei) => PLACES.forEach((place) => jobs.push({ id: jobs.length, ci, ei, place }))));
    log(`ModSecurity + CRS: ${jobs.length} requests`);
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const j = jobs[next++] as (typeof jobs)[number];
        const q = requestWith(((corpora[j.ci] as Corpus).entries[j.ei] as Corpus['entries'][number]).value, j.place);
        const target = `${q.target}${q.target.includes('?') ? '&' : '?'}sbbid=${j.id}`;
        const res = await fetch(`${(front as ModSecurityFront).url}${target}`, {
          method: q.method,
          ...(q.body ? { body: q.body, headers: { 'content-type': q.contentType } } : {}),
        }).catch(() => undefined);
        await res?.arrayBuffer().catch(() => undefined);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await new Promise((r) => setTimeout(r, 500));
    const flagged = new Set<number>();
    let seen = 0;
    for (const v of front.verdicts()) {
      const m = /[?&]sbbid=(\d+)/.exec(v.target);
      if (!m) continue;
      seen++;
      if (v.score >= 5) flagged.add(Number(m[1]));
    }
    // a request Apache refused before ModSecurity scored it (a NUL in the path, say) is not flagged
    if (seen < jobs.length) log(`ModSecurity logged ${seen} of ${jobs.length} requests; the rest count as not flagged`);
    const index = new Map(jobs.map((j) => [`${j.ci}/${j.ei}/${j.place}`, j.id]));
    return corpora.map((c, ci) => tally(c, (ei, p) => flagged.has(index.get(`${ci}/${ei}/${p}`) as number)));
  } finally {
    await stop();
    forget();
  }
}
