// Desired exposures in, map writes out: diff-based, batched, idempotent. It
// reads what the kernel holds (so it converges from whatever a previous run
// or a crash left) on its first run, after any failed write and at least
// once a minute, and otherwise diffs against its own record of what it
// wrote (the agent is the maps' only writer); it validates everything before writing
// anything, and orders writes so that no packet ever meets a half-made entry:
// ports before the exposures that use them, exposures before the lookups
// that need them are switched on, and the reverse on removal.
import { ifindexOf, macOf, mtuOf } from '../ebpf/index.js';
import { DP_MAX_PORTS, DpConfigFlag, type ExposureValue } from './abi.js';
import type { Dataplane } from './dataplane.js';
import { ExposureError, type Exposure, type NormalizedExposure, validateExposures } from './exposure.js';
import { updateConfigFlags } from './config-flags.js';

export interface InterfaceInfo {
  ifindex: number;
  mac: string;
  /** Checked against each forwarded datagram's length; 0 or absent: not checked. */
  mtu?: number;
}
/** Finds a target interface on the node; throws when it does not exist. */
export type InterfaceResolver = (ifname: string) => InterfaceInfo;

export function netnsResolver(netns?: string): InterfaceResolver {
  return (ifname) => ({ ifindex: ifindexOf(ifname, netns), mac: macOf(ifname, netns), mtu: mtuOf(ifname, netns) });
}

export interface ReconcileResult {
  added: number;
  updated: number;
  removed: number;
  unchanged: number;
  portsAdded: number;
  portsRemoved: number;
  /** Exposures now in the maps. */
  total: number;
}

type Table = 'exactV4' | 'exactV6' | 'lpmV4' | 'lpmV6';

interface Entry {
  table: Table;
  key: unknown;
  value: ExposureValue;
}

const tableOf = (n: NormalizedExposure): Table => (n.family === 4 ? (n.exact ? 'exactV4' : 'lpmV4') : n.exact ? 'exactV6' : 'lpmV6');

function keyString(table: Table, key: unknown): string {
  if (table === 'exactV4' || table === 'exactV6') return `${key as string}/${table === 'exactV4' ? 32 : 128}`;
  const k = key as { prefixlen: number; addr: string };
  return `${k.addr}/${k.prefixlen}`;
}

const sameValue = (a: ExposureValue, b: ExposureValue): boolean =>
  a.dmac === b.dmac && a.smac === b.smac && a.vlan === b.vlan && a.port === b.port && a.id === b.id && a.flags === b.flags;

export class Reconciler {
  /** What the maps hold, as of our last read plus our own writes since. */
  private mirror: { entries: Map<string, Entry>; readAt: number; ids?: Set<number> } | undefined;
  /** The entry written for a validated exposure; an unchanged one is skipped without building its value. */
  private readonly written = new WeakMap<NormalizedExposure, Entry>();
  /** Re-read the maps when the record is older than this. */
  static readonly MIRROR_MAX_AGE_MS = 60_000;

  constructor(
    private readonly dp: Dataplane,
    private readonly resolve: InterfaceResolver = netnsResolver(dp.netns),
  ) {}

  /** Where writes to a table go (IPv4 exact entries through the slot table). */
  private writer(table: Table): { updateBatch(e: readonly (readonly [any, ExposureValue])[]): void; deleteBatch(k: any[]): number } {
    return table === 'exactV4' ? this.dp.exact4 : table === 'exactV6' ? this.dp.exact6 : (this.dp.tables[table] as never);
  }

