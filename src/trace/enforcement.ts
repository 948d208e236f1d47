// Kill-on-violation rules in the tracer's kernel maps: the mechanism. Which
// rules are in force (the enforce-mode profiles) is the response module's
// policy (src/response/); this file only turns rules into map entries, laid
// out by the generated ABI (bpf/include/trace.h → abi.generated.ts).
import { isIP } from 'node:net';
import { type BpfObject, parseIPv6, u32 } from '../ebpf/index.js';
import { DENY_PATH_KEY, EXEC_ALLOW_KEY, PEER_KEY, TRACE_ENFORCE } from './abi.generated.js';

/** The kernel's rules for one service: each list given switches its rule on. */
export interface KernelRules {
  /** executables allowed (exact paths) */
  exec?: string[];
  /** path prefixes whose open kills */
  filesDeny?: string[];
  /** peers allowed: HOST:PORT, [V6]:PORT, HOST:*, NET/LEN:*; unix: entries are not judged */
  peers?: string[];
}

/** exec_allow key: service, path bytes (zero-padded) */
export function execAllowKey(service: string, id: number, path: string): Buffer {
  const b = Buffer.from(path, 'utf8');
  if (path.includes('*')) throw new RangeError(`${service}: exec pattern "${path}" cannot be enforced in the kernel (exact paths only)`);
  const k = Buffer.alloc(EXEC_ALLOW_KEY.size);
  k.writeUInt32LE(id, EXEC_ALLOW_KEY.off.service);
  b.copy(k, EXEC_ALLOW_KEY.off.path, 0, EXEC_ALLOW_KEY.sizes.path - 1);
  return k;
}

/** deny_files key: prefixlen, service, path bytes (zero-padded) */
export function denyPathKey(service: string, id: number, prefix: string): Buffer {
  const b = Buffer.from(prefix, 'utf8');
  const max = DENY_PATH_KEY.sizes.path - 1;
  if (!prefix.startsWith('/') || prefix.includes('*') || b.length > max)
    throw new RangeError(`${service}: files_deny "${prefix}" cannot be enforced in the kernel (an absolute path prefix of at most ${max} bytes, no patterns)`);
  const k = Buffer.alloc(DENY_PATH_KEY.size);
  k.writeUInt32LE(32 + b.length * 8, DENY_PATH_KEY.off.prefixlen);
  k.writeUInt32LE(id, DENY_PATH_KEY.off.service);
  b.copy(k, DENY_PATH_KEY.off.path);
  return k;
}

/**
 * peer_allow key for a profile peer, undefined for a unix socket (not
 * judged in the kernel). A network with one port cannot be a prefix (the
 * port's bits come after the address's) and is refused.
 */
export function peerKey(service: string, id: number, peer: string): Buffer | undefined {
  if (peer.startsWith('unix:')) return undefined;
  const bad = (why: string): RangeError => new RangeError(`${service}: peer "${peer}" cannot be enforced in the kernel: ${why}`);
  const m = /^(?:\[([0-9a-fA-F:.]+)(?:\/(\d+))?\]|([0-9.]+)(?:\/(\d+))?):(\d+|\*)$/.exec(peer);
  if (!m) throw bad('expected HOST:PORT, [IPv6]:PORT, HOST:* or NET/LEN:*');
  const v6 = m[1] !== undefined;
  const addr = (v6 ? m[1] : m[3]) as string;
  const lenText = v6 ? m[2] : m[4];
  const port = m[5] as string;
  const a = Buffer.alloc(PEER_KEY.sizes.addr);
  if (v6) {
    if (!isIP(addr) || isIP(addr) !== 6) throw bad(`${addr} is not an IPv6 address`);
    parseIPv6(addr).copy(a);
  } else {
    if (isIP(addr) !== 4) throw bad(`${addr} is not an IPv4 address`);
    // IPv4-mapped: ::ffff:a.b.c.d
    a[10] = 0xff;
    a[11] = 0xff;
    addr.split('.').forEach((o, i) => (a[12 + i] = Number(o)));
  }
  const max = v6 ? 128 : 32;
  const len = lenText === undefined ? max : Number(lenText);
  if (!(len >= 0 && len <= max)) throw bad(`prefix length ${lenText} is out of range`);
  if (len < max && port !== '*') throw bad('a network with one port is not a prefix: use NET/LEN:* or HOST:PORT');
  const addrBits = (v6 ? 0 : 96) + len;
  const k = Buffer.alloc(PEER_KEY.size);
  k.writeUInt32LE(32 + addrBits + (port === '*' ? 0 : 16), PEER_KEY.off.prefixlen);
  k.writeUInt32LE(id, PEER_KEY.off.service);
  a.copy(k, PEER_KEY.off.addr);
  if (port !== '*') {
    const n = Number(port);
    if (!(n >= 0 && n <= 65535)) throw bad(`port ${port} is out of range`);
    k.writeUInt16BE(n, PEER_KEY.off.port);
  }
  return k;
}

