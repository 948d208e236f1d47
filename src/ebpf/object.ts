// A BPF object file: opened (the spec: what the ELF says, the same on every
// machine), adjusted (map sizes, constants, autoload, pins), then loaded into
// the running kernel (everything kernel-dependent happens here).
import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Btf, type BtfVariable } from './btf.js';
import { mapTypeName, progTypeName } from './constants.js';
import { BpfError } from './errors.js';
import { ensurePinDir } from './fs.js';
import { logMark, logSince } from './libbpf-log.js';
import { BpfMap, type MapInfo } from './map.js';
import { cstring, errno, libbpf, ObjectOpenOpts, type Ptr, structSize, view } from './native.js';
import { Program } from './program.js';

export interface OpenOptions {
  /** Object name (default: the file's base name without `.o` / `.bpf.o`). */
  name?: string;
  /**
   * Pin maps under this bpffs directory as `<dir>/<map>`; an existing pin is
   * re-used (its contents survive), so a restarted process re-adopts state.
   */
  pinMaps?: { dir: string; maps?: readonly string[] };
  /** Bytes of verifier log kept per program when a load fails (default 256 KiB). */
  verifierLogSize?: number;
}

export type ObjectState = 'opened' | 'loaded' | 'failed' | 'closed';

interface ProgramEntry {
  ptr: Ptr;
  name: string;
  section: string;
  logBuf?: Buffer;
}
interface MapEntry {
  ptr: Ptr;
  name: string;
}

// libbpf loads are serialized: libbpf's log callback then belongs to one load.
let loadQueue: Promise<unknown> = Promise.resolve();

export class BpfObject {
  readonly name: string;
  private ptr: Ptr;
  private stateValue: ObjectState = 'opened';
  private readonly programs = new Map<string, ProgramEntry>();
  private readonly maps = new Map<string, MapEntry>();
  private readonly loadedMaps = new Map<string, BpfMap>();
  private readonly opts: OpenOptions;
  // open_mem reads the buffer until load finishes: keep it referenced
  private readonly source: Buffer | undefined;

  private constructor(ptr: Ptr, name: string, opts: OpenOptions, source?: Buffer) {
    this.ptr = ptr;
    this.name = name;
    this.opts = opts;
    this.source = source;
    let p: Ptr = null;
    while ((p = libbpf.bpf_object__next_program(this.ptr, p))) {
      const name = cstring(libbpf.bpf_program__name(p));
      this.programs.set(name, { ptr: p, name, section: cstring(libbpf.bpf_program__section_name(p)) });
    }
    let m: Ptr = null;
    while ((m = libbpf.bpf_object__next_map(this.ptr, m))) {
      const name = cstring(libbpf.bpf_map__name(m));
      this.maps.set(name, { ptr: m, name });
    }
  }

  /** Open an object from a file path or from the bytes of one. Touches no kernel state. */
  static open(source: string | Buffer, opts: OpenOptions = {}): BpfObject {
    const mark = logMark();
    let name = opts.name;
    let ptr: Ptr;
    let keep: Buffer | undefined;
    if (typeof source === 'string') {
      if (!existsSync(source)) {
        throw new BpfError(`BPF object ${source} not found`, {
          op: 'open object',
          errno: 2,
          subject: source,
          hint: 'check the path; committed objects live in bpf/build',
        });
      }
      if (!statSync(source).isFile()) throw new BpfError(`BPF object ${source} is not a file`, { op: 'open object', subject: source });
      name ??= basename(source).replace(/(\.bpf)?\.o$/, '');
      ptr = libbpf.bpf_object__open_file(source, BpfObject.openOpts(name));
    } else {
      if (!Buffer.isBuffer(source) || source.length === 0) {
        throw new BpfError('BPF object buffer is empty', { op: 'open object', hint: 'pass the bytes of a compiled .o file' });
      }
      name ??= 'object';
      keep = Buffer.from(source);
      ptr = libbpf.bpf_object__open_mem(keep, keep.length, BpfObject.openOpts(name));
    }
    if (!ptr) {
      const e = errno();
      const what = typeof source === 'string' ? source : `buffer (${source.length} bytes)`;
      throw new BpfError(`cannot open BPF object ${what}: not a valid BPF ELF object`, {
        op: 'open object',
        errno: e,
        subject: what,
        libbpfLog: logSince(mark),
        hint: 'the file is corrupt or not a BPF object: rebuild it with npm run build:bpf',
      });
    }
    return new BpfObject(ptr, name, opts, keep);
  }

