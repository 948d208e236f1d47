// Typed codecs between JS values and the bytes of BPF map keys, values and
// ring buffer records. Layouts follow C natural alignment (the BPF target's),
// so a struct codec declared field by field matches the C struct; a test
// checks each codec that mirrors a kernel ABI struct against the object's BTF.
import { isIPv4, isIPv6 } from 'node:net';

export interface Codec<T> {
  /** Bytes the value occupies. */
  readonly size: number;
  /** C alignment of the type. */
  readonly align: number;
  /** What the codec describes, for error messages. */
  readonly describe: string;
  encode(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
  /**
   * A JS expression decoding the value from DataView `dv` at byte offset `o`
   * (both given as source text); struct codecs inline it into a generated
   * decoder, which is what makes decoding millions of records a second cheap.
   */
  readonly inline?: (dv: string, o: string) => string;
}

export type CodecValue<C> = C extends Codec<infer T> ? T : never;

/** Bad input for a codec: says which field and what was wrong. */
export class CodecError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'CodecError';
  }
}

function intCodec(describe: string, size: 1 | 2 | 4, signed: boolean, bigEndian = false): Codec<number> {
  const min = signed ? -(2 ** (size * 8 - 1)) : 0;
  const max = signed ? 2 ** (size * 8 - 1) - 1 : 2 ** (size * 8) - 1;
  const getter = `get${signed ? 'Int' : 'Uint'}${size * 8}`;
  return {
    size,
    align: size,
    describe,
    inline: (dv, o) => `${dv}.${getter}(${o}${size === 1 ? '' : bigEndian ? ', false' : ', true'})`,
    encode(v, buf, off) {
      if (!Number.isInteger(v) || v < min || v > max) {
        throw new CodecError(describe, `expected an integer in [${min}, ${max}], got ${String(v)}`);
      }
      if (size === 1) signed ? buf.writeInt8(v, off) : buf.writeUInt8(v, off);
      else if (size === 2) {
        if (bigEndian) signed ? buf.writeInt16BE(v, off) : buf.writeUInt16BE(v, off);
        else signed ? buf.writeInt16LE(v, off) : buf.writeUInt16LE(v, off);
      } else if (bigEndian) signed ? buf.writeInt32BE(v, off) : buf.writeUInt32BE(v, off);
      else signed ? buf.writeInt32LE(v, off) : buf.writeUInt32LE(v, off);
    },
    decode(buf, off) {
      if (size === 1) return signed ? buf.readInt8(off) : buf.readUInt8(off);
      if (size === 2) {
        if (bigEndian) return signed ? buf.readInt16BE(off) : buf.readUInt16BE(off);
        return signed ? buf.readInt16LE(off) : buf.readUInt16LE(off);
      }
      if (bigEndian) return signed ? buf.readInt32BE(off) : buf.readUInt32BE(off);
      return signed ? buf.readInt32LE(off) : buf.readUInt32LE(off);
    },
  };
}

function int64Codec(describe: string, signed: boolean, bigEndian = false): Codec<bigint> {
  const min = signed ? -(1n << 63n) : 0n;
  const max = signed ? (1n << 63n) - 1n : (1n << 64n) - 1n;
  const getter = signed ? 'getBigInt64' : 'getBigUint64';
  return {
    size: 8,
    align: 8,
    describe,
    inline: (dv, o) => `${dv}.${getter}(${o}, ${bigEndian ? 'false' : 'true'})`,
    encode(v, buf, off) {
      const b = typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : v;
      if (typeof b !== 'bigint' || b < min || b > max) {
        throw new CodecError(describe, `expected an integer in [${min}, ${max}], got ${String(v)}`);
      }
      if (bigEndian) signed ? buf.writeBigInt64BE(b, off) : buf.writeBigUInt64BE(b, off);
      else signed ? buf.writeBigInt64LE(b, off) : buf.writeBigUInt64LE(b, off);
    },
    decode(buf, off) {
      if (bigEndian) return signed ? buf.readBigInt64BE(off) : buf.readBigUInt64BE(off);
      return signed ? buf.readBigInt64LE(off) : buf.readBigUInt64LE(off);
    },
  };
}

