// BPF maps: typed lookup / update / delete / iteration / batch operations over
// a map fd, with per-CPU values returned per CPU.
import { type Codec, CodecError, raw } from './codec.js';
import { mapTypeName, MapType, PER_CPU_MAP_TYPES, UpdateFlag, type UpdateFlagName } from './constants.js';
import { BpfError } from './errors.js';
import { nameField, objectInfo } from './info.js';
import { c, libbpf, MapBatchOpts, MapCreateOpts, structSize } from './native.js';

export interface MapInfo {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Kernel map id (0 when not known yet). */
  id: number;
}

const ENOENT = 2;
const EINVAL = 22;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524; // kernel-internal, leaks to user space from batch ops

let possibleCpus = 0;
/** Number of possible CPUs: the length of every per-CPU value. */
export function numPossibleCpus(): number {
  if (possibleCpus === 0) {
    const n = libbpf.libbpf_num_possible_cpus() as number;
    if (n <= 0) throw new BpfError('cannot read the number of possible CPUs', { op: 'possible cpus', errno: -n });
    possibleCpus = n;
  }
  return possibleCpus;
}

/** Read type, sizes and name of a map fd from the kernel (bpf_map_info). */
export function mapInfoByFd(fd: number): MapInfo {
  const info = objectInfo(fd, 96, 'map').buf;
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
    name: nameField(info, 24),
  };
}

/** Values of a per-CPU map: one slot per possible CPU, each rounded up to 8 bytes. */
export function perCpuCodec<V>(of: Codec<V>, cpus = numPossibleCpus()): Codec<V[]> {
  const stride = Math.ceil(of.size / 8) * 8;
  return {
    size: stride * cpus,
    align: 8,
    describe: `per-CPU ${of.describe} x${cpus}`,
    encode(v, buf, off) {
      if (!Array.isArray(v) || v.length !== cpus) {
        throw new CodecError(this.describe, `expected one value per possible CPU (${cpus}), got ${Array.isArray(v) ? v.length : typeof v}`);
      }
      buf.fill(0, off, off + stride * cpus);
      for (let i = 0; i < cpus; i++) of.encode(v[i] as V, buf, off + i * stride);
    },
    decode(buf, off) {
      const out: V[] = new Array(cpus);
      for (let i = 0; i < cpus; i++) out[i] = of.decode(buf, off + i * stride);
      return out;
    },
  };
}

/** Sum per-CPU counters. */
export function sumPerCpu(values: readonly bigint[]): bigint;
export function sumPerCpu(values: readonly number[]): number;
export function sumPerCpu(values: readonly (bigint | number)[]): bigint | number {
  if (values.length > 0 && typeof values[0] === 'bigint') return (values as bigint[]).reduce((a, b) => a + b, 0n);
  return (values as number[]).reduce((a, b) => a + b, 0);
}

type Flag = UpdateFlagName | number;
const flagValue = (f: Flag): number => (typeof f === 'number' ? f : UpdateFlag[f]);

/**
 * A BPF map with key and value codecs. Untyped maps use raw Buffers (per-CPU
 * maps: one Buffer per CPU); `typed()` / `perCpu()` return a typed view
 * sharing the same fd.
 */
export class BpfMap<K = Buffer, V = Buffer | Buffer[]> {
  readonly info: MapInfo;
  readonly keyCodec: Codec<K>;
  readonly valueCodec: Codec<V>;
  private readonly fdRef: { fd: number; owned: boolean; closed: boolean };
  private readonly keyBuf: Buffer;
  private readonly valueBuf: Buffer;
  private batchSupported: boolean | undefined;

  /** Wrap an fd (the map owns it when `owned`). */
  static fromFd(fd: number, owned = true): BpfMap {
    const info = mapInfoByFd(fd);
    return new BpfMap(fd, info, owned);
  }

  /** Open a map pinned on bpffs. */
  static fromPin(path: string): BpfMap {
    const fd = libbpf.bpf_obj_get(path) as number;
    if (fd < 0) throw new BpfError(`cannot open pinned map ${path}`, { op: 'map open pin', errno: -fd, subject: path });
    try {
      return BpfMap.fromFd(fd, true);
    } catch (err) {
      c.close(fd);
      throw err;
    }
  }

