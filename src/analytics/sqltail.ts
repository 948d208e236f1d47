// Does what follows a break-out read as SQL? A value that closes the
// service's quote is only an injection when the rest of it, with the
// service's own closing quote after it, is something a database would
// parse: `admin' --`, `'-'`, `X' = 'X`, but not `O'Brien`, `it's Tom's` or
// `DANCIN' LIKE A ROBOT ON FIRE`. Natural language almost never reads as
// SQL past a break-out; this check is what keeps apostrophes out of the
// alerts while the comment, operator and stacked findings stay sensitive.
//
// A lenient recursive-descent reader of expressions (MySQL, PostgreSQL,
// Oracle and SQL Server operators, function calls, CASE, subqueries), then
// what may follow a WHERE condition: the service's closing parentheses,
// clauses (ORDER BY, UNION, INTO, ...), a stacked statement or the end.
import type { Token } from './sql.js';

const BINARY = new Set([
  '=',
  '<',
  '>',
  '<=',
  '>=',
  '<>',
  '!=',
  '<=>',
  '+',
  '-',
  '*',
  '/',
  '%',
  '|',
  '&',
  '^',
  '||',
  '&&',
  '<<',
  '>>',
  ':=',
  'AND',
  'OR',
  'XOR',
  'LIKE',
  'RLIKE',
  'REGEXP',
  'DIV',
  'MOD',
]);

/** What a stacked statement's first word needs next to be a statement and not a word of text. */
const STATEMENT_NEXT: Record<string, (c: Token[], j: number) => boolean> = {
  CREATE: (c, j) => /^(TABLE|DATABASE|USER|FUNCTION|PROCEDURE|INDEX|VIEW|SCHEMA|LOGIN|ROLE|TRIGGER|TEMPORARY|OR)$/.test(word(c[j])),
  DROP: (c, j) => /^(TABLE|DATABASE|USER|FUNCTION|PROCEDURE|INDEX|VIEW|SCHEMA|LOGIN|ROLE|TRIGGER)$/.test(word(c[j])),
  ALTER: (c, j) => /^(TABLE|DATABASE|USER|LOGIN|ROLE|SYSTEM|SESSION)$/.test(word(c[j])),
  INSERT: (c, j) => word(c[j]) === 'INTO',
  REPLACE: (c, j) => word(c[j]) === 'INTO',
  DELETE: (c, j) => word(c[j]) === 'FROM',
  UPDATE: (c, j) => c[j]?.kind === 'ident' && word(c[j + 1]) === 'SET',
  TRUNCATE: (c, j) => word(c[j]) === 'TABLE' || c[j]?.kind === 'ident',
  SELECT: (c, j) => expression(c, j) > j,
  EXEC: (c, j) => c[j]?.kind === 'ident' || c[j]?.text === '(',
  EXECUTE: (c, j) => c[j]?.kind === 'ident' || c[j]?.text === '(',
  DECLARE: (c, j) => c[j]?.kind === 'variable',
  WAITFOR: (c, j) => word(c[j]) === 'DELAY' || word(c[j]) === 'TIME',
  SHUTDOWN: (c, j) => j >= c.length || word(c[j]) === 'WITH',
  GRANT: (c, j) => c.slice(j, j + 12).some((t) => word(t) === 'TO'),
  REVOKE: (c, j) => c.slice(j, j + 12).some((t) => word(t) === 'FROM'),
  CALL: (c, j) => c[j]?.kind === 'ident' && c[j + 1]?.text === '(',
  BEGIN: (c, j) => c[j]?.kind === 'ident' || word(c[j]) === 'TRANSACTION',
  COPY: (c, j) => c[j]?.text === '(' || c[j]?.kind === 'ident',
  SET: (c, j) => (c[j]?.kind === 'ident' || c[j]?.kind === 'variable') && ['=', ':='].includes(c[j + 1]?.text ?? ''),
};

/** A statement starts at j (its first word and what must follow it). */
export function statementAt(c: Token[], j: number): boolean {
  const next = STATEMENT_NEXT[word(c[j])];
  return next?.(c, j + 1) === true;
}

/** What a clause's first words need next; true: the rest is taken as SQL. */
const CLAUSE_NEXT: Record<string, (c: Token[], j: number) => number | boolean> = {
  ORDER: (c, j) => word(c[j]) === 'BY' && listAt(c, j + 1),
  GROUP: (c, j) => word(c[j]) === 'BY' && listAt(c, j + 1),
  HAVING: (c, j) => expression(c, j),
  WHERE: (c, j) => expression(c, j),
  LIMIT: (c, j) => listAt(c, j),
  OFFSET: (c, j) => expression(c, j),
  UNION: (c, j) => (['ALL', 'DISTINCT'].includes(word(c[j])) ? ['SELECT', '('].includes(word(c[j + 1])) : ['SELECT', '('].includes(word(c[j]))),
  INTO: (c, j) => ['OUTFILE', 'DUMPFILE'].includes(word(c[j])) || c[j]?.kind === 'variable',
  FROM: (c, j) => c[j]?.kind === 'ident' || c[j]?.text === '(',
  PROCEDURE: (c, j) => c[j]?.kind === 'ident' && c[j + 1]?.text === '(',
  FOR: (c, j) => word(c[j]) === 'UPDATE',
  LOCK: (c, j) => word(c[j]) === 'IN',
};

function listAt(c: Token[], j: number): number {
  let k = expression(c, j);
  while (k >= 0 && c[k]?.text === ',') k = expression(c, k + 1);
  while (k >= 0 && ['ASC', 'DESC'].includes(word(c[k]))) k++;
  return k;
}
const MAX_DEPTH = 32;

const word = (t: Token | undefined): string => (t ? t.text.toUpperCase() : '');