// Host byte order is little-endian on every architecture this runtime loads on (x86_64, arm64).
export const u8 = intCodec('u8', 1, false);
export const i8 = intCodec('i8', 1, true);
export const u16 = intCodec('u16', 2, false);
export const i16 = intCodec('i16', 2, true);
export const u32 = intCodec('u32', 4, false);
export const i32 = intCodec('i32', 4, true);
export const u64 = int64Codec('u64', false);
export const i64 = int64Codec('i64', true);
/** Network byte order (__be16 / __be32 / __be64). */
export const be16 = intCodec('be16', 2, false, true);
export const be32 = intCodec('be32', 4, false, true);
export const be64 = int64Codec('be64', false, true);

/** A u64 counter decoded as a JS number (exact up to 2^53). */
export const u64n: Codec<number> = {
  size: 8,
  align: 8,
  describe: 'u64 (number)',
  inline: (dv, o) => `(${dv}.getUint32(${o}, true) + ${dv}.getUint32(${o} + 4, true) * 4294967296)`,
  encode(v, buf, off) {
    if (!Number.isSafeInteger(v) || v < 0) throw new CodecError('u64', `expected a non-negative safe integer, got ${v}`);
    buf.writeBigUInt64LE(BigInt(v), off);
  },
  decode(buf, off) {
    return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * 0x1_0000_0000;
  },
};

export const bool: Codec<boolean> = {
  size: 1,
  align: 1,
  describe: 'bool',
  encode(v, buf, off) {
    buf.writeUInt8(v ? 1 : 0, off);
  },
  decode(buf, off) {
    return buf[off] !== 0;
  },
};

/** Fixed-size raw bytes (a shorter input is zero-padded; a longer one is refused). */
export function bytes(size: number, align = 1): Codec<Buffer> {
  return {
    size,
    align,
    describe: `bytes[${size}]`,
    encode(v, buf, off) {
      if (!((v as unknown) instanceof Uint8Array)) throw new CodecError(`bytes[${size}]`, 'expected a Buffer');
      if (v.length > size) throw new CodecError(`bytes[${size}]`, `got ${v.length} bytes`);
      buf.fill(0, off, off + size);
      buf.set(v, off);
    },
    decode(buf, off) {
      return Buffer.from(buf.subarray(off, off + size));
    },
  };
}

/** A NUL-padded C string in a fixed array (char name[N]). */
export function cstring(size: number): Codec<string> {
  return {
    size,
    align: 1,
    describe: `char[${size}]`,
    encode(v, buf, off) {
      const b = Buffer.from(String(v), 'utf8');
      if (b.length >= size) throw new CodecError(`char[${size}]`, `"${v}" needs ${b.length + 1} bytes`);
      buf.fill(0, off, off + size);
      b.copy(buf, off);
    },
    decode(buf, off) {
      const end = buf.indexOf(0, off);
      return buf.toString('utf8', off, end < 0 || end > off + size ? off + size : end);
    },
  };
}

/** IPv4 address in network byte order, as dotted quad. */
export const ipv4: Codec<string> = {
  size: 4,
  align: 1,
  describe: 'IPv4 address',
  encode(v, buf, off) {
    if (!isIPv4(v)) throw new CodecError('IPv4 address', `"${v}" is not an IPv4 address`);
    const parts = v.split('.');
    for (let i = 0; i < 4; i++) buf[off + i] = Number(parts[i]);
  },
  decode(buf, off) {
    return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  },
};

