// The SQL-injection corpora of test/data/sqli (README.md there: sources,
// licences, label rules), and the four places a request carries a value.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

export const LABELS = ['sqli', 'probe', 'keyword', 'not-sql', 'none', 'benign'] as const;
export type Label = (typeof LABELS)[number];

export interface CorpusEntry {
  label: Label;
  /** the value a client sends (decoded when the corpus keeps it URL-encoded) */
  value: string;
  /** the line as the corpus has it */
  raw: string;
  line: number;
}

export interface Corpus {
  name: string;
  source: string;
  entries: CorpusEntry[];
}

export const corpusDir = (): string => join(packageRoot, 'test', 'data', 'sqli');

/** Every corpus, in name order; a malformed line is an error naming the file and line. */
export function loadCorpora(dir = corpusDir()): Corpus[] {
  const out: Corpus[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.tsv'))
    .sort()) {
    const text = readFileSync(join(dir, f), 'utf8');
    const encoded = /^# payload encoding: URL-encoded/m.test(text);
    const source = /^# source: (.*)$/m.exec(text)?.[1] ?? '';
    const entries: CorpusEntry[] = [];
    text.split('\n').forEach((l, i) => {
      if (l === '' || l.startsWith('#')) return;
      const tab = l.indexOf('\t');
      const label = l.slice(0, tab) as Label;
      if (tab < 0 || !LABELS.includes(label)) throw new Error(`${f}:${i + 1}: expected "label<TAB>payload" with a label of ${LABELS.join(', ')}`);
      const raw = l.slice(tab + 1);
      let value = raw;
      if (encoded) {
        try {
          value = decodeURIComponent(raw.replace(/\+/g, ' '));
        } catch {
          value = raw;
        }
      }
      entries.push({ label, value, raw, line: i + 1 });
    });
    out.push({ name: f.replace(/\.tsv$/, ''), source, entries });
  }
  return out;
}

export const PLACES = ['query', 'path', 'json', 'form'] as const;
export type Place = (typeof PLACES)[number];

/** A request carrying the value in one place: what a client would send. */
export function requestWith(value: string, place: Place): { method: string; target: string; body: string; contentType: string } {
  const enc = encodeURIComponent(value);
  switch (place) {
    case 'query':
      return { method: 'GET', target: `/v3/users?name=${enc}&domain_id=default`, body: '', contentType: '' };
    case 'path':
      return { method: 'GET', target: `/v3/projects/${enc}`, body: '', contentType: '' };
    case 'json':
      return {
        method: 'POST',
        target: '/v3/projects',
        body: JSON.stringify({ project: { name: value, domain_id: 'default', enabled: true } }),
        contentType: 'application/json',
      };
    case 'form':
      return { method: 'POST', target: '/v3/search', body: `name=${enc}&page=1`, contentType: 'application/x-www-form-urlencoded' };
  }
}