  constructor(fd: number, info: MapInfo, owned: boolean);
  constructor(fd: number, info: MapInfo, owned: boolean, key: Codec<K>, value: Codec<V>, shared: { fd: number; owned: boolean; closed: boolean });
  constructor(fd: number, info: MapInfo, owned: boolean, key?: Codec<K>, value?: Codec<V>, shared?: { fd: number; owned: boolean; closed: boolean }) {
    this.info = info;
    this.fdRef = shared ?? { fd, owned, closed: false };
    this.keyCodec = key ?? (raw(info.keySize) as unknown as Codec<K>);
    const valueSize = info.type === MapType.ringbuf ? 0 : info.valueSize;
    this.valueCodec = value ?? ((this.isPerCpu ? perCpuCodec(raw(valueSize)) : raw(valueSize)) as unknown as Codec<V>);
    this.keyBuf = Buffer.alloc(Math.max(this.keyCodec.size, 8));
    this.valueBuf = Buffer.alloc(Math.max(this.valueCodec.size, 8));
  }

  get fd(): number {
    if (this.fdRef.closed) throw new BpfError(`map ${this.info.name} is closed`, { op: 'map', subject: this.info.name });
    return this.fdRef.fd;
  }
  get name(): string {
    return this.info.name;
  }
  get typeName(): string {
    return mapTypeName(this.info.type);
  }
  get isPerCpu(): boolean {
    return PER_CPU_MAP_TYPES.has(this.info.type);
  }

  /** A view of this map with typed keys and values (non-per-CPU maps). */
  typed<K2, V2>(key: Codec<K2>, value: Codec<V2>): BpfMap<K2, V2> {
    if (this.isPerCpu) {
      throw new BpfError(`map ${this.name} is per-CPU (${this.typeName}): use perCpu(key, value)`, { op: 'map typed', subject: this.name });
    }
    this.checkSizes(key, value.size);
    return new BpfMap(this.fdRef.fd, this.info, false, key, value, this.fdRef);
  }

  /** A view of a per-CPU map: values are arrays with one element per possible CPU. */
  perCpu<K2, V2>(key: Codec<K2>, value: Codec<V2>): BpfMap<K2, V2[]> {
    if (!this.isPerCpu) {
      throw new BpfError(`map ${this.name} is not per-CPU (${this.typeName}): use typed(key, value)`, { op: 'map typed', subject: this.name });
    }
    this.checkSizes(key, value.size);
    return new BpfMap(this.fdRef.fd, this.info, false, key, perCpuCodec(value), this.fdRef);
  }

  private checkSizes(key: Codec<unknown>, valueSize: number): void {
    if (key.size !== this.info.keySize) {
      throw new BpfError(`map ${this.name}: key codec ${key.describe} is ${key.size} bytes, the map's key is ${this.info.keySize}`, {
        op: 'map typed',
        subject: this.name,
        hint: 'fix the codec to mirror the C key type',
      });
    }
    if (valueSize !== this.info.valueSize) {
      throw new BpfError(`map ${this.name}: value codec is ${valueSize} bytes, the map's value is ${this.info.valueSize}`, {
        op: 'map typed',
        subject: this.name,
        hint: 'fix the codec to mirror the C value type',
      });
    }
  }

  private encodeInto<T>(codec: Codec<T>, v: T, buf: Buffer, what: 'key' | 'value'): void {
    try {
      codec.encode(v, buf, 0);
    } catch (err) {
      if (err instanceof CodecError) throw new CodecError(`map ${this.name} ${what}: ${err.field}`, err.message.slice(err.field.length + 2));
      throw err;
    }
  }

  private fail(op: string, ret: number): never {
    throw new BpfError(`${op} on map ${this.name} failed`, { op: `map ${op}`, errno: -ret, subject: this.name });
  }

  /** The value under `key`, or undefined when there is none. */
  lookup(key: K): V | undefined {
    this.encodeInto(this.keyCodec, key, this.keyBuf, 'key');
    const ret = libbpf.bpf_map_lookup_elem(this.fd, this.keyBuf, this.valueBuf) as number;
    if (ret === -ENOENT) return undefined;
    if (ret < 0) this.fail('lookup', ret);
    return this.valueCodec.decode(this.valueBuf, 0);
  }