/** Parse an IPv6 address (any valid textual form, incl. embedded IPv4) into 16 bytes. */
export function parseIPv6(v: string): Buffer {
  if (!isIPv6(v)) throw new CodecError('IPv6 address', `"${v}" is not an IPv6 address`);
  let text = v.split('%')[0] as string;
  const out = Buffer.alloc(16);
  const tail: number[] = [];
  const v4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const q = (v4[1] as string).split('.').map(Number);
    tail.push(((q[0] as number) << 8) | (q[1] as number), ((q[2] as number) << 8) | (q[3] as number));
    text = text.slice(0, -(v4[1] as string).length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const hs = head ? head.split(':').filter((x) => x !== '') : [];
  const rs = rest !== undefined ? rest.split(':').filter((x) => x !== '') : [];
  const groups = [...hs.map((h) => parseInt(h, 16))];
  const after = [...rs.map((h) => parseInt(h, 16)), ...tail];
  const zeros = 8 - groups.length - after.length;
  const all = rest !== undefined ? [...groups, ...new Array(zeros).fill(0), ...after] : [...groups, ...after];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(all[i] ?? 0, i * 2);
  return out;
}

/** RFC 5952 text form of 16 IPv6 bytes. */
export function formatIPv6(b: Buffer, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + i * 2));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export const ipv6: Codec<string> = {
  size: 16,
  align: 1,
  describe: 'IPv6 address',
  encode(v, buf, off) {
    parseIPv6(v).copy(buf, off);
  },
  decode(buf, off) {
    return formatIPv6(buf, off);
  },
};

