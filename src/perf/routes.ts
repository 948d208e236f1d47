// Route templates for OpenStack APIs, learned per service: a request's path
// becomes the route it was served by (`/v2.0/ports/{port_id}`,
// `/v3/users/{user_id}/projects`, `/v2.1/{project_id}/servers/{server_id}`),
// so a metric carries one label per route, never one per object id.
//
// Two rules, as the HTTP semantic conventions ask (a route is "low
// cardinality"): a segment that looks like an id (a UUID, Keystone's 32-hex
// ids, a number, a request id) is a parameter named after the collection
// before it; a segment position that has taken more distinct values than
// `maxValues` under the same parent is a parameter from then on (names a user
// chose, like a Swift object or a DNS zone). A service that still makes more
// than `maxRoutes` routes has the rest counted under `{other}`.

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const HEX_ID = /^[0-9a-f]{16,64}$/i;
const NUMBER = /^\d+$/;
const REQUEST_ID = /^req-[0-9a-f-]{36}$/i;
const VERSION = /^v\d+(\.\d+)?$/;
/** a format suffix some APIs accept on a resource (`/v2.0/ports/ID.json`) */
const SUFFIX = /\.(json|xml)$/;

/** `ports` → `port`, `os-keypairs` → `keypair`, `policies` → `policy`, `addresses` → `address`. */
export function singular(collection: string): string {
  let s = collection.replace(/^os-/, '').replace(/[^A-Za-z0-9]+/g, '_');
  if (/ies$/.test(s)) s = `${s.slice(0, -3)}y`;
  else if (/(ss|x|ch|sh)es$/.test(s)) s = s.slice(0, -2);
  else if (/[^su]s$/.test(s)) s = s.slice(0, -1);
  return s.toLowerCase() || 'id';
}

/** Is this segment an object id, whatever the service? */
export function looksLikeId(seg: string): boolean {
  return UUID.test(seg) || HEX_ID.test(seg) || NUMBER.test(seg) || REQUEST_ID.test(seg);
}

interface Node {
  /** literal children seen under this node */
  literals: Map<string, Node>;
  /** the parameter child, once ids or too many literals were seen here */
  param?: { name: string; node: Node /** 'names': every unknown word here is one */; kind: 'id' | 'names' };
}

const node = (): Node => ({ literals: new Map() });

export interface RouteStats {
  services: number;
  routes: number;
  /** requests counted under `{other}` because a service had made maxRoutes routes */
  overflow: number;
}

export class RouteTemplates {
  private readonly roots = new Map<string, Node>();
  private readonly known = new Map<string, Set<string>>();
  private overflowCount = 0;

  constructor(private readonly opts: { maxValues: number; maxRoutes: number } = { maxValues: 50, maxRoutes: 500 }) {}

  /** The route of a request target (query string dropped). */
  route(service: string, target: string): string {
    const path = (target.split('?')[0] ?? '').split('#')[0] ?? '';
    const segs = path.split('/').filter((s) => s !== '');
    let root = this.roots.get(service);
    if (!root) {
      root = node();
      this.roots.set(service, root);
    }
    let at = root;
    const out: string[] = [];
    for (let i = 0; i < segs.length; i++) {
      const raw = segs[i] as string;
      let seg = raw;
      try {
        seg = decodeURIComponent(raw);
      } catch {
        // a malformed escape stays as it was sent
      }
      const bare = seg.replace(SUFFIX, '');
      const prev = i > 0 ? (segs[i - 1] as string) : '';
      const name = i === 0 || VERSION.test(prev) ? (looksLikeId(bare) && HEX_ID.test(bare) ? 'project_id' : 'id') : `${singular(prev)}_id`;
      if (at.param?.kind === 'names' && !at.literals.has(seg)) {
        out.push(`{${at.param.name}}`);
        at = at.param.node;
        continue;
      }
      if (looksLikeId(bare)) {
        if (!at.param) at.param = { name, node: node(), kind: 'id' };
        out.push(`{${at.param.name}}`);
        at = at.param.node;
        continue;
      }
      let next = at.literals.get(seg);
      if (!next) {
        if (at.literals.size >= this.opts.maxValues) {
          // this position takes names, not a fixed set of words: a parameter from now on
          if (!at.param) at.param = { name: VERSION.test(prev) || i === 0 ? 'name' : singular(prev), node: node(), kind: 'names' };
          else at.param.kind = 'names';
          out.push(`{${at.param.name}}`);
          at = at.param.node;
          continue;
        }
        next = node();
        at.literals.set(seg, next);
      }
      out.push(seg);
      at = next;
    }
    const route = `/${out.join('/')}`;
    let set = this.known.get(service);
    if (!set) {
      set = new Set();
      this.known.set(service, set);
    }
    if (!set.has(route)) {
      if (set.size >= this.opts.maxRoutes) {
        this.overflowCount++;
        return '{other}';
      }
      set.add(route);
    }
    return route;
  }

  stats(): RouteStats {
    let routes = 0;
    for (const s of this.known.values()) routes += s.size;
    return { services: this.known.size, routes, overflow: this.overflowCount };
  }
}