  /**
   * Write just these changes: `upsert` (validated) and remove `remove`
   * (canonical keys). Only after a full apply, against the record of what the
   * maps hold; throws (writing nothing) when an upsert needs what only a full
   * apply handles — a new target interface — or there is no record.
   */
  applyDelta(upsert: readonly NormalizedExposure[], remove: readonly string[]): DeltaResult {
    const mirror = this.mirror;
    if (!mirror || Date.now() - mirror.readAt > Reconciler.MIRROR_MAX_AGE_MS)
      throw new ExposureError(undefined, 'exposures', 'no recent full apply: a full reconcile is needed');
    const now = mirror.entries;
    const t = this.dp.tables;
    const slots = new Map<number, number>();
    for (const [slot, ifindex] of t.ports.dump()) if (ifindex !== 0) slots.set(ifindex, slot);
    const ifaces = new Map<string, InterfaceInfo>();
    for (const n of upsert) {
      if (ifaces.has(n.target)) continue;
      const i = this.resolve(n.target);
      if (!slots.has(i.ifindex) || t.portInfo.lookup(slots.get(i.ifindex) as number)?.smac !== i.mac)
        throw new ExposureError(undefined, 'target', `${n.target} is not a port yet: a full reconcile is needed`);
      ifaces.set(n.target, i);
    }
    if (mirror.ids === undefined) mirror.ids = new Set([...now.values()].map((e) => e.value.id));
    const ids = mirror.ids;
    let nextId = 0;
    const writes: Record<Table, [unknown, ExposureValue][]> = { exactV4: [], exactV6: [], lpmV4: [], lpmV6: [] };
    const entries: [string, Entry, NormalizedExposure][] = [];
    let added = 0;
    let updated = 0;
    let lpm = false;
    for (const n of upsert) {
      const table = tableOf(n);
      if (table === 'lpmV4' || table === 'lpmV6') lpm = true;
      const iface = ifaces.get(n.target) as InterfaceInfo;
      const have = now.get(n.key);
      let id: number;
      if (have && have.table === table) id = have.value.id;
      else {
        while (ids.has(nextId)) nextId++;
        id = nextId;
        ids.add(id);
        this.dp.exposureStats.zero(id);
      }
      const value: ExposureValue = { dmac: n.mac, smac: iface.mac, vlan: n.vlan, port: slots.get(iface.ifindex) as number, id, flags: 0 };
      if (have && have.table === table && sameValue(have.value, value)) {
        this.written.set(n, have);
        continue;
      }
      have ? updated++ : added++;
      const key = n.exact ? n.addr : { prefixlen: n.prefixlen, addr: n.addr };
      writes[table].push([key, value]);
      entries.push([n.key, { table, key, value }, n]);
    }
    // subnets switch the LPM lookups on and off, which only a full apply does
    if (lpm || remove.some((k) => now.get(k)?.table === 'lpmV4' || now.get(k)?.table === 'lpmV6')) {
      throw new ExposureError(undefined, 'exposures', 'a subnet exposure: a full reconcile is needed');
    }
    try {
      for (const table of ['exactV4', 'exactV6'] as const) if (writes[table].length) this.writer(table).updateBatch(writes[table]);
      for (const [k, e, n] of entries) {
        now.set(k, e);
        this.written.set(n, e);
      }
      const gone: Entry[] = [];
      for (const k of remove) {
        const e = now.get(k);
        if (e && (e.table === 'exactV4' || e.table === 'exactV6')) gone.push(e);
      }
      for (const table of ['exactV4', 'exactV6'] as const) {
        const keys = gone.filter((e) => e.table === table).map((e) => e.key);
        if (keys.length) this.writer(table).deleteBatch(keys);
      }
      for (const k of remove) {
        const e = now.get(k);
        if (e && (e.table === 'exactV4' || e.table === 'exactV6')) {
          now.delete(k);
          ids.delete(e.value.id);
        }
      }
      return { added, updated, removed: gone.length };
    } catch (err) {
      this.mirror = undefined;
      throw err;
    }
  }

  /** What the maps hold now, by "addr/len". */
  current(): Map<string, Entry> {
    const t = this.dp.tables;
    const out = new Map<string, Entry>();
    for (const table of ['exactV4', 'exactV6', 'lpmV4', 'lpmV6'] as const) {
      for (const [key, value] of (t[table] as { dump(): [unknown, ExposureValue][] }).dump()) {
        out.set(keyString(table, key), { table, key, value });
      }
    }
    return out;
  }