  /** Create or replace (`any`), only create (`noexist`) or only replace (`exist`). */
  update(key: K, value: V, flag: Flag = 'any'): void {
    this.encodeInto(this.keyCodec, key, this.keyBuf, 'key');
    this.encodeInto(this.valueCodec, value, this.valueBuf, 'value');
    const ret = libbpf.bpf_map_update_elem(this.fd, this.keyBuf, this.valueBuf, flagValue(flag)) as number;
    if (ret < 0) {
      if (ret === -17) {
        throw new BpfError(`update on map ${this.name} failed: the key exists (flag noexist)`, { op: 'map update', errno: 17, subject: this.name });
      }
      if (ret === -ENOENT && flagValue(flag) === UpdateFlag.exist) {
        throw new BpfError(`update on map ${this.name} failed: no such key (flag exist)`, { op: 'map update', errno: ENOENT, subject: this.name });
      }
      this.fail('update', ret);
    }
  }

  /** Remove `key`; false when it was not there. Array maps cannot delete. */
  delete(key: K): boolean {
    this.encodeInto(this.keyCodec, key, this.keyBuf, 'key');
    const ret = libbpf.bpf_map_delete_elem(this.fd, this.keyBuf) as number;
    if (ret === -ENOENT) return false;
    if (ret === -EINVAL && (this.info.type === MapType.array || this.info.type === MapType.percpu_array)) {
      throw new BpfError(`map ${this.name} is an array: entries cannot be deleted, write a zero value instead`, {
        op: 'map delete',
        errno: EINVAL,
        subject: this.name,
      });
    }
    if (ret < 0) this.fail('delete', ret);
    return true;
  }

  /** Every key, via BPF_MAP_GET_NEXT_KEY. */
  *keys(): IterableIterator<K> {
    const size = this.keyCodec.size;
    let cur: Buffer | null = null;
    const next = Buffer.alloc(Math.max(size, 8));
    for (;;) {
      const ret = libbpf.bpf_map_get_next_key(this.fd, cur, next) as number;
      if (ret === -ENOENT) return;
      if (ret < 0) this.fail('get next key', ret);
      yield this.keyCodec.decode(next, 0);
      cur = Buffer.from(next);
    }
  }

