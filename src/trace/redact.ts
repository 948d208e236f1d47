// Secrets never leave the decoder. Everything the tracer captures passes
// through these functions before it becomes an event: HTTP heads and bodies
// (Keystone auth bodies carry passwords, headers carry tokens), SQL text
// (pymysql interpolates values client-side, so password hashes and
// credential blobs travel as literals), MySQL logins, and command lines.
// Captures are truncated at arbitrary bytes, so every pattern also handles
// a value cut off by the end of the capture: the rest is redacted.

export const REDACTED = '<redacted>';

/** Header names whose values are credentials. */
const SECRET_HEADERS = new Set([
  'x-auth-token',
  'x-subject-token',
  'x-service-token',
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-amz-security-token',
  'x-storage-token',
  'x-auth-key',
  'openstack-auth-receipt',
]);

export function isSecretHeader(name: string): boolean {
  return SECRET_HEADERS.has(name.toLowerCase());
}

// JSON keys whose string values are secrets: Keystone's password, totp
// passcode, application credential secret, token ids; Nova's adminPass;
// credential blobs; anything named like a password, secret or token
const SECRET_KEY = '(?:[A-Za-z_]*(?:password|passwd|secret|passcode|token|credential|private_?key|adminpass|api_?key)[A-Za-z_]*|blob)';
// "key": "value" — value possibly unterminated (truncated capture)
const JSON_SECRET = new RegExp(`("${SECRET_KEY}"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*("|$|\\\\$)`, 'gi');
// {"token": {"id": "..."}} (the token auth method)
const JSON_TOKEN_ID = /("token"\s*:\s*\{\s*"id"\s*:\s*)"(?:[^"\\]|\\.)*("|$|\\$)/gi;
// Fernet tokens and JWTs wherever they appear
const FERNET = /gAAAAA[A-Za-z0-9_=-]{20,}/g;
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g;

/** Redact secret values in (possibly truncated) JSON text. */
export function redactJsonText(text: string): string {
  return text
    .replace(JSON_SECRET, (_m, key: string, end: string) => `${key}"${REDACTED}${end === '"' ? '"' : ''}`)
    .replace(JSON_TOKEN_ID, (_m, key: string, end: string) => `${key}"${REDACTED}${end === '"' ? '"' : ''}`)
    .replace(FERNET, REDACTED)
    .replace(JWT, REDACTED);
}

const SECRET_PARAM = /([?&;](?:[^=&;#]*(?:password|passwd|secret|token|signature|key|credential)[^=&;#]*)=)[^&;#]*/gi;

/** Redact secret-looking query parameters of a request target. */
export function redactUrl(target: string): string {
  return target.replace(SECRET_PARAM, `$1${REDACTED}`).replace(FERNET, REDACTED);
}

// user:password@ in URLs (database connection strings on command lines)
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi;

/** An endpoint an operator configured (a broker, a collector), fit to show: no password, no secret parameter. */
export function redactEndpoint(url: string): string {
  return redactUrl(url.replace(URL_PASSWORD, `$1${REDACTED}@`));
}
const SECRET_FLAG = /^--?(?:os-)?(?:bootstrap-|admin-|db-|database-)?(?:password|passwd|pass|token|secret|auth-key|key-secret|api-key|passphrase)$/i;
const SECRET_FLAG_EQ = /^(--?(?:os-)?(?:[a-z-]*-)?(?:password|passwd|pass|token|secret|api-key|passphrase)=).*$/i;
const SECRET_ENV = /^([A-Za-z_][A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY)[A-Za-z0-9_]*=).*$/i;
const MYSQL_CLIENTS = /(^|\/)(mysql|mariadb|mysqldump|mariadb-dump|mysqladmin|mariadb-admin)$/;

/** Redact secrets in a command line: --password X, --password=X, -pX (MySQL clients), URLs, VAR=X. */
export function redactArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  const mysql = MYSQL_CLIENTS.test(argv[0] ?? '');
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i] as string;
    if (SECRET_FLAG.test(a) && i + 1 < argv.length) {
      out.push(a, REDACTED);
      i++;
      continue;
    }
    a = a.replace(SECRET_FLAG_EQ, `$1${REDACTED}`).replace(SECRET_ENV, `$1${REDACTED}`).replace(URL_PASSWORD, `$1${REDACTED}@`);
    if (mysql && /^-p.+/.test(a)) a = `-p${REDACTED}`;
    out.push(redactJsonText(a));
  }
  return out;
}

const SQL_SENSITIVE = /password|passwd|secret|credential|\bblob\b|token|private_key|\btotp\b|identified\s+by|authentication_string/i;
// a string literal, possibly unterminated at the end of the capture
const SQL_STRING = /'(?:[^'\\]|\\.|'')*(?:'|$)|"(?:[^"\\]|\\.|"")*(?:"|$)/g;
const BCRYPT = /\$2[aby]?\$\d\d\$[./A-Za-z0-9]{10,}/g;
const SHA_CRYPT = /\$[56]\$[^\s'"$]*\$[./A-Za-z0-9]{10,}/g;

/**
 * Redact SQL text. A statement that mentions a secret-bearing column or
 * clause (password, secret, credential, token, IDENTIFIED BY, ...) has every
 * string literal replaced; password hashes and tokens are replaced anywhere.
 */
export function redactSql(text: string): string {
  let out = text;
  if (SQL_SENSITIVE.test(out)) out = out.replace(SQL_STRING, (lit) => `${lit[0]}${REDACTED}${lit.length > 1 && lit.endsWith(lit[0] as string) ? lit[0] : ''}`);
  return out.replace(BCRYPT, REDACTED).replace(SHA_CRYPT, REDACTED).replace(FERNET, REDACTED).replace(JWT, REDACTED);
}