  private static openOpts(name: string): Record<string, unknown> {
    return {
      sz: structSize(ObjectOpenOpts),
      object_name: name,
      relaxed_maps: false,
      pin_root_path: null,
      _removed_attach_prog_fd: 0,
      kconfig: null,
      btf_custom_path: null,
      kernel_log_buf: null,
      kernel_log_size: 0,
      kernel_log_level: 0,
    };
  }

  get state(): ObjectState {
    return this.stateValue;
  }

  private live(): Ptr {
    if (this.stateValue === 'closed' || this.stateValue === 'failed') {
      throw new BpfError(`object ${this.name} is ${this.stateValue}`, { op: 'object', subject: this.name });
    }
    return this.ptr;
  }

  private beforeLoad(what: string): void {
    if (this.stateValue !== 'opened') {
      throw new BpfError(`${what}: object ${this.name} is already ${this.stateValue}; do this between open() and load()`, {
        op: what,
        subject: this.name,
      });
    }
  }

  get programNames(): string[] {
    return [...this.programs.keys()];
  }
  /** Map names, including libbpf's internal ones (e.g. `<obj>.rodata`). */
  get mapNames(): string[] {
    return [...this.maps.keys()];
  }

  private programEntry(name: string): ProgramEntry {
    this.live();
    const p = this.programs.get(name);
    if (!p) {
      throw new BpfError(`object ${this.name} has no program named ${name}`, {
        op: 'program',
        subject: name,
        hint: `its programs: ${this.programNames.join(', ') || '(none)'}`,
      });
    }
    return p;
  }

  private mapEntry(name: string): MapEntry {
    this.live();
    const m = this.maps.get(name);
    if (!m) {
      throw new BpfError(`object ${this.name} has no map named ${name}`, {
        op: 'map',
        subject: name,
        hint: `its maps: ${this.mapNames.join(', ') || '(none)'}`,
      });
    }
    return m;
  }

  /** Describe a program before or after load. */
  programSpec(name: string): { name: string; section: string; type: string; autoload: boolean; instructions: number } {
    const p = this.programEntry(name);
    return {
      name,
      section: p.section,
      type: progTypeName(libbpf.bpf_program__type(p.ptr) as number),
      autoload: libbpf.bpf_program__autoload(p.ptr) as boolean,
      instructions: Number(libbpf.bpf_program__insn_cnt(p.ptr)),
    };
  }

  /** Describe a map as the object declares it (before load) or as created (after). */
  mapSpec(name: string): Omit<MapInfo, 'id'> & { typeName: string } {
    const m = this.mapEntry(name);
    const type = libbpf.bpf_map__type(m.ptr) as number;
    return {
      name,
      type,
      typeName: mapTypeName(type),
      keySize: libbpf.bpf_map__key_size(m.ptr) as number,
      valueSize: libbpf.bpf_map__value_size(m.ptr) as number,
      maxEntries: libbpf.bpf_map__max_entries(m.ptr) as number,
      flags: libbpf.bpf_map__map_flags(m.ptr) as number,
    };
  }

  /** Load this program or leave it out (default: every program loads). */
  setAutoload(program: string, autoload: boolean): void {
    this.beforeLoad('set autoload');
    const p = this.programEntry(program);
    const ret = libbpf.bpf_program__set_autoload(p.ptr, autoload) as number;
    if (ret < 0) throw new BpfError(`cannot set autoload of ${program}`, { op: 'set autoload', errno: -ret, subject: program });
  }