  /** Every entry. Entries deleted meanwhile are skipped. */
  *entries(): IterableIterator<[K, V]> {
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v !== undefined) yield [k, v];
    }
  }

  /** All entries, with batched syscalls where the kernel supports them for this map. */
  dump(): [K, V][] {
    if (this.batchSupported !== false) {
      const out = this.lookupBatchAll();
      if (out) return out;
    }
    return [...this.entries()];
  }

  private batchOpts(flag: Flag = 'any'): Record<string, unknown> {
    return { sz: structSize(MapBatchOpts), elem_flags: flagValue(flag), flags: 0 };
  }

  private noBatch(ret: number): boolean {
    if (ret === -EINVAL || ret === -EOPNOTSUPP || ret === -ENOTSUPP) {
      this.batchSupported = false;
      return true;
    }
    return false;
  }

  private lookupBatchAll(): [K, V][] | undefined {
    const chunk = Math.max(1, Math.min(this.info.maxEntries, 4096));
    const ks = this.keyCodec.size;
    const vs = this.valueCodec.size;
    const keys = Buffer.alloc(ks * chunk);
    const values = Buffer.alloc(vs * chunk);
    // hash maps use a u32 bucket cursor, arrays a key-sized one
    const tokenSize = Math.max(ks, 8);
    let inBatch: Buffer | null = null;
    const outBatch = Buffer.alloc(tokenSize);
    const out: [K, V][] = [];
    for (;;) {
      const count = [chunk];
      const ret = libbpf.bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, values, count, this.batchOpts()) as number;
      if (ret < 0 && ret !== -ENOENT) {
        if (out.length === 0 && this.noBatch(ret)) return undefined;
        this.fail('lookup batch', ret);
      }
      this.batchSupported = true;
      const n = count[0] as number;
      for (let i = 0; i < n; i++) out.push([this.keyCodec.decode(keys, i * ks), this.valueCodec.decode(values, i * vs)]);
      if (ret === -ENOENT) return out;
      inBatch = Buffer.from(outBatch);
    }
  }

  /** Write many entries in one syscall where supported (one by one otherwise). */
  updateBatch(entries: readonly (readonly [K, V])[], flag: Flag = 'any'): void {
    if (entries.length === 0) return;
    if (this.batchSupported !== false) {
      const ks = this.keyCodec.size;
      const vs = this.valueCodec.size;
      const keys = Buffer.alloc(ks * entries.length);
      const values = Buffer.alloc(vs * entries.length);
      entries.forEach(([k, v], i) => {
        try {
          this.keyCodec.encode(k, keys, i * ks);
          this.valueCodec.encode(v, values, i * vs);
        } catch (err) {
          if (err instanceof CodecError) throw new CodecError(`map ${this.name} entry ${i}: ${err.field}`, err.message.slice(err.field.length + 2));
          throw err;
        }
      });
      const count = [entries.length];
      const ret = libbpf.bpf_map_update_batch(this.fd, keys, values, count, this.batchOpts(flag)) as number;
      if (ret >= 0) {
        this.batchSupported = true;
        return;
      }
      if (!(count[0] === 0 && this.noBatch(ret))) {
        throw new BpfError(`update batch on map ${this.name} failed after ${count[0]} of ${entries.length} entries`, {
          op: 'map update batch',
          errno: -ret,
          subject: this.name,
        });
      }
    }
    for (const [k, v] of entries) this.update(k, v, flag);
  }

  /** Delete many keys; returns how many existed. */
  deleteBatch(keys: readonly K[]): number {
    if (keys.length === 0) return 0;
    if (this.batchSupported !== false) {
      const ks = this.keyCodec.size;
      const buf = Buffer.alloc(ks * keys.length);
      keys.forEach((k, i) => this.keyCodec.encode(k, buf, i * ks));
      const count = [keys.length];
      const ret = libbpf.bpf_map_delete_batch(this.fd, buf, count, this.batchOpts()) as number;
      if (ret >= 0) return count[0] as number;
      // ENOENT: a key was missing; the kernel stops there, so finish one by one
      if (ret !== -ENOENT && !(count[0] === 0 && this.noBatch(ret))) this.fail('delete batch', ret);
      let n = count[0] as number;
      for (const k of keys.slice(n)) if (this.delete(k)) n++;
      return n;
    }
    let n = 0;
    for (const k of keys) if (this.delete(k)) n++;
    return n;
  }

  /** Pin on bpffs so the map outlives this process. */
  pin(path: string): void {
    const ret = libbpf.bpf_obj_pin(this.fd, path) as number;
    if (ret < 0) throw new BpfError(`cannot pin map ${this.name} at ${path}`, { op: 'map pin', errno: -ret, subject: path });
  }

  /** Close the fd (all views of the map share it). */
  close(): void {
    if (this.fdRef.closed) return;
    this.fdRef.closed = true;
    if (this.fdRef.owned) c.close(this.fdRef.fd);
  }
}

/** Create a map directly (without an object file). */
export function createMap(opts: { type: keyof typeof MapType; name: string; keySize: number; valueSize: number; maxEntries: number; flags?: number }): BpfMap {
  const fd = libbpf.bpf_map_create(MapType[opts.type], opts.name.slice(0, 15), opts.keySize, opts.valueSize, opts.maxEntries, {
    sz: structSize(MapCreateOpts),
    btf_fd: 0,
    btf_key_type_id: 0,
    btf_value_type_id: 0,
    btf_vmlinux_value_type_id: 0,
    inner_map_fd: 0,
    map_flags: opts.flags ?? 0,
    map_extra: 0,
    numa_node: 0,
    map_ifindex: 0,
  }) as number;
  if (fd < 0) throw new BpfError(`cannot create ${opts.type} map ${opts.name}`, { op: 'map create', errno: -fd, subject: opts.name });
  return BpfMap.fromFd(fd, true);
}
