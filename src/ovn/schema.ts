// OVSDB schemas and data (RFC 7047 §3 and §5.1) turned into plain JavaScript
// values, checked against the schema on the way in: a value that does not
// fit its column is refused with the table, row and column it came from, so
// a bad message can be reported and never reaches the replica.
//
// In the replica a column holds
//   - an atom (string, number, boolean; a uuid as its string) when the column
//     is exactly one value (min 1, max 1, no value type),
//   - an array of atoms when it is a set (including the optional 0..1 case),
//   - a string-keyed object when it is a map.

export type Atom = string | number | boolean;
export type Value = Atom | Atom[] | Record<string, Atom>;
export interface Row {
  _uuid: string;
  [column: string]: Value;
}

export type AtomType = 'integer' | 'real' | 'boolean' | 'string' | 'uuid';
export interface ColumnType {
  key: AtomType;
  value?: AtomType;
  min: number;
  max: number;
  kind: 'scalar' | 'set' | 'map';
}
export interface TableSchema {
  name: string;
  columns: Map<string, ColumnType>;
}
export interface DatabaseSchema {
  name: string;
  version: string;
  tables: Map<string, TableSchema>;
}

export class OvsdbDataError extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(`${where}: ${message}`);
    this.name = 'OvsdbDataError';
  }
}

const ATOM_TYPES = new Set<AtomType>(['integer', 'real', 'boolean', 'string', 'uuid']);

function atomType(v: unknown, where: string): AtomType {
  const t = typeof v === 'object' && v !== null ? (v as { type?: unknown }).type : v;
  if (typeof t !== 'string' || !ATOM_TYPES.has(t as AtomType)) throw new OvsdbDataError(where, `unknown atomic type ${JSON.stringify(t)}`);
  return t as AtomType;
}

function columnType(raw: unknown, where: string): ColumnType {
  if (typeof raw === 'string') return { key: atomType(raw, where), min: 1, max: 1, kind: 'scalar' };
  if (typeof raw !== 'object' || raw === null) throw new OvsdbDataError(where, 'column type must be a string or an object');
  const o = raw as { key?: unknown; value?: unknown; min?: unknown; max?: unknown };
  const key = atomType(o.key, `${where}.key`);
  const value = o.value === undefined ? undefined : atomType(o.value, `${where}.value`);
  const min = o.min === undefined ? 1 : Number(o.min);
  const max = o.max === undefined ? 1 : o.max === 'unlimited' ? Number.POSITIVE_INFINITY : Number(o.max);
  if (!Number.isFinite(min) || Number.isNaN(max)) throw new OvsdbDataError(where, 'bad min or max');
  const kind = value !== undefined ? 'map' : min === 1 && max === 1 ? 'scalar' : 'set';
  return { key, ...(value ? { value } : {}), min, max, kind };
}

/** Parse the result of `get_schema`. */
export function parseSchema(raw: unknown): DatabaseSchema {
  if (typeof raw !== 'object' || raw === null) throw new OvsdbDataError('schema', 'not an object');
  const o = raw as { name?: unknown; version?: unknown; tables?: unknown };
  if (typeof o.name !== 'string') throw new OvsdbDataError('schema', 'no name');
  if (typeof o.tables !== 'object' || o.tables === null) throw new OvsdbDataError(`schema ${o.name}`, 'no tables');
  const tables = new Map<string, TableSchema>();
  for (const [tname, t] of Object.entries(o.tables as Record<string, unknown>)) {
    const cols = (t as { columns?: unknown }).columns;
    if (typeof cols !== 'object' || cols === null) throw new OvsdbDataError(`schema ${o.name}.${tname}`, 'no columns');
    const columns = new Map<string, ColumnType>();
    for (const [cname, c] of Object.entries(cols as Record<string, unknown>)) {
      columns.set(cname, columnType((c as { type?: unknown }).type, `schema ${o.name}.${tname}.${cname}`));
    }
    tables.set(tname, { name: tname, columns });
  }
  return { name: o.name, version: typeof o.version === 'string' ? o.version : '', tables };
}

