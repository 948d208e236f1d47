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
import { expression, operand, readsAsSql, statementAt } from './sqltail.js';

export interface ValueFinding {
  /** query:NAME, body:$.path.to.member, path:N */
  where: string;
  /** the offending value (truncated) */
  value: string;
  findings: string[];
}

const STRUCTURAL: (keyof SqlFindings)[] = ['tautology', 'unionSelect', 'stacked', 'timeBased', 'probing'];

/**
 * Where a service pastes a value: bare (a number or identifier position),
 * in a single- or double-quoted string, in parentheses, in a quoted string
 * in parentheses. A quoted context matters only when the value closes the
 * quote (breaks out).
 */
const CONTEXTS: readonly (readonly [prefix: string, suffix: string, breakout: boolean])[] = [
  ['', '', false],
  ["'", "'", true],
  ['"', '"', true],
  ['(', ')', false],
  ["('", "')", true],
];

// functions that read the server's data or time, or build strings a character at a time: a call of one,
// written as SQL is (no space before the parenthesis), where a value should be is injection
const SQL_FUNCTIONS =
  /(?:^|[^\w.])(sleep|benchmark|pg_sleep|randomblob|load_file|extractvalue|updatexml|ord|ascii|char|chr|substring|substr|mid|hex|unhex|version|user|database|current_user|system_user|session_user|concat|concat_ws|group_concat|make_set|elt|iif|sys_eval|lo_import|pg_read_file|xp_cmdshell|xp_dirtree|xp_fileexist|(?:utl_http|utl_inaddr|dbms_\w+|ctxsys\.\w+|sys)\.\w+)\(/i;

const LOGICAL = new Set(['AND', 'OR', 'XOR', '&&', '||']);

/** Findings for one value, [] when it is harmless in every context. */
export function inspectValue(v: string): string[] {
  if (v.length < 3) return [];
  // cheap gate: every injection needs a quote, a comment, a semicolon, a
  // parenthesis or a keyword-ish word; most values have none
  if (!/['"`;#()]|--|\/\*|\b(or|and|union|select|sleep|benchmark|waitfor|xor|information_schema|having|order|like|case)\b/i.test(v)) return [];
  const out = new Set<string>();
  for (const [prefix, suffix, breakout] of CONTEXTS) {
    // a value that breaks out of a quote is read as PostgreSQL, Oracle and SQL Server read it too:
    // `--` starts a comment there whatever follows it
    const toks = tokenize(prefix + v, 10_000, breakout);
    const first = toks.findIndex((t) => t.kind === 'string');
    // in a quoted context the value only matters if it closes the string
    if (breakout && (first < 0 || first > 1 || toks[first]?.unterminated || toks.slice(0, first).some((t) => t.text !== '('))) continue;
    const f = findings(toks);
    for (const k of STRUCTURAL) if (f[k] && k !== 'stacked') out.add(k);
    // a stacked statement: `;` and a statement's first words (`; SET x=1`, not `BASE; SET SWAROVSKI`)
    if (f.stacked) {
      const c = toks.filter((t) => t.kind !== 'comment');
      if (c.some((t, i) => t.text === ';' && statementAt(c, i + 1))) out.add('stacked');
    }
    // with the service's closing quote: does the rest read as SQL?
    const code = tokenize(prefix + v + suffix, 10_000, breakout).filter((t) => t.kind !== 'comment');
    const sql = readsAsSql(code);
    // a comment after a break-out cuts the service's own quote off
    if (breakout && f.comment && toks.length > first + 1 && sql) out.add('comment');
    // SQL after the break-out: `' or ''-'`, `X' = 'X`, `' + CHAR(65) + '`, `' exec sp_…`, `'-'`
    if (breakout && sql && afterBreakout(code, first, prefix.endsWith("'"), v)) out.add('breakout');
    // ORDER BY n / GROUP BY n: column-count probing
    for (let i = 0; i + 2 < toks.length; i++) {
      const a = toks[i] as (typeof toks)[number];
      if ((a.text === 'ORDER' || a.text === 'GROUP') && toks[i + 1]?.text === 'BY' && toks[i + 2]?.kind === 'number' && (breakout || i > 0))
        out.add('orderByProbe');
    }
    valueShapes(toks, breakout, out);
    conditions(code, out);
    if (!breakout && prefix === '' && sql && SQL_FUNCTIONS.test(v)) out.add('function');
    // SQL keywords, then a comment cutting the rest of the statement off
    if (f.comment) {
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
  if (/(?=[^\s\w]*['"])(?=[^\s\w]*[()<>])[()'"<>,.;]{3,}/.test(v) && /['"][()'"<>,.;]*['"]|[(,][.,(]*\(/.test(v)) out.add('errorProbe');
  return [...out];
}

const ARITH = new Set(['+', '-', '*', '/', '%', '|', '&', '^', '||', 'DIV', 'MOD', '<<', '>>']);

/**
 * What the value put after the quote it closed, read as SQL (readsAsSql
 * said it parses): a logical operator with an operand that is more than a
 * lone string or column (`' or ''-'`, `' or true--`), a comparison (in a
 * single-quoted string only: text in double quotes compares words with
 * LIKE and IS too often), a function call, a statement; or, when the value
 * begins or ends at the quote, an operator alone (`'-'`, `"*"`, MySQL's
 * implicit conversion of strings to 0).
 */
function afterBreakout(code: Token[], first: number, single: boolean, v: string): boolean {
  const tail = code.slice(first + 1);
  for (let i = 0; i < tail.length; i++) {
    const t = tail[i] as Token;
    const w = t.text.toUpperCase();
    if (LOGICAL.has(w)) {
      let j = i + 1;
      while (tail[j]?.text === '(') j++;
      const e = expression(tail, j);
      const o = tail[j];
      if (e - j > 1 || o?.kind === 'number' || ['TRUE', 'FALSE', 'NULL'].includes(o?.text.toUpperCase() ?? '')) return true;
    }
    if (single && COMPARE.has(w)) return true;
    if ((t.kind === 'ident' || t.kind === 'keyword') && tail[i + 1]?.text === '(' && w !== 'IN') return true;
    if (statementAt(tail, i)) return true;
  }
  const q = single ? "'" : '"';
  return (v.startsWith(q) || v.endsWith(q)) && tail.some((t) => ARITH.has(t.text.toUpperCase()));
}

const COMPARE = new Set(['=', '<', '>', '<=', '>=', '<>', '!=', '<=>', 'LIKE', 'RLIKE', 'REGEXP']);
const ENDS = new Set([')', ';', 'AND', 'OR', 'XOR', '&&', '||', 'ORDER', 'GROUP', 'HAVING', 'LIMIT', 'UNION', 'INTO']);

/**
 * A condition joined to the service's: AND/OR followed by a comparison of
 * any two operands (literals, columns, function calls), ending where a
 * condition ends — `OR x=y`, `AND current_user=notthere()`, `OR name LIKE '%'`.
 * A CASE … WHEN … THEN expression, and FROM table WHERE, are structure too.
 */
function conditions(code: Token[], out: Set<string>): void {
  for (let i = 0; i < code.length; i++) {
    const w = code[i]?.text.toUpperCase() ?? '';
    // `k=||k=v` is a query string's punctuation, not OR: nothing compares with an operator
    if (LOGICAL.has(w) && !COMPARE.has(code[i - 1]?.text.toUpperCase() ?? '')) {
      let j = i + 1;
      while (code[j]?.text === '(') j++;
      const a = operand(code, j);
      const op = code[a]?.text.toUpperCase() ?? '';
      if (a < 0 || !COMPARE.has(op)) continue;
      let b = a + 1;
      while (code[b]?.text === '(') b++;
      const e = operand(code, b);
      if (e >= 0 && (e >= code.length || ENDS.has(code[e]?.text.toUpperCase() ?? ''))) out.add('condition');
    }
    if (w === 'CASE') {
      const rest = code.slice(i + 1, i + 40).map((t) => t.text);
      const when = rest.indexOf('WHEN');
      if (when >= 0 && rest.indexOf('THEN') > when) out.add('case');
    }
    if (w === 'FROM' && code[i + 1]?.kind === 'ident' && code[i + 2]?.text === 'WHERE') out.add('clause');
  }
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
      const window = code.slice(i + 1, i + 24);
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