/** MAC address as aa:bb:cc:dd:ee:ff. */
export const mac: Codec<string> = {
  size: 6,
  align: 1,
  describe: 'MAC address',
  encode(v, buf, off) {
    const m = /^([0-9a-fA-F]{2})(?:[:-]([0-9a-fA-F]{2})){5}$/.test(v) ? v.split(/[:-]/) : null;
    if (!m) throw new CodecError('MAC address', `"${v}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
    for (let i = 0; i < 6; i++) buf[off + i] = parseInt(m[i] as string, 16);
  },
  decode(buf, off) {
    const parts: string[] = [];
    for (let i = 0; i < 6; i++) parts.push((buf[off + i] as number).toString(16).padStart(2, '0'));
    return parts.join(':');
  },
};

/** T[n] laid out contiguously. */
export function array<T>(of: Codec<T>, n: number): Codec<T[]> {
  return {
    size: of.size * n,
    align: of.align,
    describe: `${of.describe}[${n}]`,
    encode(v, buf, off) {
      if (!Array.isArray(v) || v.length !== n) throw new CodecError(this.describe, `expected ${n} elements`);
      for (let i = 0; i < n; i++) of.encode(v[i] as T, buf, off + i * of.size);
    },
    decode(buf, off) {
      const out: T[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = of.decode(buf, off + i * of.size);
      return out;
    },
  };
}

export type StructFields = Record<string, Codec<any>>;
export type StructValue<F extends StructFields> = { [K in keyof F]: CodecValue<F[K]> };

export interface StructCodec<F extends StructFields> extends Codec<StructValue<F>> {
  /** Byte offset of each field. */
  readonly offsets: { readonly [K in keyof F]: number };
  readonly fields: F;
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * A C struct: fields in declaration order with natural alignment and tail
 * padding. Padding bytes are written as zero (hash keys compare all bytes).
 */
export function struct<F extends StructFields>(name: string, fields: F): StructCodec<F> {
  const offsets = {} as Record<keyof F, number>;
  let off = 0;
  let align = 1;
  const entries = Object.entries(fields) as [keyof F & string, Codec<unknown>][];
  for (const [key, codec] of entries) {
    off = alignUp(off, codec.align);
    offsets[key] = off;
    off += codec.size;
    align = Math.max(align, codec.align);
  }
  const size = alignUp(off, align);
  return {
    size,
    align,
    describe: `struct ${name}`,
    offsets,
    fields,
    encode(v, buf, o) {
      if (v === null || typeof v !== 'object') throw new CodecError(`struct ${name}`, 'expected an object');
      buf.fill(0, o, o + size);
      for (const [key, codec] of entries) {
        const fv = (v as Record<string, unknown>)[key];
        if (fv === undefined) throw new CodecError(`${name}.${key}`, 'missing');
        try {
          codec.encode(fv, buf, o + offsets[key]);
        } catch (err) {
          if (err instanceof CodecError) throw new CodecError(`${name}.${key}`, err.message);
          throw err;
        }
      }
    },
    decode: compileDecoder<StructValue<F>>(entries, offsets),
  };
}

/**
 * Generate `(b, o) => ({ field: <read>, ... })` for a struct: one object
 * literal with a fixed shape, primitive reads inlined as DataView loads (the
 * view is cached for the last buffer seen: a ring reader passes the same one
 * every time), other codecs called through their own closure variable.
 */
function compileDecoder<T>(entries: [string, Codec<unknown>][], offsets: Record<string, number>): (buf: Buffer, off: number) => T {
  const args: string[] = [];
  const codecs: Codec<unknown>[] = [];
  const fields = entries.map(([key, codec], i) => {
    const at = `o + ${offsets[key]}`;
    if (codec.inline) return `${JSON.stringify(key)}: ${codec.inline('dv', at)}`;
    args.push(`c${i}`);
    codecs.push(codec);
    return `${JSON.stringify(key)}: c${i}.decode(b, ${at})`;
  });
  const body = `
    let last = null, dv = null;
    return function decode(b, o) {
      if (b !== last) { last = b; dv = new DataView(b.buffer, b.byteOffset, b.byteLength); }
      return { ${fields.join(', ')} };
    };`;
  return new Function(...args, body)(...codecs) as (buf: Buffer, off: number) => T;
}

/** Key of an LPM trie: { prefixlen: u32, addr } with the address codec given. */
export function lpmKey(addr: Codec<string>): Codec<{ prefixlen: number; addr: string }> {
  const bits = addr.size * 8;
  const inner = struct(`lpm_key(${addr.describe})`, { prefixlen: u32, addr });
  return {
    ...inner,
    encode(v, buf, off) {
      if (!Number.isInteger(v.prefixlen) || v.prefixlen < 0 || v.prefixlen > bits) {
        throw new CodecError('prefixlen', `expected 0..${bits}, got ${v.prefixlen}`);
      }
      inner.encode(v, buf, off);
    },
  };
}

/** Parse "a.b.c.d/n" or "x::/n" into an LPM key value. */
export function parsePrefix(text: string): { prefixlen: number; addr: string; family: 4 | 6 } {
  const [addr, len] = text.split('/');
  const family = isIPv4(addr ?? '') ? 4 : isIPv6(addr ?? '') ? 6 : 0;
  if (family === 0) throw new CodecError('prefix', `"${text}" has no valid IP address`);
  const max = family === 4 ? 32 : 128;
  const prefixlen = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > max || (len !== undefined && !/^\d+$/.test(len))) {
    throw new CodecError('prefix', `"${text}" has a bad prefix length (0..${max})`);
  }
  return { prefixlen, addr: addr as string, family: family as 4 | 6 };
}

/** Encode one value into a fresh buffer. */
export function encode<T>(codec: Codec<T>, value: T): Buffer {
  const buf = Buffer.alloc(codec.size);
  codec.encode(value, buf, 0);
  return buf;
}

/** Raw bytes of exactly `size`: the default codec of an untyped map. */
export function raw(size: number): Codec<Buffer> {
  const b = bytes(size);
  return {
    ...b,
    describe: `raw[${size}]`,
    encode(v, buf, off) {
      if (!((v as unknown) instanceof Uint8Array)) throw new CodecError(`raw[${size}]`, 'expected a Buffer');
      if (v.length !== size) throw new CodecError(`raw[${size}]`, `expected exactly ${size} bytes, got ${v.length}`);
      buf.set(v, off);
    },
  };
}
