// Who may do what through the API, and the defences a local admin API needs
// against browsers (DNS rebinding and cross-site requests reach loopback too).
//
// - Rights are scopes: `status` (GET /v1/status, /metrics), `read` (events,
//   alerts, profiles, exposures, blocks), `admin` (every change). A GET needs
//   `read` unless it is a status route; anything else needs `admin`.
// - On the unix socket (the default listener: root-owned directory, socket
//   mode 0660 with the group `api.group`) the caller is who the kernel says
//   connected (SO_PEERCRED): root has every scope, a member of the group the
//   scopes of `api.group_scopes`.
// - A bearer token (`Authorization: Bearer ...`) grants its scopes; tokens are
//   kept as SHA-256 digests in `api.tokens_file` (root-owned, mode 0600 or
//   0400). A TCP listener takes tokens only: nothing is anonymous.
// - Against browsers: the Host header must name the listener, an Origin or
//   Sec-Fetch-Site from another site is refused, a POST must be JSON (never a
//   form a page could send without a preflight), and no CORS header is ever
//   sent. Every refusal is counted by reason; the answer says no more than
//   "unauthorized" or "forbidden".
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parse as parseYaml } from 'yaml';
import { peerCredentials } from '../sys/peercred.js';
import { assertRootOnlyWritable, UntrustedFileError } from '../sys/trusted.js';
import { SCOPES, type Scope } from './scopes.js';

export { SCOPES, type Scope };

/** Who made a request: the peer on the unix socket, or a token's name. */
export type Caller =
  | { kind: 'unix'; uid: number; pid: number; gid: number; scopes: ReadonlySet<Scope> }
  | { kind: 'token'; name: string; scopes: ReadonlySet<Scope> };

export interface AccessOptions {
  listen: string;
  /** scopes of a non-root peer on the unix socket (a member of the socket's group) */
  groupScopes: readonly Scope[];
  tokens: readonly ApiToken[];
}

export interface ApiToken {
  name: string;
  scopes: Scope[];
  /** hex SHA-256 of the token */
  sha256: string;
}

export type RefusalReason = 'unauthenticated' | 'scope' | 'host' | 'origin' | 'content_type';

export class AccessError extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(`${where}: ${message}`);
    this.name = 'AccessError';
  }
}

/**
 * Read the tokens file: a YAML list of {name, scopes, sha256}. Refused, with
 * the path named, unless it is a regular file owned by root and readable by
 * nobody else (it grants the rights to change the data plane).
 */
