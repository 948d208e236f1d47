// What the API's routes share: the error that carries an HTTP status, and
// the parsing of the query parameters several modules take.
import { parseSince } from '../cli/trace-cmd.js';
import type { EventFilter } from '../trace/event.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type Query = Record<string, string | undefined>;

export function numParam(q: Query, name: string): number | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new HttpError(400, `${name}: expected a non-negative number, got "${v}"`);
  return n;
}

export function filterOf(q: Query): EventFilter {
  const f: EventFilter = {};
  if (q.service) f.service = q.service;
  if (q.type) f.type = q.type;
  if (q.path) f.pathPrefix = q.path;
  if (q.pid) {
    const pid = Number(q.pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new HttpError(400, `pid: expected a process id, got "${q.pid}"`);
    f.pid = pid;
  }
  return f;
}

/** JSON schema of the event filter's query parameters (documentation and coercion; the checks above give the messages). */
export const eventFilterQuery = {
  type: 'object',
  properties: {
    service: { type: 'string', description: 'a service name' },
    type: { type: 'string', description: 'an event type or a family (http, file.)' },
    pid: { type: 'string', description: 'a process id (its events and its children’s)' },
    path: { type: 'string', description: 'a path prefix' },
  },
} as const;

/** ?prefix=ADDR[/LEN], for the routes that remove one */
export const prefixQuery = {
  type: 'object',
  required: ['prefix'],
  properties: { prefix: { type: 'string', minLength: 1, description: 'ADDR[/LEN]' } },
} as const;

/** A `since` query parameter: 90s / 10m / 2h / 1d, a date, or ms since the epoch; `def` when absent. */
export function sinceParam(v: string | undefined, def: number): number;
export function sinceParam(v: string | undefined, def?: number): number | undefined;
export function sinceParam(v: string | undefined, def?: number): number | undefined {
  if (v === undefined || v === '') return def;
  if (/^\d{10,}$/.test(v)) return Number(v);
  try {
    return parseSince(v);
  } catch {
    throw new HttpError(400, `since: expected 90s / 10m / 2h / 1d, a date, or ms since the epoch, got "${v}"`);
  }
}
