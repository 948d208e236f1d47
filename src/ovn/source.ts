// OVN as a source of exposures. It keeps replicas of the OVN database (SB or
// NB) and of the local Open vSwitch database (this chassis' name and its
// bridge mappings, as ovn-controller reads them), recomputes this node's
// exposures whenever a replica changes, and tells the agent when the result
// differs. Nothing polls OVN: the only timer re-checks bridges that an
// exposure is waiting for, and only while one is.
//
// Safety: until the first full sync the source is not ready, and the agent
// neither prunes maps nor withdraws routes; a lost connection keeps the
// replica (and so the exposures) as they were until the resync.
import type { ExposureSource } from '../dataplane/sources.js';
import type { Exposure } from '../dataplane/exposure.js';
import type { Logger } from '../log.js';
import { computeNb, computeSb, type OvnExposures } from './model.js';
import { type Condition, OvsdbClient, type OvsdbStats, type SslFiles, type TableMonitor } from './ovsdb.js';

export interface OvnSourceOptions {
  mode: 'sb' | 'nb';
  /** OVN database remote(s): the SB (6642) in sb mode, the NB (6641) in nb mode. */
  connection: string;
  ssl?: SslFiles;
  /** Local Open vSwitch database; used when chassis or bridge mappings are not given. */
  ovsConnection: string;
  /** This node's chassis name(s); default: external_ids:system-id and :hostname of the local OVS. */
  chassis?: string[];
  /** "physnet1:br-ex,physnet2:br-vlan"; default: external_ids:ovn-bridge-mappings of the local OVS. */
  bridgeMappings?: string;
  exposeTenantNetworks: boolean;
  /** Does this interface exist where the data plane forwards (its namespace)? */
  hasInterface: (ifname: string) => boolean;
  log: Logger;
  probeIntervalMs?: number;
}

export interface OvnSourceStatus {
  mode: 'sb' | 'nb';
  ready: boolean;
  chassis: string[];
  bridgeMappings: Record<string, string>;
  exposures: number;
  pending: OvnExposures['pending'];
  conflicts: OvnExposures['conflicts'];
  recomputes: number;
  lastRecomputeMs: number;
  ovn: OvsdbStats;
  ovs: OvsdbStats | undefined;
}

export function parseBridgeMappings(s: string, where = 'bridge_mappings'): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [net, bridge, extra] = part.split(':');
    if (!net || !bridge || extra !== undefined) throw new Error(`${where}: "${part}" is not NETWORK:BRIDGE`);
    m.set(net, bridge);
  }
  return m;
}

const NB_TABLES: Record<string, TableMonitor> = {
  Logical_Switch: { columns: ['name', 'ports'] },
  Logical_Switch_Port: { columns: ['name', 'type', 'addresses', 'options', 'external_ids', 'up', 'tag'] },
  Logical_Router: { columns: ['name', 'ports', 'nat'] },
  // all columns: newer OVN adds `status` (hosting-chassis), older has none
  Logical_Router_Port: {},
  NAT: { columns: ['type', 'external_ip', 'external_mac', 'logical_port', 'external_ids'] },
  Gateway_Chassis: { columns: ['chassis_name', 'priority'] },
  HA_Chassis_Group: { columns: ['ha_chassis'] },
  HA_Chassis: { columns: ['chassis_name', 'priority'] },
};

// Only what a node needs: every binding that is not a VM port (localnet,
// patch, chassisredirect: few, and needed to place VM ports and FIPs), and
// the VM ports bound to this chassis (added once the chassis row is known).
const SB_NON_VM: Condition = ['type', '!=', ''];
const sbTables = (): Record<string, TableMonitor> => ({
  Chassis: { columns: ['name', 'hostname'] },
  Port_Binding: { columns: ['logical_port', 'type', 'mac', 'chassis', 'datapath', 'options', 'tag', 'nat_addresses', 'up'], where: [SB_NON_VM] },
});

export class OvnSource implements ExposureSource {
  readonly name = 'ovn';
  private readonly listeners: (() => void)[] = [];
  readonly ovn: OvsdbClient;
  readonly ovs: OvsdbClient | undefined;
  private result: OvnExposures = { exposures: [], pending: [], conflicts: [] };
  private scheduled = false;
  private waitTimer: NodeJS.Timeout | undefined;
  private recomputes = 0;
  private lastMs = 0;
  private chassisUuids = '';
  private stopped = false;
  private noChassisWarned = false;

