// The data plane's thin adapter over its BPF object: typed tables, attach /
// re-adopt of the XDP ingress and TC return programs, counters. Everything
// is pinned under <pinRoot>/dataplane so a restarted agent re-adopts the
// programs and maps instead of flushing them: traffic never stops.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import {
  BpfError,
  BpfMap,
  MapType,
  BpfObject,
  DEFAULT_PIN_ROOT,
  ensurePinDir,
  ipv4,
  Link,
  numPossibleCpus,
  type Program,
  sumPerCpu,
  u32,
  withNetns,
} from '../ebpf/index.js';
import { objectPath } from '../paths.js';
import { type CounterValue, StripedCounters } from './counters.js';
import { SlotTable, slotTableSize } from './slots.js';
import {
  Counter,
  DP_MAX_PORTS,
  DpConfig,
  PortInfo,
  L2Local,
  L2_DELETED,
  L2_PROBES,
  L2_SLOTS,
  l2Home,
  DpConfigFlag,
  type DpReasonName,
  DpReason,
  ExposureValue,
  In6Addr,
  LpmV4,
  LpmV6,
  RtReason,
  type RtReasonName,
} from './abi.js';
import { setConfigFlag } from './config-flags.js';

export interface DataplaneOptions {
  /** bpffs directory for pins (default /sys/fs/bpf/stackbpf). */
  pinRoot?: string;
  /** Network namespace of the node (default: this process's). */
  netns?: string;
  /** Compiled object (default: the packaged bpf/build/dataplane.o). */
  object?: string;
  /** Capacity: exposures (exact and LPM together) and blocklist rules. */
  maxExposures?: number;
  maxBlockRules?: number;
}

export interface Attached {
  ifname: string;
  hook: 'xdp' | 'tc';
  /** XDP: the mode the kernel used. */
  mode?: string;
  /** True when a pinned link from an earlier run was re-used (no gap in traffic). */
  readopted: boolean;
}

const sumCounters = (values: CounterValue[]): CounterValue => ({
  packets: sumPerCpu(values.map((v) => v.packets)),
  bytes: sumPerCpu(values.map((v) => v.bytes)),
});

function countersByName<N extends string>(map: BpfMap<number, CounterValue[]>, names: Record<N, number>): Record<N, CounterValue> {
  const out = {} as Record<N, CounterValue>;
  for (const [name, idx] of Object.entries(names) as [N, number][]) out[name] = sumCounters(map.lookup(idx) ?? []);
  return out;
}

export class Dataplane {
  readonly pinDir: string;
  readonly netns: string | undefined;
  private readonly obj: BpfObject;

  private constructor(obj: BpfObject, pinDir: string, netns: string | undefined) {
    this.obj = obj;
    this.pinDir = pinDir;
    this.netns = netns;
  }

  /** Load the programs, creating maps or re-adopting the pinned ones. */
  static async open(opts: DataplaneOptions = {}): Promise<Dataplane> {
    const pinDir = `${opts.pinRoot ?? DEFAULT_PIN_ROOT}/dataplane`;
    ensurePinDir(`${pinDir}/links`);
    const obj = BpfObject.open(opts.object ?? objectPath('dataplane'), { pinMaps: { dir: `${pinDir}/maps` } });
    try {
      const exposures = opts.maxExposures ?? 131072;
      const rules = opts.maxBlockRules ?? 65536;
      if (exposures * 2 > 1 << 24) throw new BpfError(`maxExposures ${exposures} is too large: at most ${1 << 23}`, { op: 'dataplane open' });
      const slots = slotTableSize(exposures);
      for (const f of ['exp4', 'exp6']) {
        obj.setMaxEntries(`${f}_slots`, slots);
        obj.setConstant(`${f}_mask`, slots - 1);
      }
      for (const m of ['exp_v4', 'exp_v6']) obj.setMaxEntries(m, exposures);
      // ids of both families: below 2 x exposures; a stripe of counters per possible CPU
      const stride = exposures * 2;
      const cpus = numPossibleCpus();
      if (stride * cpus >= 2 ** 31)
        throw new BpfError(`maxExposures ${exposures} is too large for ${cpus} CPUs: the counters would need ${stride * cpus} entries`, {
          op: 'dataplane open',
        });
      obj.setMaxEntries('exp_stats', stride * cpus);
      obj.setConstant('exp_stats_stride', stride);
      dropOutdatedCounterPins(`${pinDir}/maps`);
      for (const m of ['block_v4', 'block_v6']) obj.setMaxEntries(m, rules);
      obj.setMaxEntries('block_stats', rules * 2);
      await obj.load();
    } catch (err) {
      obj.close();
      throw err;
    }
    return new Dataplane(obj, pinDir, opts.netns);
  }

