// A SQL lexer and fingerprinter for the MySQL/MariaDB dialect the OpenStack
// services speak (through SQLAlchemy and pymysql), written for detection:
// it never throws, it reads malformed and truncated text, and it reports
// the lexical facts injection leaves behind (comments, stacked statements,
// unbalanced quotes, tautologies, UNION SELECT, time-based probes).
//
// fingerprint() is the statement's shape with every literal replaced by `?`
// (lists of literals by `?+`): the unit the service profiles learn.

export type TokenKind = 'keyword' | 'ident' | 'number' | 'string' | 'op' | 'punct' | 'comment' | 'param' | 'variable';

export interface Token {
  kind: TokenKind;
  text: string;
  /** a string or comment the text ended inside */
  unterminated?: boolean;
}

// words that are as often column or table names (user, key, version, database, ...) stay identifiers
const KEYWORDS = new Set(
  (
    'select from where and or not insert into values update set delete join left right inner outer cross on as ' +
    'union all distinct group by order having limit offset in is null like between exists case when then else end ' +
    'create drop alter table index view database schema grant revoke truncate replace show describe explain ' +
    'begin commit rollback savepoint release start transaction lock unlock for share mode asc desc procedure ' +
    'into outfile dumpfile load_file sleep benchmark waitfor delay if ifnull char concat substring ascii ord ' +
    'information_schema xor div mod regexp rlike sounds binary collate using natural straight_join high_priority ' +
    'low_priority ignore duplicate primary foreign references default auto_increment unique constraint ' +
    'count sum avg min max cast convert extractvalue updatexml exec execute declare'
  ).split(' '),
);

function isIdentStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 128;
}
function isIdentPart(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * Tokens of `sql`; whitespace dropped, everything else kept. `anyDash`:
 * `--` starts a comment whatever follows it (PostgreSQL, Oracle, SQL
 * Server), not only before a space (MySQL).
 */
export function tokenize(sql: string, max = 10_000, anyDash = false): Token[] {
  const out: Token[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n && out.length < max) {
    const c = sql.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11 || c === 0xa0) {
      i++;
      continue;
    }
    // comments: -- (MySQL wants a space or control char after, or the end: `1--1` is 1 minus -1,
    // and a generated name like tempest-group--978652177 carries no comment), #, /* */
    if ((c === 45 && sql.charCodeAt(i + 1) === 45 && (anyDash || !(sql.charCodeAt(i + 2) > 32 && sql.charCodeAt(i + 2) !== 127))) || c === 35) {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? n : end;
      out.push({ kind: 'comment', text: sql.slice(i, stop) });
      i = stop;
      continue;
    }
    if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      const end = sql.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      const t: Token = { kind: 'comment', text: sql.slice(i, stop) };
      if (end < 0) t.unterminated = true;
      out.push(t);
      // MySQL executes /*! ... */: lex what is inside as well
      if (sql.charCodeAt(i + 2) === 33) {
        const inner = sql.slice(i + 3, end < 0 ? n : end).replace(/^\d{5}/, '');
        out.push(...tokenize(inner, max - out.length, anyDash));
      }
      i = stop;
      continue;
    }
    if (c === 39 || c === 34) {
      let j = i + 1;
      let closed = false;
      while (j < n) {
        const d = sql.charCodeAt(j);
        if (d === 92) {
          j += 2;
          continue;
        }
        if (d === c) {
          if (sql.charCodeAt(j + 1) === c) {
            j += 2;
            continue;
          }
          closed = true;
          j++;
          break;
        }
        j++;
      }
      const t: Token = { kind: 'string', text: sql.slice(i, Math.min(j, n)) };
      if (!closed) t.unterminated = true;
      out.push(t);
      i = Math.min(j, n);
      continue;
    }
    if (c === 96) {
      const end = sql.indexOf('`', i + 1);
      const stop = end < 0 ? n : end + 1;
      out.push({ kind: 'ident', text: sql.slice(i + 1, end < 0 ? n : end).toLowerCase() });
      i = stop;
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      let j = i;
      if (c === 48 && (sql[i + 1] === 'x' || sql[i + 1] === 'X' || sql[i + 1] === 'b' || sql[i + 1] === 'B')) {
        j += 2;
        while (j < n && isIdentPart(sql.charCodeAt(j))) j++;
      } else {
        while (
          j < n &&
          (isDigit(sql.charCodeAt(j)) ||
            sql[j] === '.' ||
            sql[j] === 'e' ||
            sql[j] === 'E' ||
            ((sql[j] === '-' || sql[j] === '+') && (sql[j - 1] === 'e' || sql[j - 1] === 'E')))
        )
          j++;
      }
      out.push({ kind: 'number', text: sql.slice(i, j) });
      i = j;
      continue;
    }
    if (c === 64) {
      let j = i + 1;
      if (sql.charCodeAt(j) === 64) j++;
      while (j < n && isIdentPart(sql.charCodeAt(j))) j++;
      out.push({ kind: 'variable', text: sql.slice(i, j).toLowerCase() });
      i = j;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentPart(sql.charCodeAt(j))) j++;
      const w = sql.slice(i, j);
      const lw = w.toLowerCase();
      // x'..' / b'..' / N'..' literals
      if ((lw === 'x' || lw === 'b' || lw === 'n' || lw === '_utf8mb4' || lw === '_binary') && sql.charCodeAt(j) === 39) {
        i = j;
        continue;
      }
      out.push(KEYWORDS.has(lw) ? { kind: 'keyword', text: lw.toUpperCase() } : { kind: 'ident', text: lw });
      i = j;
      continue;
    }
    if (c === 63) {
      out.push({ kind: 'param', text: '?' });
      i++;
      continue;
    }
    if (c === 37 && (sql[i + 1] === 's' || sql[i + 1] === '(')) {
      const m = /^%(\([^)]*\))?s/.exec(sql.slice(i, i + 64));
      if (m) {
        out.push({ kind: 'param', text: '?' });
        i += m[0].length;
        continue;
      }
    }
    if (c === 40 || c === 41 || c === 44 || c === 59 || c === 46) {
      out.push({ kind: 'punct', text: sql[i] as string });
      i++;
      continue;
    }
    const two = sql.slice(i, i + 2);
    const three = sql.slice(i, i + 3);
    if (three === '<=>') {
      out.push({ kind: 'op', text: three });
      i += 3;
      continue;
    }
    if (['<=', '>=', '<>', '!=', '||', '&&', ':=', '<<', '>>'].includes(two)) {
      out.push({ kind: 'op', text: two });
      i += 2;
      continue;
    }
    out.push({ kind: 'op', text: sql[i] as string });
    i++;
  }
  return out;
}