  constructor(private readonly opts: OvnSourceOptions) {
    const log = opts.log.child({ component: 'ovn' });
    this.ovn = new OvsdbClient({
      remote: opts.connection,
      database: opts.mode === 'sb' ? 'OVN_Southbound' : 'OVN_Northbound',
      tables: opts.mode === 'sb' ? sbTables() : NB_TABLES,
      ...(opts.ssl ? { ssl: opts.ssl } : {}),
      log,
      ...(opts.probeIntervalMs ? { probeIntervalMs: opts.probeIntervalMs } : {}),
    });
    if (!opts.chassis || opts.bridgeMappings === undefined) {
      this.ovs = new OvsdbClient({
        remote: opts.ovsConnection,
        database: 'Open_vSwitch',
        tables: { Open_vSwitch: { columns: ['external_ids'] }, Interface: { columns: ['name', 'ofport'] } },
        log,
      });
      this.ovs.on('change', () => this.schedule());
    }
    this.ovn.on('change', () => this.schedule());
    this.ovn.on('synced', () => this.schedule());
  }

  start(): this {
    this.ovs?.start();
    this.ovn.start();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.waitTimer) clearTimeout(this.waitTimer);
    await Promise.all([this.ovn.stop(), this.ovs?.stop()]);
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  current(): readonly Exposure[] {
    return this.result.exposures;
  }

  /** What the agent last took as this source's set (baseline of takeChanges). */
  private taken: readonly Exposure[] = [];

  /**
   * The exposures added and removed since the last call (an exposure whose
   * forwarding changed is in both); the agent applies just these between full
   * reconciles. Unchanged exposures are the same objects from one recompute
   * to the next, so this is a pass over two lists by identity.
   */
  takeChanges(): { added: Exposure[]; removed: Exposure[] } {
    const now = this.result.exposures;
    // a generation mark per exposure object in one long-lived map, instead of two new sets of
    // every exposure per change: with 10,000 ports those were large objects, old-generation
    // garbage on every OVN change
    const gen = ++this.takeGen;
    const added: Exposure[] = [];
    for (const e of now) {
      if (!this.takenGen.has(e)) added.push(e);
      this.takenGen.set(e, gen);
    }
    const removed: Exposure[] = [];
    for (const e of this.taken) {
      if (this.takenGen.get(e) !== gen) {
        removed.push(e);
        this.takenGen.delete(e);
      }
    }
    this.taken = now;
    return { added, removed };
  }
  private takeGen = 0;
  private readonly takenGen = new Map<Exposure, number>();

  /** Ready once OVN (and the local OVS, when used) have been read in full at least once. */
  ready(): boolean {
    return this.recomputes > 0 && this.ovn.stats().fullSyncs > 0 && (!this.ovs || this.ovs.stats().fullSyncs > 0);
  }

  chassis(): string[] {
    if (this.opts.chassis) return this.opts.chassis;
    const row = this.ovs ? [...this.ovs.rows('Open_vSwitch')][0] : undefined;
    const ids = (row?.external_ids ?? {}) as Record<string, string>;
    return [ids['system-id'], ids.hostname].filter((x): x is string => !!x);
  }

  bridgeMappings(): Map<string, string> {
    if (this.opts.bridgeMappings !== undefined) return parseBridgeMappings(this.opts.bridgeMappings);
    const row = this.ovs ? [...this.ovs.rows('Open_vSwitch')][0] : undefined;
    const raw = ((row?.external_ids ?? {}) as Record<string, string>)['ovn-bridge-mappings'] ?? '';
    try {
      return parseBridgeMappings(raw, 'Open_vSwitch external_ids:ovn-bridge-mappings');
    } catch (err) {
      this.opts.log.error('ignoring bad ovn-bridge-mappings', { error: (err as Error).message });
      return new Map();
    }
  }

