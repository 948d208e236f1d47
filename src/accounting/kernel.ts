// The accounting module's adapter over bpf/accounting.bpf.c: pinned maps and
// links (a restarted agent finds the counters where the kernel kept counting),
// the task iterator, tap attachments by network namespace.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import {
  BpfError,
  BpfMap,
  BpfObject,
  DEFAULT_PIN_ROOT,
  ensurePinDir,
  ifindexOf,
  Link,
  netnsCookie,
  numPossibleCpus,
  parseIPv6,
  sumPerCpu,
  u32,
  u64n,
} from '../ebpf/index.js';
import { c, libbpf } from '../ebpf/native.js';
import { programInfoByFd } from '../ebpf/program.js';
import { objectPath } from '../paths.js';
import {
  ACCT_CLASSES,
  ACCT_MAX_RULES,
  AcctCpu,
  type AcctRule,
  AcctRules,
  AcctTap,
  AcctTask,
  AcctTaskRec,
  DiskKey,
  DiskValue,
  ACCT_PROBES,
  ACCT_TOMBSTONE,
  tapHome,
  type AcctTap as AcctTapT,
  type AcctTaskRec as TaskRec,
  type DiskKey as DiskKeyT,
  type DiskValue as DiskValueT,
} from './abi.js';

export interface TapCounts {
  /** [dir][class]: dir 0 = from the guest (outgoing), 1 = to the guest (incoming) */
  packets: number[][];
  bytes: number[][];
}

export interface ClassRule {
  prefix: string;
  klass: number;
}

export interface TapRef {
  netns: number;
  ifindex: number;
}

const emptyCounts = (): TapCounts => ({
  packets: [new Array(ACCT_CLASSES).fill(0), new Array(ACCT_CLASSES).fill(0)],
  bytes: [new Array(ACCT_CLASSES).fill(0), new Array(ACCT_CLASSES).fill(0)],
});

export class AccountingKernel {
  readonly pinDir: string;
  private readonly obj: BpfObject;
  private readonly iter: Link;
  private readonly links: Link[] = [];
  private readonly cpus = numPossibleCpus();

  private slots = 0;

  private constructor(obj: BpfObject, pinDir: string, iter: Link) {
    this.obj = obj;
    this.pinDir = pinDir;
    this.iter = iter;
  }

  /** `maxTaps`: taps counted at once (the table has twice as many slots, a power of two). */
  static async open(opts: { pinRoot?: string; object?: string; maxTaps?: number; onReset?: (why: string) => void } = {}): Promise<AccountingKernel> {
    const pinDir = `${opts.pinRoot ?? DEFAULT_PIN_ROOT}/accounting`;
    ensurePinDir(`${pinDir}/links`);
    const maxTaps = opts.maxTaps ?? 1024;
    let slots = 64;
    while (slots < maxTaps * 2) slots *= 2;
    const obj = BpfObject.open(opts.object ?? objectPath('accounting'), { pinMaps: { dir: `${pinDir}/maps` } });
    let iter: Link | undefined;
    try {
      obj.setMaxEntries('tap_slots', slots);
      obj.setConstant('tap_mask', slots - 1);
      // a map an earlier version pinned with another layout cannot be re-adopted: its contents start over
      // (an upgrade must not keep accounting from starting; what is lost is said)
      for (const name of obj.mapNames) {
        const path = `${pinDir}/maps/${name}`;
        if (!existsSync(path)) continue;
        let other: string | undefined;
        try {
          const m = BpfMap.fromPin(path);
          const want = obj.mapSpec(name);
          const got = m.info;
          m.close();
          if (got.type !== want.type || got.keySize !== want.keySize || got.valueSize !== want.valueSize || got.maxEntries !== want.maxEntries)
            other = `${got.keySize}/${got.valueSize}/${got.maxEntries} → ${want.keySize}/${want.valueSize}/${want.maxEntries}`;
        } catch {
          continue; // not ours to judge: the load says what is wrong
        }
        if (other) {
          rmSync(path);
          opts.onReset?.(`accounting map ${name} was pinned by another version (key/value/entries ${other}): its contents start over`);
        }
      }
      await obj.load();
      iter = obj.program('acct_tasks').attachIter();
    } catch (err) {
      obj.close();
      throw err;
    }
    const k = new AccountingKernel(obj, pinDir, iter);
    k.slots = slots;
    try {
      const hooks = ['acct_exit', 'acct_fork', 'acct_bio_queue', 'acct_io_start', 'acct_io_done'];
      // a hook an earlier version had and this one does not: its program would run on, on old maps
      for (const n of readdirSync(`${pinDir}/links`)) {
        if (n.startsWith('tap-') || hooks.includes(n)) continue;
        try {
          Link.fromPin(`${pinDir}/links/${n}`).detach();
        } catch {
          rmSync(`${pinDir}/links/${n}`, { force: true });
        }
        opts.onReset?.(`accounting hook ${n} of an earlier version removed`);
      }
      for (const p of hooks) k.pinnedTrace(p);
    } catch (err) {
      k.close();
      throw err;
    }
    return k;
  }