function decodeAtom(v: unknown, t: AtomType, where: string): Atom {
  switch (t) {
    case 'string':
      if (typeof v === 'string') return v;
      break;
    case 'integer':
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      break;
    case 'real':
      if (typeof v === 'number') return v;
      break;
    case 'boolean':
      if (typeof v === 'boolean') return v;
      break;
    case 'uuid':
      if (Array.isArray(v) && v.length === 2 && (v[0] === 'uuid' || v[0] === 'named-uuid') && typeof v[1] === 'string') return v[1];
      break;
  }
  throw new OvsdbDataError(where, `expected ${t}, got ${JSON.stringify(v)?.slice(0, 80)}`);
}

function decodeSet(v: unknown, t: AtomType, where: string): Atom[] {
  if (Array.isArray(v) && v[0] === 'set') {
    if (v.length !== 2 || !Array.isArray(v[1])) throw new OvsdbDataError(where, 'malformed ["set", [...]]');
    return (v[1] as unknown[]).map((a) => decodeAtom(a, t, where));
  }
  return [decodeAtom(v, t, where)];
}

function decodeMap(v: unknown, ct: ColumnType, where: string): Record<string, Atom> {
  if (!Array.isArray(v) || v[0] !== 'map' || v.length !== 2 || !Array.isArray(v[1]))
    throw new OvsdbDataError(where, `expected ["map", [...]], got ${JSON.stringify(v)?.slice(0, 80)}`);
  const out: Record<string, Atom> = {};
  for (const pair of v[1] as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new OvsdbDataError(where, 'malformed map pair');
    out[String(decodeAtom(pair[0], ct.key, where))] = decodeAtom(pair[1], ct.value as AtomType, where);
  }
  return out;
}

/** Wire datum → replica value for a column of type `ct`. */
export function decodeDatum(v: unknown, ct: ColumnType, where: string): Value {
  if (ct.kind === 'map') return decodeMap(v, ct, where);
  if (ct.kind === 'set') return decodeSet(v, ct.key, where);
  return decodeAtom(v, ct.key, where);
}

/** Apply an update2 "modify" diff to the old value of a column (ovsdb-server(7) §4.1.14). */
export function applyDiff(old: Value | undefined, diff: unknown, ct: ColumnType, where: string): Value {
  if (ct.kind === 'scalar') return decodeAtom(diff, ct.key, where);
  // an optional single value (0..1) is sent as its new value, not as a difference
  if (ct.kind === 'set' && ct.max === 1) return decodeSet(diff, ct.key, where);
  if (ct.kind === 'set') {
    const cur = new Set<Atom>(Array.isArray(old) ? old : []);
    for (const a of decodeSet(diff, ct.key, where)) {
      if (cur.has(a)) cur.delete(a);
      else cur.add(a);
    }
    return [...cur];
  }
  const cur: Record<string, Atom> = { ...(old && typeof old === 'object' && !Array.isArray(old) ? old : {}) };
  const d = decodeMap(diff, ct, where);
  for (const [k, val] of Object.entries(d)) {
    if (!(k in cur)) cur[k] = val;
    else if (cur[k] === val) delete cur[k];
    else cur[k] = val;
  }
  return cur;
}

/** The value a column has when a row omits it (RFC 7047 §5.1: defaults). */
export function defaultValue(ct: ColumnType): Value {
  if (ct.kind === 'map') return {};
  if (ct.kind === 'set') return [];
  switch (ct.key) {
    case 'integer':
    case 'real':
      return 0;
    case 'boolean':
      return false;
    case 'uuid':
      return '00000000-0000-0000-0000-000000000000';
    default:
      return '';
  }
}

/** JavaScript value → wire datum, for conditions and transactions. */
export function encodeDatum(v: Value, ct?: ColumnType): unknown {
  const atom = (a: Atom, t?: AtomType): unknown => (t === 'uuid' ? ['uuid', a] : a);
  if (Array.isArray(v)) return ['set', v.map((a) => atom(a, ct?.key))];
  if (typeof v === 'object') return ['map', Object.entries(v).map(([k, val]) => [atom(k, ct?.key), atom(val, ct?.value)])];
  return atom(v, ct?.key);
}