  /** The loaded object, for tools that drive its other programs and maps (benchmarks, tests). */
  get object(): BpfObject {
    return this.obj;
  }

  get ingressProgram(): Program {
    return this.obj.program('xdp_ingress');
  }
  get returnProgram(): Program {
    return this.obj.program('tc_return');
  }

  private tableViews: ReturnType<Dataplane['makeTables']> | undefined;

  /** Typed views of the tables (made once: they share the object's fds). */
  get tables(): ReturnType<Dataplane['makeTables']> {
    this.tableViews ??= this.makeTables();
    return this.tableViews;
  }

  private makeTables() {
    const m = (n: string): BpfMap => this.obj.map(n);
    return {
      exactV4: m('exp_v4').typed(ipv4, ExposureValue),
      exactV6: m('exp_v6').typed(In6Addr, ExposureValue),
      lpmV4: m('exp_lpm_v4').typed(LpmV4, ExposureValue),
      lpmV6: m('exp_lpm_v6').typed(LpmV6, ExposureValue),
      blockV4: m('block_v4').typed(LpmV4, u32),
      blockV6: m('block_v6').typed(LpmV6, u32),
      ports: m('tx_ports').typed(u32, u32),
      portInfo: m('port_info').typed(u32, PortInfo),
      config: m('dp_config').typed(u32, DpConfig),
      blockStats: m('block_stats').perCpu(u32, Counter),
      verdicts: m('dp_verdicts').perCpu(u32, Counter),
      returnVerdicts: m('rt_verdicts').perCpu(u32, Counter),
    };
  }

  private exact4Table: SlotTable | undefined;
  private exact6Table: SlotTable | undefined;

  /**
   * The IPv4 exact-match table to write through: it keeps exp_v4 and the
   * fast path's slot table in step (exp_v4 alone would not be seen).
   */
  get exact4(): SlotTable {
    this.exact4Table ??= SlotTable.ipv4(
      this.obj.map('exp4_slots'),
      this.obj.map('exp4_pending'),
      this.tables.exactV4,
      this.tables.config,
      this.obj.program('exp4_write'),
    );
    return this.exact4Table;
  }

  /** The same for IPv6: exp_v6 and exp6_slots. */
  get exact6(): SlotTable {
    this.exact6Table ??= SlotTable.ipv6(
      this.obj.map('exp6_slots'),
      this.obj.map('exp6_pending'),
      this.tables.exactV6,
      this.tables.config,
      this.obj.program('exp6_write'),
    );
    return this.exact6Table;
  }

  get capacity(): { exposures: number; blockRules: number; ports: number } {
    return {
      exposures: this.obj.map('exp_v4').info.maxEntries,
      blockRules: this.obj.map('block_v4').info.maxEntries,
      ports: DP_MAX_PORTS,
    };
  }

  private linkPath(hook: 'xdp' | 'tc', ifname: string): string {
    return `${this.pinDir}/links/${hook}-${this.netns ?? 'root'}-${ifname}`;
  }

  /**
   * XDP ingress on a provider NIC. A pinned link from an earlier run gets
   * the new program swapped in atomically instead of a detach/attach.
   */
  attachIngress(ifname: string, mode: 'auto' | 'native' | 'generic' = 'auto'): Attached {
    return this.attach('xdp', ifname, () => this.ingressProgram.attachXdp(ifname, { netns: this.netns, mode }));
  }