  get object(): BpfObject {
    return this.obj;
  }

  /**
   * tp_btf links stay pinned: the kernel keeps accounting while the agent
   * restarts. A pinned link that runs another version's program (an upgrade:
   * its maps may be the old ones) is replaced: the new one is attached first,
   * then the old one let go.
   */
  private pinnedTrace(prog: string): void {
    const path = `${this.pinDir}/links/${prog}`;
    let old: Link | undefined;
    if (existsSync(path)) {
      try {
        const l = Link.fromPin(path);
        if (programTag(l.info().progId) === programInfoByFd(this.obj.program(prog).fd).tag) {
          l.close();
          return;
        }
        old = l;
      } catch {
        // a stale pin: attach afresh
      }
    }
    const link = this.obj.program(prog).attachTrace();
    if (old) {
      old.detach(); // removes the pin; the new link takes its place
    } else if (existsSync(path)) rmSync(path);
    link.pin(path);
    this.links.push(link);
  }

  private m(name: string): BpfMap {
    return this.obj.map(name);
  }

  private views?: ReturnType<AccountingKernel['makeViews']>;
  private get t(): ReturnType<AccountingKernel['makeViews']> {
    this.views ??= this.makeViews();
    return this.views;
  }
  private makeViews() {
    return {
      watched: this.m('watched').typed(u32, AcctTask),
      exited: this.m('exited').typed(u32, AcctCpu),
      taps: this.m('tap_slots').perCpu(u32, AcctTap),
      rules: this.m('class_rules').typed(u32, AcctRules),
      disk: this.m('disk_stats').typed(DiskKey, DiskValue),
      unknown: this.m('tap_unknown').perCpu(u32, u64n),
      diskLost: this.m('disk_lost').perCpu(u32, u64n),
    };
  }

  /** Start accounting a process; `deadRunNs`: CPU of threads that exited before (from a task read). */
  watch(tgid: number, kind: number, deadRunNs: number): boolean {
    if (this.t.watched.lookup(tgid)) return false;
    if (!this.t.exited.lookup(tgid)) this.t.exited.update(tgid, { run_ns: deadRunNs, wait_ns: 0, slices: 0 });
    this.t.watched.update(tgid, { kind, parent: 0 });
    return true;
  }

  /** Stop accounting a process and drop what the kernel held for it (read it first). */
  unwatch(tgid: number): void {
    this.t.watched.delete(tgid);
    this.t.exited.delete(tgid);
    for (const k of this.diskKeys()) if (k.tgid === tgid) this.t.disk.delete(k);
  }

  /** Every watched process with its kind and, for a service's child the kernel added, its parent. */
  watchedEntries(): { tgid: number; kind: number; parent: number }[] {
    return this.t.watched.dump().map(([tgid, v]) => ({ tgid, kind: v.kind, parent: v.parent }));
  }

  /** Every watched process's exited-threads CPU at once (one batched read). */
  exitedAll(): Map<number, { run_ns: number; wait_ns: number; slices: number }> {
    return new Map(this.t.exited.dump());
  }

  exitedCpu(tgid: number): { run_ns: number; wait_ns: number; slices: number } | undefined {
    return this.t.exited.lookup(tgid);
  }

  /** One pass of the task iterator: every thread of every watched process. */
  readTasks(): TaskRec[] {
    const buf = this.iter.readIter();
    const size = AcctTaskRec.size;
    if (buf.length % size !== 0) throw new BpfError(`task iterator returned ${buf.length} bytes, not a multiple of ${size}`, { op: 'iter read' });
    const out: TaskRec[] = [];
    for (let off = 0; off < buf.length; off += size) out.push(AcctTaskRec.decode(buf, off));
    return out;
  }

