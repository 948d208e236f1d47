// Parsers for the message heads the tracer captures: HTTP/1.x requests and
// responses, and the MySQL/MariaDB client/server protocol. They read at most
// the captured bytes, never trust a length field beyond them, and return
// undefined for anything that is not their protocol. Values come out
// redacted (./redact.ts); secrets the caller needs for correlation (a token,
// to map it to a user) are handed out separately and must not be stored.
import { isSecretHeader, REDACTED, redactJsonText, redactSql, redactUrl } from './redact.js';

export interface HttpHead {
  kind: 'request' | 'response';
  method?: string;
  target?: string;
  status?: number;
  reason?: string;
  /** lower-case names, secret values replaced */
  headers: Record<string, string>;
  /** the start of the body that was captured, redacted */
  body: string;
  /** credentials seen in this head, for correlation only (never stored) */
  secrets: { authToken?: string; subjectToken?: string; serviceToken?: boolean };
  headBytes: number;
  complete: boolean;
  /** the request line did not fit in the capture: target is its captured start */
  targetTruncated?: boolean;
}

const METHOD = /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|CONNECT|TRACE) (\S+) HTTP\/1\.[01]\r?\n/;
const STATUS = /^HTTP\/1\.[01] (\d{3})(?: ([^\r\n]*))?\r?\n/;
/** a request line the capture cut off (a target longer than capture_bytes: sqlmap's UNION payloads, long filters) */
const METHOD_CUT = /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|CONNECT|TRACE) (\/\S*|https?:\/\/\S*|\*)(?: \S*)?$/;

/** Does this capture start like an HTTP/1.x request or response? */
export function looksLikeHttp(b: Buffer): boolean {
  if (b.length < 5) return false;
  const c = b[0] as number;
  if (c === 0x48) return b.toString('latin1', 0, 5) === 'HTTP/';
  if (c < 0x41 || c > 0x5a) return false;
  const start = b.toString('latin1', 0, Math.min(b.length, 300));
  return METHOD.test(start) || (!start.includes('\n') && METHOD_CUT.test(start));
}

/** Headers kept on events (others are dropped to keep events small). */
const KEPT_HEADERS = new Set([
  'host',
  'user-agent',
  'content-type',
  'content-length',
  'x-openstack-request-id',
  'openstack-request-id',
  'x-compute-request-id',
  'x-forwarded-for',
  'x-real-ip',
  'openstack-api-version',
]);

export function parseHttpHead(buf: Buffer): HttpHead | undefined {
  const text = buf.toString('latin1');
  let m = METHOD.exec(text);
  let cut = false;
  if (!m && !text.includes('\n')) {
    m = METHOD_CUT.exec(text);
    cut = m !== null;
  }
  const s = m ? undefined : STATUS.exec(text);
  if (!m && !s) return undefined;
  const end = text.indexOf('\r\n\r\n');
  const headText = end < 0 ? text : text.slice(0, end);
  const headers: Record<string, string> = {};
  const secrets: HttpHead['secrets'] = {};
  for (const line of headText.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'x-auth-token') secrets.authToken = value;
    else if (name === 'x-subject-token') secrets.subjectToken = value;
    else if (name === 'x-service-token') secrets.serviceToken = true;
    if (isSecretHeader(name)) headers[name] = REDACTED;
    else if (KEPT_HEADERS.has(name)) headers[name] = value;
  }
  const body = end < 0 ? '' : redactJsonText(buf.toString('utf8', end + 4));
  const head: HttpHead = { kind: m ? 'request' : 'response', headers, body, secrets, headBytes: end < 0 ? buf.length : end + 4, complete: end >= 0 };
  if (m) {
    head.method = m[1] as string;
    head.target = redactUrl(m[2] as string);
    if (cut) head.targetTruncated = true;
  } else if (s) {
    head.status = Number(s[1]);
    if (s[2]) head.reason = s[2];
  }
  return head;
}