  /** TC ingress on the VM side (br-ex): the return path. */
  attachReturn(ifname: string): Attached {
    return this.attach('tc', ifname, () => {
      const a = this.returnProgram.attachTc(ifname, { direction: 'ingress', netns: this.netns, mode: 'tcx' });
      return a as Link;
    });
  }

  private attach(hook: 'xdp' | 'tc', ifname: string, make: () => Link): Attached {
    const path = this.linkPath(hook, ifname);
    const program = hook === 'xdp' ? this.ingressProgram : this.returnProgram;
    if (existsSync(path)) {
      const link = Link.fromPin(path);
      try {
        link.update(program.fd);
        return { ifname, hook, readopted: true, mode: hook === 'xdp' ? 'pinned' : 'tcx' };
      } catch (err) {
        // the interface went away and took the attachment with it: start over
        link.detach();
        if (!(err instanceof BpfError)) throw err;
      } finally {
        link.close();
      }
    }
    const link = make();
    try {
      link.pin(path);
    } finally {
      link.close(); // the pin holds it
    }
    return { ifname, hook, readopted: false, ...(link.xdpMode ? { mode: link.xdpMode } : { mode: 'tcx' }) };
  }

  /** Detach from an interface (removes the pin). */
  detach(hook: 'xdp' | 'tc', ifname: string): boolean {
    const path = this.linkPath(hook, ifname);
    if (!existsSync(path)) return false;
    Link.fromPin(path).detach();
    return true;
  }

  /** Interfaces this node's data plane is attached to (from the pins). */
  attachments(): { hook: 'xdp' | 'tc'; ifname: string }[] {
    const dir = `${this.pinDir}/links`;
    if (!existsSync(dir)) return [];
    const prefix = `-${this.netns ?? 'root'}-`;
    return readdirSync(dir)
      .filter((n) => n.includes(prefix))
      .map((n) => ({ hook: n.split('-')[0] as 'xdp' | 'tc', ifname: n.slice(n.indexOf(prefix) + prefix.length) }));
  }

  /** Per-verdict counters of the ingress path, summed over CPUs. */
  verdicts(): Record<DpReasonName, CounterValue> {
    return countersByName(this.tables.verdicts, DpReason);
  }

  /** Per-verdict counters of the return path, summed over CPUs. */
  returnVerdicts(): Record<RtReasonName, CounterValue> {
    return countersByName(this.tables.returnVerdicts, RtReason);
  }

  private exposureStatsView: StripedCounters | undefined;

  /** Per-exposure counters, read and zeroed through their mapped memory. */
  get exposureStats(): StripedCounters {
    if (!this.exposureStatsView) {
      const map = this.obj.map('exp_stats');
      const cpus = numPossibleCpus();
      this.exposureStatsView = new StripedCounters(map, map.info.maxEntries / cpus, cpus);
    }
    return this.exposureStatsView;
  }

  /** What the fast path forwarded for exposure `id`, summed over CPUs. */
  exposureCounter(id: number): CounterValue {
    return this.exposureStats.read(id);
  }

  private l2LocalView: ReturnType<Dataplane['makeL2Local']> | undefined;
  private makeL2Local() {
    return this.obj.map('l2_local').typed(u32, L2Local);
  }
  /** l2_local (apart from the tables: an object built before it existed has none). */
  get l2Local(): ReturnType<Dataplane['makeL2Local']> {
    this.l2LocalView ??= this.makeL2Local();
    return this.l2LocalView;
  }