type Keys = { exec: Map<string, Buffer>; files: Map<string, Buffer>; peers: Map<string, Buffer> };
const empty = (): Keys => ({ exec: new Map(), files: new Map(), peers: new Map() });

/** The enforce, exec_allow, deny_files and peer_allow maps of a loaded trace object. */
export class KernelEnforcement {
  /** per service: the map keys its enforcement put into the kernel */
  private readonly enforced = new Map<string, Keys>();

  constructor(
    private readonly obj: BpfObject,
    private readonly serviceId: (service: string) => number,
  ) {}

  /**
   * Enforcement for a service; `undefined` lifts it. Everything is checked
   * before a map is touched: a rule that cannot be put into the kernel (a
   * pattern where exact values are needed) is refused with the value named,
   * and what was in force stays. Allow-lists grow before enforcement switches
   * on and shrink after: a listed executable or peer is never killed in between.
   */
  set(service: string, rules: KernelRules | undefined): void {
    const id = this.serviceId(service);
    const enforce = this.obj.map('enforce').typed(u32, u32);
    const maps = { exec: this.obj.map('exec_allow'), files: this.obj.map('deny_files'), peers: this.obj.map('peer_allow') };
    const before = this.enforced.get(service) ?? empty();
    const next = empty();
    let flags = 0;
    if (rules?.exec) {
      flags |= TRACE_ENFORCE.ENFORCE_EXEC;
      for (const p of rules.exec) next.exec.set(p, execAllowKey(service, id, p));
    }
    if (rules?.filesDeny) {
      flags |= TRACE_ENFORCE.ENFORCE_FILES;
      for (const p of rules.filesDeny) next.files.set(p, denyPathKey(service, id, p));
    }
    if (rules?.peers) {
      flags |= TRACE_ENFORCE.ENFORCE_PEERS;
      for (const p of rules.peers) {
        const k = peerKey(service, id, p);
        if (k) next.peers.set(p, k);
      }
    }
    const one = Buffer.from([1]);
    for (const name of ['exec', 'files', 'peers'] as const) for (const [v, k] of next[name]) if (!before[name].has(v)) maps[name].update(k, one);
    if (flags) enforce.update(id, flags);
    else enforce.delete(id);
    for (const name of ['exec', 'files', 'peers'] as const) for (const [v, k] of before[name]) if (!next[name].has(v)) maps[name].delete(k);
    if (flags) this.enforced.set(service, next);
    else this.enforced.delete(service);
  }

  services(): string[] {
    return [...this.enforced.keys()];
  }

  /** What the kernel enforces per service: rule → number of entries. */
  summary(): Record<string, { exec?: number; files_deny?: number; peers?: number }> {
    const out: Record<string, { exec?: number; files_deny?: number; peers?: number }> = {};
    for (const [s, e] of this.enforced)
      out[s] = {
        ...(e.exec.size ? { exec: e.exec.size } : {}),
        ...(e.files.size ? { files_deny: e.files.size } : {}),
        ...(e.peers.size ? { peers: e.peers.size } : {}),
      };
    return out;
  }
}