const isLiteral = (t: Token | undefined): boolean => t !== undefined && (t.kind === 'number' || t.kind === 'string' || t.kind === 'param');

/** The statement's shape: literals → ?, literal lists → ?+, comments dropped, one space between tokens. */
export function fingerprint(sql: string | Token[]): string {
  const toks = typeof sql === 'string' ? tokenize(sql) : sql;
  const parts: string[] = [];
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i] as Token;
    if (t.kind === 'comment') continue;
    if (isLiteral(t)) {
      // ( ?, ?, ? ) → ( ?+ )
      if (parts[parts.length - 1] === '(') {
        let j = i;
        let count = 0;
        while (isLiteral(toks[j]) && (toks[j + 1]?.text === ',' || toks[j + 1]?.text === ')')) {
          count++;
          if (toks[j + 1]?.text === ')') break;
          j += 2;
        }
        if (count > 1 && toks[j + 1]?.text === ')') {
          parts.push('?+');
          i = j;
          continue;
        }
      }
      parts.push('?');
      continue;
    }
    parts.push(t.kind === 'ident' && /^[a-z_][a-z0-9_$]*$/.test(t.text) ? t.text : t.kind === 'ident' ? `\`${t.text}\`` : t.text);
  }
  return parts
    .join(' ')
    .replace(/ ?\. ?/g, '.')
    .replace(/\( /g, '(')
    .replace(/ \)/g, ')')
    .replace(/ ,/g, ',');
}

const STATEMENT_START = new Set([
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'DROP',
  'CREATE',
  'ALTER',
  'TRUNCATE',
  'REPLACE',
  'SHOW',
  'DECLARE',
  'EXEC',
  'EXECUTE',
  'SET',
  'GRANT',
  'REVOKE',
  'SHUTDOWN',
  'WAITFOR',
  'CALL',
  'LOAD',
  'RENAME',
  'DO',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'LOCK',
  'UNLOCK',
]);