/** The user (and project) named in a Keystone password/token request body. */
export function keystoneAuthSubject(body: string): { user?: string; userId?: string; domain?: string; project?: string } {
  const out: { user?: string; userId?: string; domain?: string; project?: string } = {};
  const user = /"user"\s*:\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)/.exec(body)?.[1];
  if (user) {
    const name = /"name"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(user)?.[1];
    const id = /"id"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(user.replace(/"domain"\s*:\s*\{[^{}]*\}/, ''))?.[1];
    const domain = /"domain"\s*:\s*\{[^{}]*"name"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(user)?.[1];
    if (name) out.user = name;
    if (id) out.userId = id;
    if (domain) out.domain = domain;
  }
  const project = /"scope"\s*:\s*\{\s*"project"\s*:\s*\{[^{}]*?"name"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(body)?.[1];
  if (project) out.project = project;
  return out;
}

/** User and project in a Keystone token body ({"token": {"user": …, "project": …}}). */
export function keystoneTokenIdentity(body: string): { user?: string; userId?: string; project?: string; projectId?: string } | undefined {
  if (!/^\s*\{\s*"token"\s*:/.test(body)) return undefined;
  const out: { user?: string; userId?: string; project?: string; projectId?: string } = {};
  const obj = (key: string): string | undefined => {
    const i = body.search(new RegExp(`"${key}"\\s*:\\s*\\{`));
    if (i < 0) return undefined;
    // the object's own members, nested objects (domain) removed
    let depth = 0;
    let j = body.indexOf('{', i);
    const start = j;
    for (; j < body.length; j++) {
      if (body[j] === '{') depth++;
      else if (body[j] === '}' && --depth === 0) break;
    }
    return body.slice(start + 1, j).replace(/\{[^{}]*\}/g, '{}');
  };
  const field = (o: string | undefined, k: string): string | undefined =>
    o === undefined ? undefined : new RegExp(`"${k}"\\s*:\\s*"((?:[^"\\\\]|\\\\.)*)"`).exec(o)?.[1];
  const u = obj('user');
  const p = obj('project');
  const user = field(u, 'name');
  const userId = field(u, 'id');
  const project = field(p, 'name');
  const projectId = field(p, 'id');
  if (user) out.user = user;
  if (userId) out.userId = userId;
  if (project) out.project = project;
  if (projectId) out.projectId = projectId;
  return out;
}

// ---- MySQL / MariaDB -------------------------------------------------------

export const MYSQL_COMMANDS: Record<number, string> = {
  0x01: 'quit',
  0x02: 'init_db',
  0x03: 'query',
  0x0e: 'ping',
  0x11: 'change_user',
  0x16: 'stmt_prepare',
  0x17: 'stmt_execute',
  0x19: 'stmt_close',
  0x1f: 'reset_connection',
};

/** A server greeting (the first packet the server sends). */
export function parseMysqlGreeting(b: Buffer): { version: string } | undefined {
  if (b.length < 6) return undefined;
  const len = b.readUIntLE(0, 3);
  if (b[3] !== 0 || b[4] !== 10 || len < 20) return undefined;
  const end = b.indexOf(0, 5);
  if (end < 0 || end > 60) return undefined;
  return { version: b.toString('latin1', 5, end) };
}

/** The client's handshake response: the user and database, never the auth data. */
export function parseMysqlLogin(b: Buffer): { user: string; database?: string } | undefined {
  if (b.length < 36 || b[3] !== 1) return undefined;
  const caps = b.readUInt32LE(4);
  let p = 4 + 4 + 4 + 1 + 23;
  const end = b.indexOf(0, p);
  if (end < 0) return undefined;
  const user = b.toString('utf8', p, end);
  p = end + 1;
  // auth data: length-encoded or 1-byte length (CLIENT_PLUGIN_AUTH_LENENC / SECURE_CONNECTION)
  let authLen = 0;
  if (caps & 0x00200000) authLen = (b[p] as number) < 0xfb ? (b[p] as number) : -1;
  else if (caps & 0x00008000) authLen = b[p] as number;
  else authLen = b.indexOf(0, p) - p;
  if (authLen < 0 || p + 1 + authLen > b.length) return { user };
  p += 1 + authLen;
  if (caps & 0x00000008) {
    const dbEnd = b.indexOf(0, p);
    if (dbEnd > p) return { user, database: b.toString('utf8', p, dbEnd) };
  }
  return { user };
}

export interface MysqlCommand {
  command: string;
  /** statement text for query / stmt_prepare, redacted and possibly truncated */
  statement?: string;
  truncated: boolean;
}

/** A client command packet (seq 0). */
export function parseMysqlCommand(b: Buffer, totalBytes: number): MysqlCommand | undefined {
  if (b.length < 5 || b[3] !== 0) return undefined;
  const len = b.readUIntLE(0, 3);
  const cmd = b[4] as number;
  const name = MYSQL_COMMANDS[cmd];
  if (!name) return undefined;
  if (cmd === 0x03 || cmd === 0x16) {
    // a query may carry attributes first (CLIENT_QUERY_ATTRIBUTES); pymysql and libmariadb send none
    const text = b.toString('utf8', 5, Math.min(b.length, 4 + len));
    return { command: name, statement: redactSql(text), truncated: 4 + len > b.length || totalBytes > b.length };
  }
  if (cmd === 0x02) return { command: name, statement: b.toString('utf8', 5, Math.min(b.length, 4 + len)), truncated: false };
  return { command: name, truncated: false };
}

export interface MysqlResult {
  result: 'ok' | 'error' | 'rows' | 'eof';
  affectedRows?: number;
  errorCode?: number;
  sqlState?: string;
  error?: string;
  columns?: number;
}

function lenenc(b: Buffer, p: number): [number, number] | undefined {
  const f = b[p];
  if (f === undefined) return undefined;
  if (f < 0xfb) return [f, p + 1];
  if (f === 0xfc && p + 3 <= b.length) return [b.readUInt16LE(p + 1), p + 3];
  if (f === 0xfd && p + 4 <= b.length) return [b.readUIntLE(p + 1, 3), p + 4];
  if (f === 0xfe && p + 9 <= b.length) return [Number(b.readBigUInt64LE(p + 1)), p + 9];
  return undefined;
}

/** The first packet of the server's answer to a command. */
export function parseMysqlResult(b: Buffer): MysqlResult | undefined {
  if (b.length < 5) return undefined;
  const first = b[4] as number;
  if (first === 0x00) {
    const rows = lenenc(b, 5);
    return rows ? { result: 'ok', affectedRows: rows[0] } : { result: 'ok' };
  }
  if (first === 0xff) {
    const out: MysqlResult = { result: 'error' };
    if (b.length >= 7) out.errorCode = b.readUInt16LE(5);
    let p = 7;
    if (b[p] === 0x23 && b.length >= p + 6) {
      out.sqlState = b.toString('latin1', p + 1, p + 6);
      p += 6;
    }
    const len = b.readUIntLE(0, 3);
    out.error = redactSql(b.toString('utf8', p, Math.min(b.length, 4 + len)));
    return out;
  }
  if (first === 0xfe && b.readUIntLE(0, 3) < 9) return { result: 'eof' };
  const cols = lenenc(b, 4);
  return cols ? { result: 'rows', columns: cols[0] } : { result: 'rows' };
}

/**
 * An OVSDB JSON-RPC message (RFC 7047 §4): a JSON object with "method" (a
 * request or notification) or "result"/"error" (a reply). Only the first
 * bytes of a message are captured, so fields are found by pattern, not by
 * parsing the whole object; values are names from the schema, never data.
 */
export interface JsonRpcHead {
  method?: string;
  /** the request id as sent (a number or a string); null for a notification */
  id?: string | null;
  reply: boolean;
  /** transact: the database, the tables and operations in the captured bytes */
  db?: string;
  tables?: string[];
  ops?: string[];
}

const JSONRPC_START = /^\s*\{\s*"(id|method|params|result|error)"\s*:/;

export function looksLikeJsonRpc(b: Buffer): boolean {
  return b.length >= 8 && b[0] === 0x7b && JSONRPC_START.test(b.toString('latin1', 0, Math.min(b.length, 64)));
}

export function parseJsonRpcHead(b: Buffer): JsonRpcHead | undefined {
  if (!looksLikeJsonRpc(b)) return undefined;
  const t = b.toString('utf8');
  const method = /"method"\s*:\s*"([A-Za-z0-9_]{1,64})"/.exec(t)?.[1];
  const idm = /"id"\s*:\s*(null|-?\d{1,20}|"[^"\\]{0,64}")/.exec(t);
  const id = idm ? (idm[1] === 'null' ? null : (idm[1] as string).replace(/^"|"$/g, '')) : undefined;
  const out: JsonRpcHead = { reply: method === undefined && /"(result|error)"\s*:/.test(t) };
  if (method) out.method = method;
  if (id !== undefined) out.id = id;
  if (method === 'transact') {
    const db = /"params"\s*:\s*\[\s*"([A-Za-z0-9_]{1,64})"/.exec(t)?.[1];
    if (db) out.db = db;
    const uniq = (re: RegExp): string[] => [...new Set([...t.matchAll(re)].map((m) => m[1] as string))].slice(0, 16);
    out.tables = uniq(/"table"\s*:\s*"([A-Za-z0-9_]{1,64})"/g);
    out.ops = uniq(/"op"\s*:\s*"([a-z]{1,16})"/g);
  }
  return out;
}