  /** A task read limited to one process before it is watched (its CPU so far). */
  readProcess(tgid: number): TaskRec[] {
    // the iterator reports only watched processes: watch briefly with no exited entry change
    const had = this.t.watched.lookup(tgid);
    if (!had) this.t.watched.update(tgid, { kind: 0, parent: 0 });
    try {
      return this.readTasks().filter((r) => r.tgid === tgid);
    } finally {
      if (!had) this.t.watched.delete(tgid);
    }
  }

  diskKeys(): DiskKeyT[] {
    return [...this.t.disk.keys()];
  }

  readDisk(): [DiskKeyT, DiskValueT][] {
    return this.t.disk.dump();
  }

  setRules(rules: ClassRule[]): void {
    if (rules.length > ACCT_MAX_RULES) throw new Error(`at most ${ACCT_MAX_RULES} class rules (got ${rules.length})`);
    const encoded = rules.map((r) => encodeRule(r));
    // longest prefix first: the kernel takes the first match
    encoded.sort((a, b) => b.len - a.len);
    const r = encoded.filter((e) => e.rule.family === 6).map((e) => e.rule);
    const r4 = encoded.filter((e) => e.rule.family === 4).map((e) => ({ addr: e.rule.addr[0] as number, mask: e.rule.mask[0] as number, klass: e.rule.klass }));
    const count = r.length;
    const count4 = r4.length;
    while (r.length < ACCT_MAX_RULES) r.push({ addr: [0, 0, 0, 0], mask: [0, 0, 0, 0], klass: 0, family: 0 });
    while (r4.length < ACCT_MAX_RULES) r4.push({ addr: 0, mask: 0, klass: 0 });
    this.t.rules.update(0, { count, count4, r, r4 });
  }

  /** The key of a tap in the counters: its namespace's cookie and its ifindex there. */
  tapRef(ifname: string, netns: string | undefined): TapRef {
    return { netns: Number(netnsCookie(netns)), ifindex: ifindexOf(ifname, netns) };
  }

  private tapLinkPath(ref: TapRef, dir: 'in' | 'out'): string {
    return `${this.pinDir}/links/tap-${ref.netns}-${ref.ifindex}-${dir}`;
  }

  /** The slot of a tap, or where it can go (the first free or removed slot of its window). */
  private findSlot(ref: TapRef): { found?: number; free?: number } {
    const home = tapHome(ref.netns, ref.ifindex);
    let free: number | undefined;
    for (let i = 0; i < ACCT_PROBES; i++) {
      const idx = (home + i) & (this.slots - 1);
      const v = this.t.taps.lookup(idx)?.[0];
      const ifindex = v?.ifindex ?? 0;
      if (ifindex === ref.ifindex && v?.netns === ref.netns) return { found: idx };
      if (ifindex === 0) return { free: free ?? idx };
      if (ifindex === ACCT_TOMBSTONE) free ??= idx;
    }
    return free === undefined ? {} : { free };
  }

  private slotValue(ref: TapRef | { netns: number; ifindex: number }): AcctTapT[] {
    const one: AcctTapT = {
      netns: ref.netns,
      ifindex: ref.ifindex,
      pad: 0,
      c: [0, 1].map(() => Array.from({ length: ACCT_CLASSES }, () => ({ packets: 0, bytes: 0 }))),
    };
    return Array.from({ length: this.cpus }, () => structuredClone(one));
  }

  /**
   * Count a tap: its slot, then TC ingress and egress links, pinned.
   * Returns false when it was counted already (a restarted agent).
   */
  attachTap(ifname: string, netns: string | undefined, ref: TapRef): boolean {
    const slot = this.findSlot(ref);
    const fresh = slot.found === undefined;
    if (fresh) {
      if (slot.free === undefined)
        throw new BpfError(`no room for tap ${ifname} in the tap table (${this.slots} slots, ${ACCT_PROBES} probes): raise accounting.max_taps`, {
          op: 'attach tap',
          subject: ifname,
        });
      this.t.taps.update(slot.free, this.slotValue(ref));
    }
    for (const [dir, prog, direction] of [
      ['out', 'acct_tap_out', 'ingress'],
      ['in', 'acct_tap_in', 'egress'],
    ] as const) {
      const path = this.tapLinkPath(ref, dir);
      if (existsSync(path)) {
        try {
          const l = Link.fromPin(path);
          l.update(this.obj.program(prog).fd);
          l.close();
          continue;
        } catch {
          try {
            Link.fromPin(path).detach();
          } catch {}
        }
      }
      const link = this.obj.program(prog).attachTc(ifname, { direction, netns, mode: 'tcx' }) as Link;
      try {
        link.pin(path);
      } finally {
        link.close();
      }
    }
    return fresh;
  }