export interface SqlFindings {
  /** comments in the text (applications send none through pymysql / SQLAlchemy) */
  comment: boolean;
  /** more than one statement */
  stacked: boolean;
  /** a string or comment left open: a quote broke out */
  unbalanced: boolean;
  /** OR/AND/XOR joining two literals compared with each other, or a bare true literal: `OR 1=1`, `OR 'a'='a'`, `OR 1` */
  tautology: boolean;
  unionSelect: boolean;
  /** SLEEP(, BENCHMARK(, WAITFOR DELAY, pg_sleep( */
  timeBased: boolean;
  /** information_schema, @@version, LOAD_FILE, INTO OUTFILE, … */
  probing: boolean;
}

export function findings(sql: string | Token[]): SqlFindings {
  const t = typeof sql === 'string' ? tokenize(sql) : sql;
  const f: SqlFindings = { comment: false, stacked: false, unbalanced: false, tautology: false, unionSelect: false, timeBased: false, probing: false };
  const code = t.filter((x) => x.kind !== 'comment');
  for (const x of t) {
    if (x.kind === 'comment') f.comment = true;
    if (x.unterminated) f.unbalanced = true;
  }
  for (let i = 0; i < code.length; i++) {
    const x = code[i] as Token;
    const next = code[i + 1];
    if (x.text === ';' && next && STATEMENT_START.has(next.text.toUpperCase())) f.stacked = true;
    if (
      x.kind === 'keyword' &&
      x.text === 'UNION' &&
      (next?.text === 'SELECT' ||
        ((next?.text === 'ALL' || next?.text === 'DISTINCT') && (code[i + 2]?.text === 'SELECT' || code[i + 2]?.text === '(')) ||
        next?.text === '(')
    )
      f.unionSelect = true;
    if ((x.text === 'SLEEP' || x.text === 'BENCHMARK' || x.text === 'pg_sleep') && next?.text === '(') f.timeBased = true;
    if (x.text === 'WAITFOR' && next?.text === 'DELAY') f.timeBased = true;
    if (
      x.text === 'INFORMATION_SCHEMA' ||
      x.text === 'LOAD_FILE' ||
      x.text === 'OUTFILE' ||
      x.text === 'DUMPFILE' ||
      x.text === '@@version' ||
      x.text === 'EXTRACTVALUE' ||
      x.text === 'UPDATEXML' ||
      (x.kind === 'variable' && /^@@(version|datadir|hostname|basedir)/.test(x.text))
    )
      f.probing = true;
    if ((x.kind === 'keyword' && (x.text === 'OR' || x.text === 'XOR' || x.text === 'AND')) || (x.kind === 'op' && (x.text === '||' || x.text === '&&'))) {
      // OR (1=1), OR ((1)=(1)): opening parentheses do not change the comparison
      let j = i + 1;
      while (code[j]?.text === '(') j++;
      const a = code[j];
      let k = j + 1;
      while (code[k]?.text === ')') k++;
      const op = code[k];
      let m = k + 1;
      while (code[m]?.text === '(') m++;
      const b = code[m];
      if (
        isLiteral(a) &&
        op &&
        (op.text === '=' ||
          op.text === 'LIKE' ||
          op.text === '<=>' ||
          op.text === '>' ||
          op.text === '<' ||
          op.text === '!=' ||
          op.text === '<>' ||
          op.text === 'IS') &&
        (isLiteral(b) || b?.text === 'NULL' || b?.text === 'NOT')
      )
        f.tautology = true;
      if (x.text !== 'AND' && x.text !== '&&' && isLiteral(a) && a.text !== '0' && a.text !== "'0'" && (!op || op.text === ';' || op.kind === 'keyword'))
        f.tautology = true;
      if (a?.kind === 'ident' && op?.text === '=' && b?.kind === 'ident' && a.text === b.text) f.tautology = true;
    }
  }
  return f;
}

export function suspicious(f: SqlFindings): string[] {
  return (Object.entries(f) as [keyof SqlFindings, boolean][]).filter(([, v]) => v).map(([k]) => k);
}