  status(): OvnSourceStatus {
    return {
      mode: this.opts.mode,
      ready: this.ready(),
      chassis: this.chassis(),
      bridgeMappings: Object.fromEntries(this.bridgeMappings()),
      exposures: this.result.exposures.length,
      pending: this.result.pending.slice(0, 100),
      conflicts: this.result.conflicts.slice(0, 100),
      recomputes: this.recomputes,
      lastRecomputeMs: this.lastMs,
      ovn: this.ovn.stats(),
      ovs: this.ovs?.stats(),
    };
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.recompute();
    });
  }

  /** Recompute now (also what the safety-net resync calls); tells listeners if the set changed. */
  recompute(): void {
    if (!this.ovn.isSynced() && this.recomputes === 0) return; // nothing to say before the first sync
    if (this.ovs && !this.ovs.isSynced() && this.ovs.stats().fullSyncs === 0) return;
    const t0 = performance.now();
    const chassis = this.chassis();
    // said once per change of state, not on every recompute
    if ((chassis.length === 0) !== this.noChassisWarned) {
      this.noChassisWarned = chassis.length === 0;
      if (this.noChassisWarned)
        this.opts.log.warn(
          'no chassis name: set ovn.chassis or external_ids:system-id in the local Open vSwitch database; nothing is exposed from OVN until then',
        );
      else this.opts.log.info('chassis known', { chassis });
    }
    if (this.opts.mode === 'sb') this.narrowSb(chassis);
    const opts = {
      chassis,
      bridgeMappings: this.bridgeMappings(),
      exposeTenantNetworks: this.opts.exposeTenantNetworks,
      bridgeReady: (b: string) => this.opts.hasInterface(b),
    };
    const result = this.opts.mode === 'sb' ? computeSb(this.ovn, opts) : computeNb(this.ovn, opts);
    // hand out the previous object for an unchanged exposure: consumers that remember
    // what they validated (normalizeExposure) then skip it. VM ports already come back as
    // the same objects (model.ts remembers them per row); the rest are matched by prefix.
    const old0 = this.result.exposures;
    let prev: Map<string, Exposure> | undefined;
    result.exposures = result.exposures.map((e, i) => {
      // one port added or removed shifts the rest by one: look there before building a map
      if (old0[i] === e || old0[i + 1] === e || old0[i - 1] === e) return e;
      prev ??= new Map(old0.map((x) => [x.prefix, x]));
      const p = prev.get(e.prefix);
      return p && p.target === e.target && p.mac === e.mac && p.vlan === e.vlan && p.owner === e.owner && p.reason === e.reason ? p : e;
    });
    this.lastMs = performance.now() - t0;
    this.recomputes++;
    // unchanged exposures are the previous objects (above), so identity says whether anything changed
    const old = this.result.exposures;
    const same = old.length === result.exposures.length && result.exposures.every((e, i) => e === old[i]);
    const first = this.recomputes === 1;
    if (result.conflicts.length && JSON.stringify(result.conflicts) !== JSON.stringify(this.result.conflicts))
      this.opts.log.warn('conflicting OVN claims: not exposed', { conflicts: result.conflicts.slice(0, 10), total: result.conflicts.length });
    this.result = result;
    this.armWait();
    if (!same || first) {
      for (const l of this.listeners) l();
    }
  }

  /** SB: once our Chassis row is known, also replicate the VM ports bound to it. */
  private narrowSb(chassis: string[]): void {
    const names = new Set(chassis);
    const uuids = [...this.ovn.rows('Chassis')]
      .filter((c) => names.has(String(c.name)) || names.has(String(c.hostname)))
      .map((c) => c._uuid)
      .sort();
    const key = uuids.join(',');
    if (key === this.chassisUuids) return;
    this.chassisUuids = key;
    const where: Condition[] = [SB_NON_VM, ...uuids.map((u): Condition => ['chassis', '==', ['uuid', u]])];
    this.ovn.setConditions('Port_Binding', where).catch((err: Error) => {
      this.chassisUuids = '';
      this.opts.log.warn('could not narrow the Port_Binding monitor; retrying on the next change', { error: err.message });
    });
  }

  /** While exposures wait for a bridge, look again every second. */
  private armWait(): void {
    if (this.waitTimer || this.stopped || this.result.pending.length === 0) return;
    this.waitTimer = setTimeout(() => {
      this.waitTimer = undefined;
      this.recompute();
    }, 1000);
    this.waitTimer.unref?.();
  }
}
