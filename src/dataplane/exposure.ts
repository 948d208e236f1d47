// The Exposure model: an address or prefix whose traffic the fast path takes
// straight to a target interface, and why. Validation names the bad field.
import { CodecError, formatIPv6, mac as macCodec, parsePrefix, parseIPv6 } from '../ebpf/index.js';

export interface Exposure {
  /** "198.51.100.10", "198.51.100.0/24", "2001:db8::10" or "2001:db8:1::/64". */
  prefix: string;
  /** Target interface (br-ex, or the VM side of the node). */
  target: string;
  /** Destination MAC: the VM port's, or the OVN gateway port's. */
  mac: string;
  /** VLAN id on the target side (0 or absent: untagged). */
  vlan?: number;
  /** Who owns it: e.g. "neutron-port:<uuid>", "floating-ip:<uuid>". */
  owner: string;
  /** Why it is exposed, in the operator's words. */
  reason?: string;
}

/** A validated exposure with its canonical key. */
export interface NormalizedExposure extends Required<Omit<Exposure, 'reason'>> {
  reason: string;
  family: 4 | 6;
  prefixlen: number;
  /** Canonical address (host part of the prefix zeroed) */
  addr: string;
  /** "addr/len": the identity of the exposure in the maps */
  key: string;
  /** /32 or /128: the exact-match tables; otherwise the LPM tables */
  exact: boolean;
}

export class ExposureError extends Error {
  constructor(
    readonly index: number | undefined,
    readonly field: string,
    message: string,
  ) {
    super(`${index === undefined ? '' : `exposure ${index}: `}${field}: ${message}`);
    this.name = 'ExposureError';
  }
}

function maskV4(addr: string, len: number): string {
  const n = addr
    .split('.')
    .map(Number)
    .reduce((a, b) => a * 256 + b, 0);
  const masked = len === 0 ? 0 : (n - (n % 2 ** (32 - len))) >>> 0;
  return [24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.');
}

function maskV6(addr: string, len: number): string {
  const b = parseIPv6(addr);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, len - i * 8));
    b[i] = (b[i] as number) & (0xff << (8 - bits)) & 0xff;
  }
  return formatIPv6(b);
}

/**
 * The canonical form of a prefix: host bits cleared, "addr/len". The maps,
 * the blocklist and the BGP announcements all key on it.
 */
export function canonicalPrefix(text: string, index?: number): { family: 4 | 6; prefixlen: number; addr: string; key: string } {
  let p: ReturnType<typeof parsePrefix>;
  try {
    if (typeof text !== 'string') throw new CodecError('prefix', 'expected a string');
    p = parsePrefix(text);
  } catch (err) {
    throw new ExposureError(index, 'prefix', err instanceof CodecError ? err.message.replace(/^prefix: /, '') : String(err));
  }
  const addr = p.family === 4 ? maskV4(p.addr, p.prefixlen) : maskV6(p.addr, p.prefixlen);
  return { family: p.family, prefixlen: p.prefixlen, addr, key: `${addr}/${p.prefixlen}` };
}

// Exposures are treated as immutable once made: a source that hands out the
// same object again (OVN does for unchanged rows) is not parsed again.
const normalized = new WeakMap<
  Exposure,
  { n: NormalizedExposure; prefix: string; target: string; mac: string; vlan: number | undefined; owner: string; reason: string | undefined }
>();

/** Validate one exposure; throws ExposureError naming the field. */
export function normalizeExposure(e: Exposure, index?: number): NormalizedExposure {
  if (e === null || typeof e !== 'object') throw new ExposureError(index, 'exposure', 'expected an object');
  const memo = normalized.get(e);
  // the check on the fields keeps this right even for a caller that mutates its object
  if (
    memo &&
    memo.prefix === e.prefix &&
    memo.target === e.target &&
    memo.mac === e.mac &&
    memo.vlan === e.vlan &&
    memo.owner === e.owner &&
    memo.reason === e.reason
  )
    return memo.n;
  const n = normalizeUncached(e, index);
  normalized.set(e, { n, prefix: e.prefix, target: e.target, mac: e.mac, vlan: e.vlan, owner: e.owner, reason: e.reason });
  return n;
}

function normalizeUncached(e: Exposure, index?: number): NormalizedExposure {
  const p = canonicalPrefix(e.prefix, index);
  if (typeof e.target !== 'string' || !/^[A-Za-z0-9_.:@-]{1,15}$/.test(e.target)) {
    throw new ExposureError(index, 'target', `"${String(e.target)}" is not an interface name`);
  }
  try {
    macCodec.encode(e.mac, Buffer.alloc(6), 0);
  } catch {
    throw new ExposureError(index, 'mac', `"${String(e.mac)}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  }
  const vlan = e.vlan ?? 0;
  if (!Number.isInteger(vlan) || vlan < 0 || vlan > 4094) throw new ExposureError(index, 'vlan', `expected 0..4094, got ${String(e.vlan)}`);
  if (typeof e.owner !== 'string' || e.owner.trim() === '') throw new ExposureError(index, 'owner', 'missing: say who owns this exposure');
  const addr = p.addr;
  if (p.family === 4 && p.prefixlen === 32 && (addr === '0.0.0.0' || addr === '255.255.255.255')) {
    throw new ExposureError(index, 'prefix', `${addr} cannot be exposed`);
  }
  const max = p.family === 4 ? 32 : 128;
  return {
    prefix: e.prefix,
    target: e.target,
    mac: e.mac.toLowerCase().replace(/-/g, ':'),
    vlan,
    owner: e.owner,
    reason: e.reason ?? '',
    family: p.family,
    prefixlen: p.prefixlen,
    addr,
    key: p.key,
    exact: p.prefixlen === max,
  };
}

/**
 * Validate a whole desired set: every exposure, and no address claimed by two
 * owners. All or nothing: the first error is thrown before anything is applied.
 */
export function validateExposures(list: readonly Exposure[]): Map<string, NormalizedExposure> {
  if (!Array.isArray(list)) throw new ExposureError(undefined, 'exposures', 'expected a list');
  const out = new Map<string, NormalizedExposure>();
  list.forEach((e, i) => {
    const n = normalizeExposure(e, i);
    const prev = out.get(n.key);
    if (prev && prev.owner !== n.owner) {
      throw new ExposureError(i, 'prefix', `${n.key} is claimed by both "${prev.owner}" and "${n.owner}"`);
    }
    out.set(n.key, n);
  });
  return out;
}