export function loadTokens(file: string): ApiToken[] {
  // root's alone to write (the shared check for files that steer the agent), and, holding credentials, to read
  try {
    assertRootOnlyWritable(file, 'the API tokens file');
  } catch (err) {
    if (err instanceof UntrustedFileError) throw new AccessError(file, err.message.slice(file.length + 2));
    throw new AccessError(file, `cannot read the API tokens: ${(err as Error).message}`);
  }
  const mode = statSync(file).mode;
  if ((mode & 0o077) !== 0)
    throw new AccessError(file, `the API tokens file must not be readable or writable by group or others (mode ${(mode & 0o777).toString(8)}; chmod 600)`);
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'), { logLevel: 'error' });
  } catch (err) {
    throw new AccessError(file, `invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const list = (raw as { tokens?: unknown })?.tokens;
  if (!Array.isArray(list)) throw new AccessError(file, 'expected `tokens:` with a list of {name, scopes, sha256}');
  const names = new Set<string>();
  return list.map((t, i) => {
    const where = `${file}: tokens[${i}]`;
    const o = t as Record<string, unknown>;
    if (!o || typeof o !== 'object') throw new AccessError(where, 'expected a mapping {name, scopes, sha256}');
    for (const k of Object.keys(o))
      if (!['name', 'scopes', 'sha256'].includes(k)) throw new AccessError(`${where}.${k}`, 'unknown field (known: name, scopes, sha256)');
    if (typeof o.name !== 'string' || !/^[\w.@-]{1,64}$/.test(o.name))
      throw new AccessError(`${where}.name`, 'expected a name of letters, digits, . _ @ - (at most 64)');
    if (names.has(o.name)) throw new AccessError(`${where}.name`, `"${o.name}" is used twice`);
    names.add(o.name);
    if (!Array.isArray(o.scopes) || o.scopes.length === 0 || !o.scopes.every((s) => SCOPES.includes(s as Scope)))
      throw new AccessError(`${where}.scopes`, `expected a list of ${SCOPES.join(', ')}`);
    if (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256))
      throw new AccessError(`${where}.sha256`, 'expected the hex SHA-256 of the token (e.g. `sha256sum` of it), never the token itself');
    return { name: o.name, scopes: o.scopes as Scope[], sha256: o.sha256 };
  });
}

/** The scope a request needs. */
export function requiredScope(method: string, path: string): Scope {
  if (method === 'GET' || method === 'HEAD') return path === '/v1/status' || path === '/metrics' ? 'status' : 'read';
  return 'admin';
}

/** The Host values that name this listener (TCP); undefined for a unix socket, which a browser cannot reach. */
export function allowedHosts(listen: string): Set<string> | undefined {
  if (listen.startsWith('unix:')) return undefined;
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i);
  const port = listen.slice(i + 1);
  const names = new Set([host, host.replace(/^\[|\]$/g, '')]);
  if (/^127\./.test(host) || host === 'localhost' || host === '[::1]') for (const n of ['localhost', '127.0.0.1', '[::1]']) names.add(n);
  return new Set([...names].map((n) => `${n.includes(':') && !n.startsWith('[') ? `[${n}]` : n}:${port}`));
}

const ALL: ReadonlySet<Scope> = new Set(SCOPES);

export class AccessControl {
  readonly refused: Record<RefusalReason, number> = { unauthenticated: 0, scope: 0, host: 0, origin: 0, content_type: 0 };
  private readonly hosts: Set<string> | undefined;
  private readonly digests: { token: ApiToken; digest: Buffer }[];
  private readonly groupScopes: ReadonlySet<Scope>;
  private readonly unix: boolean;
  readonly listen: string;

  constructor(opts: AccessOptions) {
    this.listen = opts.listen;
    this.hosts = allowedHosts(opts.listen);
    this.unix = opts.listen.startsWith('unix:');
    this.digests = opts.tokens.map((token) => ({ token, digest: Buffer.from(token.sha256, 'hex') }));
    this.groupScopes = new Set(opts.groupScopes);
  }

  /** The caller of a request, or undefined when it has no credentials we accept. */
  caller(req: FastifyRequest): Caller | undefined {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer ([\x21-\x7e]{16,512})$/.exec(auth);
      if (!m) return undefined;
      const d = createHash('sha256')
        .update(m[1] as string)
        .digest();
      // compare with every token in constant time, so timing says nothing of which is close
      let found: ApiToken | undefined;
      for (const t of this.digests) if (timingSafeEqual(d, t.digest)) found = t.token;
      return found ? { kind: 'token', name: found.name, scopes: new Set(found.scopes) } : undefined;
    }
    if (!this.unix) return undefined;
    const peer = peerCredentials(req.raw.socket);
    if (!peer) return undefined;
    return { kind: 'unix', ...peer, scopes: peer.uid === 0 ? ALL : this.groupScopes };
  }

  private refuse(reply: FastifyReply, reason: RefusalReason): FastifyReply {
    this.refused[reason]++;
    if (reason === 'unauthenticated') return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized' });
    if (reason === 'content_type') return reply.code(415).send({ error: 'a request that changes something must be JSON (content-type: application/json)' });
    return reply.code(403).send({ error: 'forbidden' });
  }

  /** Register the checks and the response headers on every route. */
  install(app: FastifyInstance): void {
    app.decorateRequest('caller', undefined);
    app.addHook('onRequest', async (req, reply) => {
      reply.headers(SECURITY_HEADERS);
      if (this.hosts && !this.hosts.has(String(req.headers.host ?? ''))) return this.refuse(reply, 'host');
      const origin = req.headers.origin;
      if (origin !== undefined && !(this.hosts && [...this.hosts].some((h) => origin === `http://${h}` || origin === `https://${h}`)))
        return this.refuse(reply, 'origin');
      const site = req.headers['sec-fetch-site'];
      if (site !== undefined && site !== 'same-origin' && site !== 'none') return this.refuse(reply, 'origin');
      const caller = this.caller(req);
      if (!caller) return this.refuse(reply, 'unauthenticated');
      const path = req.url.split('?')[0] ?? '';
      if (!caller.scopes.has(requiredScope(req.method, path))) return this.refuse(reply, 'scope');
      if (req.method === 'POST' && !/^application\/json\s*(;|$)/i.test(String(req.headers['content-type'] ?? ''))) return this.refuse(reply, 'content_type');
      (req as FastifyRequest & { caller?: Caller }).caller = caller;
      return undefined;
    });
  }
}

/** What a local admin API answers with: nothing cached, nothing framed or sniffed, no CORS. */
export const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
} as const;

/** Who, in a record of a change: the peer's uid and pid, or the token's name. */
export function describeCaller(c: Caller): Record<string, unknown> {
  return c.kind === 'unix' ? { via: 'unix', uid: c.uid, gid: c.gid, pid: c.pid } : { via: 'token', token: c.name };
}
