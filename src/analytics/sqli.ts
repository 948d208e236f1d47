// SQL injection in what clients send (query strings, JSON bodies, path
// segments) and in what services send to their database.
//
// A request value is lexed the way the database would see it if the
// service pasted it into a statement, in the three places a value lands: as
// a bare token (a number or identifier position), inside a single-quoted
// string, inside a double-quoted one (libinjection's idea, our lexer). A
// value is an injection when, in some context, it breaks out and leaves
// structure behind: a tautology, UNION SELECT, a stacked statement, a
// time-based probe, schema probing, or a comment cutting the rest off after
// a break-out. Ordinary text — names with apostrophes, free-form
// descriptions, UUIDs, JSON — leaves none of these.
import { findings, type SqlFindings, suspicious, type Token, tokenize } from './sql.js';

export interface ValueFinding {
  /** query:NAME, body:$.path.to.member, path:N */
  where: string;
  /** the offending value (truncated) */
  value: string;
  findings: string[];
}

const STRUCTURAL: (keyof SqlFindings)[] = ['tautology', 'unionSelect', 'stacked', 'timeBased', 'probing'];

/** Findings for one value, [] when it is harmless in every context. */
export function inspectValue(v: string): string[] {
  if (v.length < 3) return [];
  // cheap gate: every injection needs a quote, a comment, a semicolon, a
  // parenthesis or a keyword-ish word; most values have none
  if (!/['"`;#()]|--|\/\*|\b(or|and|union|select|sleep|benchmark|waitfor|xor|information_schema|having|order|like)\b/i.test(v)) return [];
  const out = new Set<string>();
  for (const [prefix, breakout] of [
    ['', false],
    ["'", true],
    ['"', true],
    ['(', false],
    ["')", true],
  ] as const) {
    const toks = tokenize(prefix + v);
    // in a quoted context the value only matters if it closes the string
    if (breakout && (toks[0]?.kind !== 'string' || toks[0].unterminated)) continue;
    const f = findings(toks);
    for (const k of STRUCTURAL) if (f[k]) out.add(k);
    // a comment after a break-out cuts the service's own quote off
    if (breakout && f.comment && toks.length > 1) out.add('comment');
    // ORDER BY n / GROUP BY n: column-count probing
    for (let i = 0; i + 2 < toks.length; i++) {
      const a = toks[i] as (typeof toks)[number];
      if ((a.text === 'ORDER' || a.text === 'GROUP') && toks[i + 1]?.text === 'BY' && toks[i + 2]?.kind === 'number' && (breakout || i > 0))
        out.add('orderByProbe');
    }
    valueShapes(toks, breakout, out);
    // SQL keywords, then a comment cutting the rest of the statement off
    if (!breakout && f.comment) {
      const ci = toks.findIndex((t) => t.kind === 'comment');
      if (
        toks
          .slice(0, ci)
          .some((t) => t.kind === 'keyword' && ['ORDER', 'UNION', 'SELECT', 'AND', 'OR', 'WHERE', 'HAVING', 'LIMIT', 'GROUP', 'XOR'].includes(t.text))
      )
        out.add('comment');
    }
  }
  // an error-provoking probe: a run of quotes and SQL punctuation no name or
  // sentence has (sqlmap's `"'.(,..(,(` and `'">`), sent to see whether the
  // service answers with a database error
  if (/(?=[^\s\w]*['"])(?=[^\s\w]*[()<>,.;])[()'"<>,.;]{3,}/.test(v) && /['"][()'"<>,.;]*['"]|[(,][.,(]*\(/.test(v)) out.add('errorProbe');
  return [...out];
}

const CMP = new Set(['=', '<', '>', '<=', '>=', '<>', '!=', '<=>', 'LIKE', 'RLIKE', 'REGEXP', 'IN', 'BETWEEN', 'IS']);
const isLit = (t: Token | undefined): boolean => t !== undefined && (t.kind === 'number' || t.kind === 'string');

/**
 * Shapes that are injection in a value but ordinary in a statement (where
 * subqueries and comparisons are the service's own): a parenthesised
 * subquery or SELECT of a function, a boolean probe (AND 1234=…), and a
 * literal compared with itself after WHEN / HAVING / WHERE / IF / ELT.
 */
function valueShapes(toks: Token[], breakout: boolean, out: Set<string>): void {
  const code = toks.filter((t) => t.kind !== 'comment');
  for (let i = 0; i < code.length; i++) {
    const t = code[i] as Token;
    const next = code[i + 1];
    if (t.text === 'SELECT' && (breakout || i === 0 || code[i - 1]?.text === '(' || code[i - 1]?.text === ',')) {
      // SELECT … FROM, or SELECT f(…): a query, not the word "select"
      const window = code.slice(i + 1, i + 8);
      const from = window.findIndex((w) => w.text === 'FROM');
      // "select a flavor from the list" is English: two words in a row before FROM
      const columns = from < 0 ? [] : window.slice(0, from);
      const english = columns.some((w, x) => w.kind === 'ident' && columns[x + 1]?.kind === 'ident');
      if (
        (from > 0 && !english) ||
        (next && (next.kind === 'ident' || next.kind === 'keyword') && code[i + 2]?.text === '(') ||
        next?.text === 'CASE' ||
        next?.text === '(' ||
        next?.text === '*'
      )
        out.add('subquery');
    }
    if (
      t.text === 'AND' ||
      t.text === 'OR' ||
      t.text === 'XOR' ||
      t.text === 'HAVING' ||
      t.text === 'WHERE' ||
      t.text === 'WHEN' ||
      t.text === '&&' ||
      t.text === '||'
    ) {
      let j = i + 1;
      while (code[j]?.text === '(') j++;
      const a = code[j];
      const op = code[j + 1];
      if (a?.kind === 'number' && op && CMP.has(op.text)) out.add('booleanProbe');
      let k = j + 2;
      while (code[k]?.text === '(') k++;
      if (isLit(a) && op && CMP.has(op.text) && isLit(code[k]) && a.text === code[k]?.text) out.add('tautology');
    }
    // f(4070=4070, …), IIF(4871=6050, …), MAKE_SET(1=1, …): a literal compared with a literal as a function's
    // first argument is a boolean probe whatever the function
    if ((t.kind === 'ident' || t.kind === 'keyword') && next?.text === '(' && isLit(code[i + 2]) && CMP.has(code[i + 3]?.text ?? '') && isLit(code[i + 4]))
      out.add(code[i + 4]?.text === code[i + 2]?.text ? 'tautology' : 'booleanProbe');
  }
}

function walkJson(v: unknown, path: string, out: ValueFinding[], depth = 0): void {
  if (out.length >= 10 || depth > 12) return;
  if (typeof v === 'string') {
    const f = inspectValue(v);
    if (f.length) out.push({ where: `body:${path}`, value: v.slice(0, 200), findings: f });
  } else if (Array.isArray(v)) v.forEach((x, i) => walkJson(x, `${path}[${i}]`, out, depth + 1));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walkJson(x, `${path}.${k}`, out, depth + 1);
}

/**
 * Percent-decoding that never gives up on the whole value: a capture cut
 * inside an escape (`%2`) or a malformed one (`%zz`, a lone byte of UTF-8)
 * must not leave the rest encoded, where no SQL structure is visible.
 */
export function decodeLenient(s: string): string {
  const plus = s.replace(/\+/g, ' ').replace(/%[0-9A-Fa-f]?$/, '');
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return Buffer.from(run.replace(/%/g, ''), 'hex').toString('latin1');
      }
    });
  }
}
const decode = decodeLenient;

/** Injection findings in a request target (path segments, query) and body (JSON or form). */
export function inspectRequest(target: string, body: string, contentType = ''): ValueFinding[] {
  const out: ValueFinding[] = [];
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  path.split('/').forEach((seg, i) => {
    if (!seg) return;
    const v = decode(seg);
    const f = inspectValue(v);
    if (f.length) out.push({ where: `path:${i}`, value: v.slice(0, 200), findings: f });
  });
  const params = (s: string, where: string): void => {
    for (const kv of s.split('&')) {
      if (!kv) continue;
      const eq = kv.indexOf('=');
      const name = decode(eq < 0 ? kv : kv.slice(0, eq));
      const v = eq < 0 ? '' : decode(kv.slice(eq + 1));
      for (const [w, x] of [
        [`${where}:${name}`, v],
        [`${where}-name`, name],
      ] as const) {
        const f = inspectValue(x);
        if (f.length) out.push({ where: w, value: x.slice(0, 200), findings: f });
      }
    }
  };
  if (q >= 0) params(target.slice(q + 1), 'query');
  if (body) {
    if (/x-www-form-urlencoded/i.test(contentType)) params(body, 'form');
    else if (/^\s*[[{]/.test(body)) {
      try {
        walkJson(JSON.parse(body), '$', out);
      } catch {
        // a truncated capture: its complete string values
        for (const m of body.matchAll(/"((?:[^"\\]|\\.){3,})"/g)) {
          let v = m[1] as string;
          try {
            v = JSON.parse(`"${v}"`) as string;
          } catch {
            /* keep it raw */
          }
          const f = inspectValue(v);
          if (f.length) out.push({ where: 'body', value: v.slice(0, 200), findings: f });
          if (out.length >= 10) break;
        }
      }
    }
  }
  return out.slice(0, 10);
}

/**
 * Structural injection traces in a statement a service sent. Comments alone
 * are not enough; an open quote is not either when the capture cut the
 * statement short.
 */
export function inspectStatement(sql: string, truncated = false): string[] {
  return suspicious(findings(sql)).filter((k) => k !== 'comment' && !(truncated && k === 'unbalanced'));
}
