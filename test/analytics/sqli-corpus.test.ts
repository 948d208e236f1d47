// The request inspection on public injection corpora it was not tuned on
// (libinjection's test data, PayloadsAllTheThings' lists) and on benign
// text: libinjection's own false positives and names a cloud carries.
// Labels and their rules: test/data/sqli/README.md.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { inspectRequest } from '../../src/analytics/sqli.js';
import { loadCorpora, PLACES, requestWith } from '../helpers/sqli-corpus.js';

const flagged = (value: string) =>
  PLACES.filter((p) => {
    const r = requestWith(value, p);
    return inspectRequest(r.target, r.body, r.contentType).length > 0;
  });

describe('SQL-injection corpora', () => {
  const corpora = loadCorpora();

  it('has the public corpora, each with labelled entries', () => {
    const names = corpora.map((c) => c.name);
    for (const n of ['libinjection-sqli-misc', 'libinjection-false-positives', 'patt-auth-bypass', 'patt-time-based', 'stackbpf-cloud-benign'])
      assert.ok(names.includes(n), `${n} is missing: ${names.join(', ')}`);
    for (const c of corpora) assert.ok(c.entries.length > 0 && c.source, c.name);
  });

  for (const c of corpora) {
    const sqli = c.entries.filter((e) => e.label === 'sqli');
    if (sqli.length)
      it(`${c.name}: at least 99% of its ${sqli.length} injections are found, in a query string, a path segment, a JSON body and a form`, () => {
        const missed = sqli.filter((e) => flagged(e.value).length < PLACES.length);
        assert.ok(
          missed.length <= sqli.length * 0.01,
          `missed ${missed.length} of ${sqli.length}:\n${missed.map((e) => `  line ${e.line}: ${e.value} (found in: ${flagged(e.value).join(', ') || 'none'})`).join('\n')}`,
        );
      });
    const benign = c.entries.filter((e) => e.label === 'benign');
    if (benign.length)
      it(`${c.name}: none of its ${benign.length} benign entries alerts, wherever it is sent`, () => {
        const alerts = benign.map((e) => ({ e, where: flagged(e.value) })).filter((x) => x.where.length);
        assert.deepEqual(
          alerts.map((x) => `line ${x.e.line}: ${x.e.value} (${x.where.join(', ')})`),
          [],
        );
      });
  }

  it('a malformed corpus line is an error that names the file and the line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-corpus-'));
    try {
      writeFileSync(join(dir, 'bad.tsv'), '# header\nsqli\tok\nmaybe\tx\n');
      assert.throws(() => loadCorpora(dir), /bad\.tsv:3: expected "label<TAB>payload"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