  /**
   * This host's link-layer addresses per ingress interface and VLAN: frames
   * to any other destination MAC are left to the kernel (RFC 1812 5.3.4).
   * Replaces what was registered; an empty list switches the check off
   * (only link-layer broadcast and multicast are refused then).
   */
  setLocalAddresses(list: readonly { ifindex: number; vid: number; mac: string }[]): { added: number; removed: number } {
    const config = this.tables.config;
    const table = this.l2Local;
    const key = (k: { ifindex: number; vid: number }): string => `${k.ifindex}/${k.vid}`;
    const want = new Map(list.map((a) => [key(a), a]));
    // what the slots hold: key -> [slot, mac]
    const slots = new Map<number, { ifindex: number; vid: number; mac: string }>();
    for (const [slot, v] of table.dump()) if (v.ifindex !== 0) slots.set(slot, v);
    const have = new Map<string, { slot: number; mac: string; ifindex: number; vid: number }>();
    for (const [slot, v] of slots) if (v.ifindex !== L2_DELETED) have.set(key(v), { slot, ...v });
    let added = 0;
    let removed = 0;
    const free = (slot: number): boolean => {
      const v = slots.get(slot);
      return v === undefined || v.ifindex === L2_DELETED;
    };
    const remove = (h: { slot: number; ifindex: number; vid: number; mac: string }): void => {
      table.update(h.slot, { mac: h.mac, vid: h.vid, ifindex: L2_DELETED, pad: 0 });
      slots.set(h.slot, { ...h, ifindex: L2_DELETED });
      removed++;
    };
    // plan every placement first: nothing is written when one does not fit
    const plan: { slot: number; a: { ifindex: number; vid: number; mac: string }; old?: { slot: number; ifindex: number; vid: number; mac: string } }[] = [];
    const taken = new Set<number>();
    for (const [k, a] of want) {
      const h = have.get(k);
      if (h?.mac === a.mac) continue;
      const home = l2Home(a.ifindex, a.vid);
      let slot = -1;
      for (let i = 0; i < L2_PROBES && slot < 0; i++) {
        const at = (home + i) & (L2_SLOTS - 1);
        if (free(at) && !taken.has(at)) slot = at;
      }
      if (slot < 0)
        throw new BpfError(`no free slot for ${a.mac} (ifindex ${a.ifindex}, VLAN ${a.vid & 0xfff}) in l2_local: ${L2_PROBES} slots from its home are taken`, {
          op: 'l2_local',
        });
      taken.add(slot);
      plan.push({ slot, a, ...(h ? { old: h } : {}) });
    }
    // a changed address: the new entry goes in first (another slot), then the old one goes
    for (const { slot, a, old } of plan) {
      // the MAC first, the ifindex (which makes the slot live) last
      table.update(slot, { mac: a.mac, vid: a.vid, ifindex: 0, pad: 0 });
      table.update(slot, { mac: a.mac, vid: a.vid, ifindex: a.ifindex, pad: 0 });
      slots.set(slot, a);
      added++;
      if (old) remove(old);
    }
    // entries before the check is on; the check off before entries go
    setConfigFlag(config, DpConfigFlag.l2Check, want.size > 0);
    for (const [k, h] of have) if (!want.has(k)) remove(h);
    return { added, removed };
  }

  /** Run a map operation in the node's namespace (devmap entries resolve ifindexes there). */
  inNetns<T>(fn: () => T): T {
    return withNetns(this.netns, fn);
  }

  /** Release this process's references; pinned programs, links and maps stay. */
  close(): void {
    this.exposureStatsView?.close();
    this.exposureStatsView = undefined;
    this.obj.close();
  }

  /** Detach everything and remove every pin of this data plane. */
  destroy(): void {
    for (const a of this.attachments()) this.detach(a.hook, a.ifname);
    this.close();
    if (existsSync(this.pinDir)) rmSync(this.pinDir, { recursive: true, force: true });
  }
}

/**
 * Counter maps whose layout an upgrade changed are dropped from the pins before
 * load, so the new object makes them afresh: counters restart from zero, while
 * the tables that carry traffic are re-adopted as they are (a program still
 * running keeps its own reference to the old map until the link is swapped).
 * exp_stats was a per-CPU array before it became CPU stripes in one array.
 */
function dropOutdatedCounterPins(dir: string): void {
  const path = `${dir}/exp_stats`;
  if (!existsSync(path)) return;
  let outdated = false;
  try {
    const m = BpfMap.fromPin(path);
    outdated = m.info.type !== MapType.array;
    m.close();
  } catch {
    return; // not ours to judge: the load reports it
  }
  if (outdated) rmSync(path);
}