  /**
   * Make the maps hold exactly `desired` (with `prune: false`, add and update
   * only: what is not desired stays until a pruning pass, e.g. after its BGP
   * withdrawal). Throws, having written nothing, on invalid input. A Map from
   * validateExposures is taken as already validated.
   */
  apply(desired: readonly Exposure[] | Map<string, NormalizedExposure>, opts: { prune?: boolean; verify?: boolean } = {}): ReconcileResult {
    try {
      return this.applyOnce(desired instanceof Map ? desired : validateExposures(desired), desired instanceof Map ? [...desired.values()] : desired, opts);
    } catch (err) {
      this.mirror = undefined; // a failure part-way: read the maps again next time
      throw err;
    }
  }

  private applyOnce(wanted: Map<string, NormalizedExposure>, desired: readonly Exposure[], opts: { prune?: boolean; verify?: boolean }): ReconcileResult {
    const prune = opts.prune ?? true;
    const list = [...wanted.values()];

    // resolve every target first: an unknown interface fails before any write
    const ifaces = new Map<string, InterfaceInfo>();
    list.forEach((n) => {
      if (ifaces.has(n.target)) return;
      try {
        ifaces.set(n.target, this.resolve(n.target));
      } catch (err) {
        const index = desired.findIndex((e) => e?.target === n.target);
        throw new ExposureError(index, 'target', `interface ${n.target}: ${(err as Error).message.split('\n')[0]}`);
      }
    });
    const cap = this.dp.capacity;
    const counts = { exactV4: 0, exactV6: 0, lpmV4: 0, lpmV6: 0 };
    for (const n of list) counts[tableOf(n)]++;
    if (counts.exactV4 > cap.exposures || counts.exactV6 > cap.exposures) {
      throw new ExposureError(
        undefined,
        'exposures',
        `${Math.max(counts.exactV4, counts.exactV6)} exact exposures exceed the capacity of ${cap.exposures} (raise maxExposures)`,
      );
    }

    const t = this.dp.tables;
    if (opts.verify || !this.mirror || Date.now() - this.mirror.readAt > Reconciler.MIRROR_MAX_AGE_MS) {
      this.mirror = { entries: this.current(), readAt: Date.now() };
    }
    const now = this.mirror.entries;
    this.mirror.ids = undefined;

    // ports: re-use the slot a target already has, else take a free one
    const portSlots = new Map<number, number>(); // ifindex -> slot
    const usedSlots = new Set<number>();
    for (const [slot, ifindex] of t.ports.dump()) {
      if (ifindex !== 0) {
        portSlots.set(ifindex, slot);
        usedSlots.add(slot);
      }
    }
    const neededIfindexes = new Set([...ifaces.values()].map((i) => i.ifindex));
    let portsAdded = 0;
    for (const iface of ifaces.values()) {
      let slot = portSlots.get(iface.ifindex);
      if (slot === undefined) {
        slot = 0;
        while (usedSlots.has(slot) && slot < DP_MAX_PORTS) slot++;
        if (slot >= DP_MAX_PORTS) throw new ExposureError(undefined, 'target', `more than ${DP_MAX_PORTS} target interfaces`);
        portSlots.set(iface.ifindex, slot);
        usedSlots.add(slot);
      }
      // the port's source MAC first, then the port itself
      const info = t.portInfo.lookup(slot);
      if (info?.smac !== iface.mac || info.mtu !== (iface.mtu ?? 0)) t.portInfo.update(slot, { smac: iface.mac, mtu: iface.mtu ?? 0 });
      if (t.ports.lookup(slot) !== iface.ifindex) {
        const s = slot;
        this.dp.inNetns(() => t.ports.update(s, iface.ifindex));
        portsAdded++;
      }
    }

    // exposure ids: keep each one's id (its counters), give new ones free ids
    const usedIds = new Set([...now.values()].map((e) => e.value.id));
    let nextId = 0;
    const takeId = (): number => {
      while (usedIds.has(nextId)) nextId++;
      usedIds.add(nextId);
      this.dp.exposureStats.zero(nextId);
      return nextId;
    };

    const writes: Record<Table, [unknown, ExposureValue][]> = { exactV4: [], exactV6: [], lpmV4: [], lpmV6: [] };
    const pendingMirror: [string, Entry][] = [];
    let added = 0;
    let updated = 0;
    let unchanged = 0;
    for (const n of list) {
      const have = now.get(n.key);
      // the same validated exposure as last time, and the maps still hold what we wrote for it
      const ifc = ifaces.get(n.target) as InterfaceInfo;
      if (have !== undefined && this.written.get(n) === have && portSlots.get(ifc.ifindex) === have.value.port && ifc.mac === have.value.smac) {
        unchanged++;
        continue;
      }
      const table = tableOf(n);
      const iface = ifaces.get(n.target) as InterfaceInfo;
      const value: ExposureValue = {
        dmac: n.mac,
        smac: iface.mac,
        vlan: n.vlan,
        port: portSlots.get(iface.ifindex) as number,
        id: have && have.table === table ? have.value.id : takeId(),
        flags: 0,
      };
      if (have && have.table === table && sameValue(have.value, value)) {
        this.written.set(n, have);
        unchanged++;
        continue;
      }
      have ? updated++ : added++;
      const key = n.exact ? n.addr : { prefixlen: n.prefixlen, addr: n.addr };
      writes[table].push([key, value]);
      const entry = { table, key, value };
      pendingMirror.push([n.key, entry]);
      this.written.set(n, entry);
    }

    const LPM = DpConfigFlag.lpmV4 | DpConfigFlag.lpmV6;
    const lpmFlags = (counts.lpmV4 ? DpConfigFlag.lpmV4 : 0) | (counts.lpmV6 ? DpConfigFlag.lpmV6 : 0);
    // read-modify-write of the LPM bits only, reading right before writing:
    // the slot table sets its own bits in the same word while it is written
    const setLpm = (f: (lpm: number) => number): void => updateConfigFlags(t.config, LPM, f);
    // entries first, then the lookups that use them
    for (const table of ['exactV4', 'exactV6', 'lpmV4', 'lpmV6'] as const) {
      if (writes[table].length) this.writer(table).updateBatch(writes[table]);
    }
    setLpm((lpm) => lpm | lpmFlags);
    for (const [k, e] of pendingMirror) {
      // an entry that moved tables (never for one key today) is removed from its old one below
      now.set(k, e);
    }

    if (!prune) {
      let extra = 0;
      for (const k of now.keys()) if (!wanted.has(k)) extra++;
      return { added, updated, removed: 0, unchanged, portsAdded, portsRemoved: 0, total: wanted.size + extra };
    }
    // removals: switch lookups off first, then delete
    const gone = [...now.entries()].filter(([key]) => !wanted.has(key));
    setLpm(() => lpmFlags);
    for (const table of ['exactV4', 'exactV6', 'lpmV4', 'lpmV6'] as const) {
      const keys = gone.filter(([, e]) => e.table === table).map(([, e]) => e.key);
      if (keys.length) this.writer(table).deleteBatch(keys);
    }
    for (const [k] of gone) now.delete(k);

    // ports nobody uses any more
    let portsRemoved = 0;
    for (const [ifindex, slot] of portSlots) {
      if (neededIfindexes.has(ifindex)) continue;
      t.ports.delete(slot);
      portsRemoved++;
    }
    return { added, updated, removed: gone.length, unchanged, portsAdded, portsRemoved, total: wanted.size };
  }
}

export interface DeltaResult {
  added: number;
  updated: number;
  removed: number;
}