  /** Resize a map (ring buffers: a power of two multiple of the page size). */
  setMaxEntries(map: string, maxEntries: number): void {
    this.beforeLoad('resize map');
    const m = this.mapEntry(map);
    if (!Number.isInteger(maxEntries) || maxEntries <= 0 || maxEntries > 0xffffffff) {
      throw new BpfError(`map ${map}: max entries must be a positive 32-bit integer, got ${maxEntries}`, { op: 'resize map', subject: map });
    }
    const ret = libbpf.bpf_map__set_max_entries(m.ptr, maxEntries) as number;
    if (ret < 0) throw new BpfError(`cannot resize map ${map}`, { op: 'resize map', errno: -ret, subject: map });
  }

  private btf(): Btf {
    const b = libbpf.bpf_object__btf(this.live());
    if (!b) throw new BpfError(`object ${this.name} has no BTF`, { op: 'btf', subject: this.name, hint: 'compile with clang -g' });
    return Btf.fromObjectPtr(b, this.name);
  }

  /** Struct layouts and variables from the object's BTF. */
  get types(): Btf {
    return this.btf();
  }

  /** The constants (`const volatile` globals in .rodata) the object declares. */
  constants(): BtfVariable[] {
    return this.btf().datasec('.rodata');
  }

  /**
   * Set a `const volatile` global before load: the verifier then sees the
   * value, and dead branches are pruned. Numbers are written little-endian
   * at the variable's size; a Buffer must match the size exactly.
   */
  setConstant(name: string, value: number | bigint | boolean | Buffer): void {
    this.beforeLoad('set constant');
    const vars = this.constants();
    const v = vars.find((x) => x.name === name);
    if (!v) {
      throw new BpfError(`object ${this.name} has no constant named ${name}`, {
        op: 'set constant',
        subject: name,
        hint: `declare it as \`const volatile\`; its constants: ${vars.map((x) => x.name).join(', ') || '(none)'}`,
      });
    }
    const bytes = Buffer.alloc(v.size);
    if (Buffer.isBuffer(value)) {
      if (value.length !== v.size) throw new BpfError(`constant ${name} is ${v.size} bytes, got ${value.length}`, { op: 'set constant', subject: name });
      value.copy(bytes);
    } else {
      let n = typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value);
      if (n < 0n) n += 1n << BigInt(v.size * 8);
      if (n < 0n || n >= 1n << BigInt(v.size * 8)) {
        throw new BpfError(`constant ${name} (${v.size} bytes) cannot hold ${String(value)}`, { op: 'set constant', subject: name });
      }
      for (let i = 0; i < v.size; i++) bytes[i] = Number((n >> BigInt(8 * i)) & 0xffn);
    }
    const rodata = [...this.maps.values()].find((m) => m.name.endsWith('.rodata'));
    if (!rodata) throw new BpfError(`object ${this.name} has no .rodata map`, { op: 'set constant', subject: name });
    const size = [0];
    const ptr = libbpf.bpf_map__initial_value(rodata.ptr, size);
    if (!ptr || (size[0] as number) < v.offset + v.size) {
      throw new BpfError(`cannot reach the initial value of ${rodata.name}`, { op: 'set constant', subject: name });
    }
    new Uint8Array(view(ptr, size[0] as number)).set(bytes, v.offset);
  }

  private globalVar(name: string, sections: string[], op: string): { map: BpfMap; offset: number; size: number } {
    this.requireLoaded(`${op} ${name}`);
    const btf = this.btf();
    for (const section of sections) {
      const v = btf.datasec(section).find((x) => x.name === name);
      if (!v) continue;
      const entry = [...this.maps.values()].find((m) => m.name.endsWith(section));
      if (!entry) break;
      return { map: this.map(entry.name), offset: v.offset, size: v.size };
    }
    throw new BpfError(`object ${this.name} has no ${sections.join('/')} variable named ${name}`, { op, subject: name });
  }

  /** Current bytes of a global variable (.bss, .data or .rodata) of a loaded object. */
  readGlobal(name: string): Buffer {
    const g = this.globalVar(name, ['.bss', '.data', '.rodata'], 'read global');
    const value = g.map.lookup(Buffer.alloc(4)) as Buffer;
    return Buffer.from(value.subarray(g.offset, g.offset + g.size));
  }

  /** Write a (non-constant) global variable of a loaded object: .bss or .data. */
  writeGlobal(name: string, bytes: Buffer): void {
    const g = this.globalVar(name, ['.bss', '.data'], 'write global');
    if (bytes.length !== g.size) throw new BpfError(`global ${name} is ${g.size} bytes, got ${bytes.length}`, { op: 'write global', subject: name });
    const value = g.map.lookup(Buffer.alloc(4)) as Buffer; // read-modify-write the section
    bytes.copy(value, g.offset);
    g.map.update(Buffer.alloc(4), value);
  }

  /**
   * Load every program (with autoload on) and create or re-use the maps.
   * Runs on a worker thread: the event loop keeps going while the verifier works.
   * A failure names the program and carries the verifier's last lines.
   */
  load(): Promise<void> {
    this.beforeLoad('load');
    const run = loadQueue.then(() => this.doLoad());
    loadQueue = run.catch(() => undefined);
    return run;
  }

  private async doLoad(): Promise<void> {
    const pin = this.opts.pinMaps;
    if (pin) {
      ensurePinDir(pin.dir);
      const wanted = pin.maps ?? this.mapNames.filter((n) => !(libbpf.bpf_map__is_internal(this.maps.get(n)?.ptr) as boolean));
      for (const n of wanted) this.adoptOrPin(n, `${pin.dir}/${n}`);
    }
    const logSize = this.opts.verifierLogSize ?? 256 * 1024;
    for (const p of this.programs.values()) {
      if (!(libbpf.bpf_program__autoload(p.ptr) as boolean)) continue;
      p.logBuf = Buffer.alloc(logSize);
      libbpf.bpf_program__set_log_buf(p.ptr, p.logBuf, p.logBuf.length);
    }
    const mark = logMark();
    const ret = await new Promise<number>((resolve, reject) => {
      libbpf.bpf_object__load.async(this.ptr, (err: unknown, r: number) => (err ? reject(err) : resolve(r)));
    });
    const said = logSince(mark);
    if (ret < 0) {
      this.stateValue = 'failed';
      const failed = this.failedProgram(said);
      const log = failed?.logBuf ? cString(failed.logBuf) : '';
      const pinMismatch = said.find((l) => l.includes("couldn't reuse pinned map"));
      for (const p of this.programs.values()) p.logBuf = undefined;
      libbpf.bpf_object__close(this.ptr);
      this.ptr = null;
      throw new BpfError(failed ? `loading object ${this.name} failed: program ${failed.name} was rejected` : `loading object ${this.name} failed`, {
        op: 'load object',
        errno: -ret,
        subject: failed?.name ?? this.name,
        verifierLog: log || undefined,
        libbpfLog: said,
        hint: pinMismatch
          ? `a map pinned under ${pin?.dir} has another layout (an older version?): remove that pin and load again`
          : log
            ? 'the verifier rejected the program: fix the code at the instruction the log ends on'
            : undefined,
      });
    }
    for (const p of this.programs.values()) p.logBuf = undefined; // the kernel is done with the buffers
    this.stateValue = 'loaded';
  }

  /**
   * Re-use the map pinned at `path` when its layout matches, else have libbpf
   * create and pin it there. The check is ours, not libbpf's: libbpf 1.1
   * compares map flags literally, and the kernel adds BPF_F_RDONLY_PROG to
   * every devmap, so it refuses to re-use any pinned devmap.
   */
  private adoptOrPin(name: string, path: string): void {
    const m = this.mapEntry(name);
    if (!existsSync(path)) {
      const ret = libbpf.bpf_map__set_pin_path(m.ptr, path) as number;
      if (ret < 0) throw new BpfError(`cannot set pin path of map ${name}`, { op: 'pin map', errno: -ret, subject: name });
      return;
    }
    const pinned = BpfMap.fromPin(path);
    try {
      const want = this.mapSpec(name);
      const have = pinned.info;
      const KERNEL_ADDED_FLAGS = 0x80; // BPF_F_RDONLY_PROG (devmaps)
      const diffs: string[] = [];
      if (have.type !== want.type) diffs.push(`type ${mapTypeName(have.type)} != ${want.typeName}`);
      if (have.keySize !== want.keySize) diffs.push(`key size ${have.keySize} != ${want.keySize}`);
      if (have.valueSize !== want.valueSize) diffs.push(`value size ${have.valueSize} != ${want.valueSize}`);
      if (have.maxEntries !== want.maxEntries) diffs.push(`max entries ${have.maxEntries} != ${want.maxEntries}`);
      if ((have.flags & ~KERNEL_ADDED_FLAGS) !== (want.flags & ~KERNEL_ADDED_FLAGS)) diffs.push(`flags ${have.flags} != ${want.flags}`);
      if (diffs.length > 0) {
        throw new BpfError(`the map pinned at ${path} has another layout than map ${name} of object ${this.name}: ${diffs.join(', ')}`, {
          op: 'pin map',
          subject: name,
          hint: 'it was made by another version or configuration: remove that pin (its contents are lost) and load again',
        });
      }
      const ret = libbpf.bpf_map__reuse_fd(m.ptr, pinned.fd) as number; // libbpf dups the fd
      if (ret < 0) throw new BpfError(`cannot re-use the map pinned at ${path}`, { op: 'pin map', errno: -ret, subject: name });
    } finally {
      pinned.close();
    }
  }

  private failedProgram(said: string[]): ProgramEntry | undefined {
    for (const line of said) {
      const m = line.match(/prog '([^']+)': (?:BPF program load failed|failed to load|failed to relocate)/);
      if (m && this.programs.has(m[1] as string)) return this.programs.get(m[1] as string);
    }
    for (const p of this.programs.values()) if (p.logBuf && p.logBuf[0] !== 0) return p;
    return undefined;
  }

  private requireLoaded(what: string): void {
    if (this.stateValue !== 'loaded') {
      throw new BpfError(`${what}: object ${this.name} is ${this.stateValue}, load it first`, { op: what, subject: this.name });
    }
  }

  /** A loaded program. */
  program(name: string): Program {
    const p = this.programEntry(name);
    this.requireLoaded(`program ${name}`);
    return new Program(name, libbpf.bpf_program__type(p.ptr) as number, p.section, { ptr: p.ptr });
  }

  /** A loaded map (the object owns its fd; close the object to release it). */
  map(name: string): BpfMap {
    const m = this.mapEntry(name);
    this.requireLoaded(`map ${name}`);
    let map = this.loadedMaps.get(name);
    if (!map) {
      const fd = libbpf.bpf_map__fd(m.ptr) as number;
      const spec = this.mapSpec(name);
      map = new BpfMap(fd, { ...spec, id: 0 }, false);
      this.loadedMaps.set(name, map);
    }
    return map;
  }

  /** Free the object: unpinned programs and maps go away with it; links hold their programs. */
  close(): void {
    if (this.stateValue === 'closed') return;
    for (const m of this.loadedMaps.values()) m.close();
    this.loadedMaps.clear();
    if (this.ptr) libbpf.bpf_object__close(this.ptr);
    this.ptr = null;
    this.stateValue = 'closed';
  }

  /** Bytes the object was opened from (open from a buffer only). */
  get sourceBytes(): Buffer | undefined {
    return this.source;
  }
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}