  /** A tap's counters; `ref.slot` remembers where it was found (checked against the slot's key each time). */
  readTap(ref: TapRef & { slot?: number }): TapCounts | undefined {
    let values = ref.slot !== undefined ? this.t.taps.lookup(ref.slot) : undefined;
    if (!values || values[0]?.ifindex !== ref.ifindex || values[0]?.netns !== ref.netns) {
      const slot = this.findSlot(ref).found;
      if (slot === undefined) return undefined;
      ref.slot = slot;
      values = this.t.taps.lookup(slot);
    }
    if (!values) return undefined;
    const out = emptyCounts();
    for (let d = 0; d < 2; d++)
      for (let c = 0; c < ACCT_CLASSES; c++) {
        (out.packets[d] as number[])[c] = sumPerCpu(values.map((v) => v.c[d]?.[c]?.packets ?? 0));
        (out.bytes[d] as number[])[c] = sumPerCpu(values.map((v) => v.c[d]?.[c]?.bytes ?? 0));
      }
    return out;
  }

  /** Stop counting a tap (read it first): its links, and its slot becomes a removed one. */
  detachTap(ref: TapRef): void {
    for (const dir of ['in', 'out'] as const) {
      const path = this.tapLinkPath(ref, dir);
      if (existsSync(path)) {
        try {
          Link.fromPin(path).detach();
        } catch {}
      }
    }
    const slot = this.findSlot(ref).found;
    if (slot !== undefined) this.t.taps.update(slot, this.slotValue({ netns: 0, ifindex: ACCT_TOMBSTONE }));
  }

  lost(): { tapUnknown: number; disk: number } {
    return {
      tapUnknown: sumPerCpu(this.t.unknown.lookup(0) ?? []),
      disk: sumPerCpu(this.t.diskLost.lookup(0) ?? []),
    };
  }

  /** Close this process's handles; pins keep the kernel side counting. */
  close(): void {
    this.iter.close();
    for (const l of this.links) l.close();
    this.obj.close();
  }

  /** Remove everything: links, pins and maps (`stackbpf` cleanup, tests). */
  static purge(pinRoot = DEFAULT_PIN_ROOT): void {
    const dir = `${pinRoot}/accounting`;
    if (!existsSync(dir)) return;
    const links = `${dir}/links`;
    if (existsSync(links))
      for (const n of readdirSync(links)) {
        try {
          Link.fromPin(`${links}/${n}`).detach();
        } catch {}
      }
    rmSync(dir, { recursive: true, force: true });
  }
}

function encodeRule(r: ClassRule): { rule: ReturnType<typeof AcctRule.decode>; len: number } {
  const [addr, lenText] = r.prefix.split('/');
  if (!addr) throw new Error(`${r.prefix}: not a prefix`);
  if (addr.includes(':')) {
    const len = lenText === undefined ? 128 : Number(lenText);
    if (!Number.isInteger(len) || len < 0 || len > 128) throw new Error(`${r.prefix}: prefix length must be 0-128`);
    const bytes = parseIPv6(addr);
    const a: number[] = [];
    const mk: number[] = [];
    for (let w = 0; w < 4; w++) {
      const bits = Math.max(0, Math.min(32, len - w * 32));
      const maskBE = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      const mask = bswap(maskBE);
      const word = bytes.readUInt32LE(w * 4);
      a.push((word & mask) >>> 0);
      mk.push(mask);
    }
    return { rule: { addr: a, mask: mk, klass: r.klass, family: 6 }, len };
  }
  const len = lenText === undefined ? 32 : Number(lenText);
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new Error(`${r.prefix}: prefix length must be 0-32`);
  const parts = addr.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`${r.prefix}: not an IPv4 address`);
  // the kernel compares the address as it lies in the packet (network order) read as a little-endian u32
  const word = Buffer.from(parts).readUInt32LE(0);
  const mask = bswap(len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
  return { rule: { addr: [(word & mask) >>> 0, 0, 0, 0], mask: [mask, 0, 0, 0], klass: r.klass, family: 4 }, len };
}

const bswap = (x: number): number => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | ((x >>> 24) & 0xff)) >>> 0;

/** The tag of a loaded program by id ("" when it is gone). */
function programTag(id: number): string {
  const fd = libbpf.bpf_prog_get_fd_by_id(id) as number;
  if (fd < 0) return '';
  try {
    return programInfoByFd(fd).tag;
  } finally {
    c.close(fd);
  }
}