/** Index after the primary at i, or -1. */
function primary(c: Token[], i: number, d: number): number {
  const t = c[i];
  if (!t || d > MAX_DEPTH) return -1;
  if (t.kind === 'number' || t.kind === 'param' || t.kind === 'variable') return i + 1;
  if (t.kind === 'string') {
    if (t.unterminated) return -1;
    let j = i + 1;
    while (c[j]?.kind === 'string' && !c[j]?.unterminated) j++; // 'a' 'b': adjacent strings concatenate
    return j;
  }
  if (t.text === '(') {
    const j = word(c[i + 1]) === 'SELECT' ? subquery(c, i + 1, d + 1) : list(c, i + 1, d + 1);
    return j >= 0 && c[j]?.text === ')' ? j + 1 : -1;
  }
  const w = word(t);
  if (w === 'CASE') {
    let depth = 0;
    for (let j = i; j < c.length; j++) {
      const x = word(c[j]);
      if (x === 'CASE') depth++;
      else if (x === 'END' && --depth === 0) return j + 1;
    }
    return -1;
  }
  if (t.kind === 'ident' || t.kind === 'keyword') {
    if (t.kind === 'keyword' && c[i + 1]?.text !== '(' && !['NULL', 'DEFAULT', 'ALL', 'ANY', 'SOME'].includes(w)) return -1;
    let j = i + 1;
    while (c[j]?.text === '.' && (c[j + 1]?.kind === 'ident' || c[j + 1]?.kind === 'keyword')) j += 2;
    if (c[j]?.text === '(') {
      if (c[j + 1]?.text === ')') return j + 2;
      if (c[j + 1]?.text === '*' && c[j + 2]?.text === ')') return j + 3;
      const k = word(c[j + 1]) === 'SELECT' ? subquery(c, j + 1, d + 1) : list(c, word(c[j + 1]) === 'DISTINCT' ? j + 2 : j + 1, d + 1);
      return k >= 0 && c[k]?.text === ')' ? k + 1 : -1;
    }
    return j;
  }
  return -1;
}

/** Index after one operand (a primary with its prefix operators) at i, or -1. */
export function operand(c: Token[], i: number, d = 0): number {
  return unary(c, i, d);
}

function unary(c: Token[], i: number, d: number): number {
  let j = i;
  while (['-', '+', '~', '!', 'NOT', 'BINARY', 'EXISTS'].includes(word(c[j]))) j++;
  return primary(c, j, d);
}

/** Index after the expression at i, or -1. */
export function expression(c: Token[], i: number, d = 0): number {
  let j = unary(c, i, d);
  while (j >= 0 && j < c.length) {
    let op = word(c[j]);
    if (op === 'NOT' && ['LIKE', 'IN', 'BETWEEN', 'REGEXP', 'RLIKE'].includes(word(c[j + 1]))) op = word(c[++j]);
    if (op === 'SOUNDS' && word(c[j + 1]) === 'LIKE') op = word(c[++j]);
    if (op === '::' || (op === ':' && c[j + 1]?.text === ':')) {
      j = c[j + 1]?.text === ':' ? j + 3 : j + 2; // PostgreSQL cast: ::TEXT
      continue;
    }
    if (op === 'IS') {
      j++;
      if (word(c[j]) === 'NOT') j++;
      if (!['NULL', 'TRUE', 'FALSE', 'UNKNOWN'].includes(word(c[j]))) return -1;
      j++;
      continue;
    }
    if (op === 'IN') {
      j = primary(c, j + 1, d);
      continue;
    }
    if (op === 'BETWEEN') {
      const k = unary(c, j + 1, d);
      if (k < 0 || word(c[k]) !== 'AND') return -1;
      j = unary(c, k + 1, d);
      continue;
    }
    if (op === 'COLLATE') {
      j += 2;
      continue;
    }
    if (!BINARY.has(op)) break;
    j = unary(c, j + 1, d);
  }
  return j;
}

function list(c: Token[], i: number, d: number): number {
  let j = expression(c, i, d);
  while (j >= 0 && c[j]?.text === ',') j = expression(c, j + 1, d);
  if (j >= 0 && word(c[j]) === 'AS') j += 2; // CAST(x AS type)
  if (j >= 0 && c[j]?.text === '(') j = list(c, j + 1, d) + 1; // NVARCHAR(4000)
  return j;
}

/** A subquery from SELECT to its closing parenthesis (not consumed), read leniently. */
function subquery(c: Token[], i: number, d: number): number {
  let depth = 0;
  for (let j = i; j < c.length; j++) {
    const x = c[j]?.text;
    if (x === '(') depth++;
    else if (x === ')') {
      if (depth === 0) return j;
      depth--;
    }
  }
  return d > 0 ? -1 : c.length;
}

/**
 * Whether `c` (the tokens from the break-out string on, comments removed,
 * the service's closing quote included) reads as the rest of a SQL
 * condition: an expression, then the service's closing parentheses,
 * clauses, a stacked statement or nothing.
 */
export function readsAsSql(c: Token[]): boolean {
  let j = expression(c, 0);
  for (;;) {
    if (j < 0) return false;
    while (c[j]?.text === ')') j++;
    if (j >= c.length) return true;
    const w = word(c[j]);
    if (BINARY.has(w)) {
      j = expression(c, j + 1, 0);
      continue;
    }
    if (w === ';') return c[j + 1] === undefined || statementAt(c, j + 1);
    // SQL Server runs a batch's statements without a separator
    if (statementAt(c, j)) return true;
    const clause = CLAUSE_NEXT[w];
    if (!clause) return false;
    const r = clause(c, j + 1);
    if (r === true) return true;
    if (r === false || r < 0) return false;
    j = r;
  }
}
