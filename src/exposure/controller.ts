// The exposure controller: keeps the data plane's exposure maps equal to the
// exposures its sources want (the file, the API, OVN) and announces them
// through FRR, entries before announcements and withdrawals before removals.
// Built by the exposure module (./module.ts); the blocklist in the same maps
// is offered to the response module as a SourceBlocker.
import { BpfError, ensureMounted, numPossibleCpus } from '../ebpf/index.js';
import { FrrDriver } from '../bgp/frr.js';
import type { StackbpfConfig } from '../config.js';
import { Dataplane } from '../dataplane/dataplane.js';
import { type Exposure, ExposureError, type NormalizedExposure, normalizeExposure, validateExposures } from '../dataplane/exposure.js';
import { localAddresses } from '../dataplane/l2.js';
import { Reconciler, type ReconcileResult } from '../dataplane/reconciler.js';
import { ApiSource, type ExposureSource, StaticSource } from '../dataplane/sources.js';
import type { Logger } from '../log.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { Blocklist } from '../dataplane/blocklist.js';
import { planDelta, reconcileMode } from './plan.js';

/** What the controller reads of the configuration: the core settings and the exposure module's sections. */
export type ExposureConfig = Pick<StackbpfConfig, 'pinRoot' | 'netns' | 'stateDir' | 'dataplane' | 'bgp' | 'ovn' | 'exposures'>;
import { ifindexOf, withNetns } from '../ebpf/netns.js';
import { OvnSource, type OvnSourceStatus } from '../ovn/source.js';

export interface ExposureStatus {
  exposures: number;
  attachments: { hook: string; ifname: string }[];
  lastReconcile: { at: string; result?: ReconcileResult; error?: string } | undefined;
  bgp: { configured: boolean; announced: number; lastError?: string } | undefined;
  ovn: OvnSourceStatus | undefined;
  verdicts: Record<string, { packets: string; bytes: string }>;
  returnVerdicts: Record<string, { packets: string; bytes: string }>;
}

/**
 * The return path asks the kernel FIB (bpf_fib_lookup), which refuses with
 * "forwarding disabled" unless the interface the reply arrives on forwards.
 * Only that interface is switched on; the provider NIC stays as it is.
 */
function enableFibLookups(ifname: string, netns: string | undefined): string[] {
  return withNetns(netns, () => {
    const changed: string[] = [];
    for (const fam of ['ipv4', 'ipv6']) {
      const f = `/proc/sys/net/${fam}/conf/${ifname}/forwarding`;
      try {
        if (readFileSync(f, 'utf8').trim() !== '1') {
          writeFileSync(f, '1');
          changed.push(fam);
        }
      } catch {
        /* family disabled on this interface */
      }
    }
    return changed;
  });
}

export class ExposureController {
  private readonly sources: ExposureSource[];
  readonly staticSource: StaticSource;
  readonly apiSource: ApiSource;
  readonly ovnSource: OvnSource | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly reconciler: Reconciler;
  private running: Promise<void> = Promise.resolve();
  private dirty = false;
  private scheduled = false;
  private stopped = false;
  private last: ExposureStatus['lastReconcile'];
  private bgpState: { configured: boolean; announced: number; lastError?: string } | undefined;
  private safetyTimer: NodeJS.Timeout | undefined;
  /**
   * The validated set the last full reconcile applied (all sources ready).
   * While only OVN changes after it, just the changes are applied.
   */
  private applied: Map<string, NormalizedExposure> | undefined;
  /** A source other than OVN changed, or the safety net asked: the next reconcile is a full one. */
  private fullNeeded = true;

  readonly blocklist: Blocklist;

  private constructor(
    readonly config: ExposureConfig,
    readonly dp: Dataplane,
    private readonly frr: FrrDriver | undefined,
    private readonly log: Logger,
  ) {
    this.blocklist = new Blocklist(dp);
    this.staticSource = new StaticSource(config.exposures);
    this.apiSource = new ApiSource(`${config.stateDir}/api-exposures.json`);
    this.sources = [this.staticSource, this.apiSource];
    if (config.ovn) {
      const o = config.ovn;
      this.ovnSource = new OvnSource({
        mode: o.mode,
        connection: o.connection,
        ...(o.ssl ? { ssl: o.ssl } : {}),
        ovsConnection: o.ovsConnection,
        ...(o.chassis ? { chassis: o.chassis } : {}),
        ...(o.bridgeMappings !== undefined ? { bridgeMappings: o.bridgeMappings } : {}),
        exposeTenantNetworks: o.exposeTenantNetworks,
        hasInterface: (ifname) => {
          try {
            ifindexOf(ifname, config.netns);
            return true;
          } catch {
            return false;
          }
        },
        log,
      });
      this.sources.push(this.ovnSource);
    }
    this.reconciler = new Reconciler(dp);
    for (const s of this.sources) {
      s.onChange(() => {
        if (s !== this.ovnSource) this.fullNeeded = true;
        this.schedule();
      });
    }
  }

  static async start(config: ExposureConfig, log: Logger): Promise<ExposureController> {
    ensureMounted('bpf');
    const dp = await Dataplane.open({
      pinRoot: config.pinRoot,
      ...(config.netns ? { netns: config.netns } : {}),
      maxExposures: config.dataplane.maxExposures,
      maxBlockRules: config.dataplane.maxBlockRules,
    });
    let frr: FrrDriver | undefined;
    try {
      for (const ifname of config.dataplane.providerInterfaces) {
        const a = dp.attachIngress(ifname, config.dataplane.xdpMode);
        log.info('xdp ingress attached', { ifname, mode: a.mode, readopted: a.readopted });
      }
      const l2 = localAddresses(config.dataplane.providerInterfaces, config.netns);
      dp.setLocalAddresses(l2);
      if (l2.length) log.info('link-layer destinations checked on ingress', { addresses: l2.map((a) => `${a.ifname} ${a.mac}`) });
      for (const ifname of config.dataplane.returnInterfaces) {
        const a = dp.attachReturn(ifname);
        log.info('tc return path attached', { ifname, readopted: a.readopted });
        const enabled = enableFibLookups(ifname, config.netns);
        if (enabled.length) log.info('forwarding enabled on the return interface: bpf_fib_lookup answers only where it is on', { ifname, families: enabled });
      }
      if (config.bgp) {
        const b = config.bgp;
        frr = new FrrDriver(
          { asn: b.asn, routerId: b.routerId, neighbors: b.neighbors },
          { vtysh: b.frr.vtysh, ...(b.frr.netns ? { netns: b.frr.netns } : {}), ...(b.frr.pathspace ? { pathspace: b.frr.pathspace } : {}) },
        );
      }
    } catch (err) {
      dp.close();
      throw err;
    }
    const agent = new ExposureController(config, dp, frr, log);
    log.info('exposure controller started', { cpus: numPossibleCpus(), pinRoot: config.pinRoot, netns: config.netns ?? '(own)' });
    if (frr) {
      agent.bgpState = { configured: false, announced: 0 };
      frr.watchRestarts(() => {
        log.warn('bgpd restarted: re-applying configuration and announcements');
        agent.bgpState = { configured: false, announced: 0 };
        agent.schedule();
      });
      // safety net for a restart the watch missed: cheap, one vtysh call
      agent.safetyTimer = setInterval(() => {
        void frr
          .isConfigured()
          .then((ok) => {
            if (!ok && agent.bgpState) {
              agent.bgpState.configured = false;
              agent.schedule();
            }
          })
          .catch(() => undefined);
      }, 30_000);
      agent.safetyTimer.unref();
    }
    if (agent.ovnSource) {
      agent.ovnSource.start();
      const secs = config.ovn?.resyncSeconds ?? 0;
      if (secs > 0) {
        // the safety net: a full recompute and a diff-based reconcile; cheap when nothing changed
        agent.resyncTimer = setInterval(() => {
          agent.ovnSource?.recompute();
          agent.fullNeeded = true;
          agent.schedule();
        }, secs * 1000);
        agent.resyncTimer.unref();
      }
    }
    await agent.reconcileNow();
    return agent;
  }

  /** Every source knows its full set (OVN has synced once). */
  sourcesReady(): boolean {
    return this.sources.every((s) => s.ready?.() ?? true);
  }

  /** The merged desired set of every source. */
  desired(): Exposure[] {
    return this.sources.flatMap((s) => [...s.current()]);
  }

  /** Reconcile soon (changes arriving together are applied together). */
  schedule(): void {
    this.dirty = true;
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    // sources coalesce their own bursts (OVN recomputes once per batch of updates)
    setImmediate(() => {
      this.scheduled = false;
      void this.reconcileNow();
    });
  }

  /** Run one reconcile after any in progress; resolves when done (errors are logged, not thrown). */
  reconcileNow(): Promise<void> {
    this.dirty = true;
    this.running = this.running.then(async () => {
      if (!this.dirty || this.stopped) return;
      this.dirty = false;
      await this.reconcileOnce();
    });
    return this.running;
  }

  /** A provider interface's MAC or VLAN devices may change while we run: re-read them on each full reconcile. */
  private refreshLocalAddresses(): void {
    try {
      const changed = this.dp.setLocalAddresses(localAddresses(this.config.dataplane.providerInterfaces, this.config.netns));
      if (changed.added || changed.removed) this.log.info('link-layer destinations of the provider interfaces changed', changed);
    } catch (err) {
      this.log.warn("cannot re-read the provider interfaces' link-layer addresses: keeping the ones registered", { error: (err as Error).message });
    }
  }

  private async reconcileOnce(): Promise<void> {
    const at = new Date().toISOString();
    // Until every source has its full set (OVN before its first sync), nothing is removed:
    // an empty replica at start-up must not withdraw what a previous run exposed.
    const complete = this.sourcesReady();
    const mode = reconcileMode({
      complete,
      fullNeeded: this.fullNeeded,
      haveApplied: this.applied !== undefined,
      hasOvn: this.ovnSource !== undefined,
      bgpConfigured: this.bgpState?.configured,
    });
    if (mode === 'incremental' && this.applied && this.ovnSource) {
      const changes = this.ovnSource.takeChanges();
      try {
        const result = await this.applyChanges(this.applied, changes.added, changes.removed);
        this.last = { at, result };
        if (result.added || result.updated || result.removed) this.log.info('exposures reconciled', { ...result, incremental: true });
        return;
      } catch (err) {
        // anything the shortcut cannot do (a new interface, a subnet, a conflict) the full path does
        this.log.debug('incremental reconcile declined: running a full one', { reason: (err as Error).message });
      }
    }
    this.fullNeeded = false;
    this.ovnSource?.takeChanges(); // the full set below is the new baseline
    this.refreshLocalAddresses();
    const desired = this.desired();
    let result: ReconcileResult;
    try {
      const wanted = validateExposures(desired);
      // 1. add and update entries (traffic for new exposures is ready before it is announced)
      const grown = this.reconciler.apply(wanted, { prune: false });
      // 2. announce exactly the desired set (withdrawals happen here)
      await this.syncBgp([...wanted.keys()], complete);
      // 3. remove what is no longer wanted, now that it is withdrawn
      const pruned = this.reconciler.apply(wanted, { prune: complete });
      result = { ...pruned, added: grown.added, updated: grown.updated, portsAdded: grown.portsAdded };
      this.applied = complete && (!this.frr || this.bgpState?.lastError === undefined) ? wanted : undefined;
    } catch (err) {
      this.applied = undefined;
      this.fullNeeded = true;
      const error = err instanceof ExposureError || err instanceof BpfError ? err.message : String(err);
      this.last = { at, error };
      this.log.error('reconcile failed: nothing changed', { error });
      return;
    }
    this.last = { at, result };
    if (result.added || result.updated || result.removed) this.log.info('exposures reconciled', { ...result });
  }

  /**
   * Apply OVN's changes since the last reconcile to a fully applied set, in
   * the same order as a full reconcile: entries first, then announcements
   * and withdrawals, then removals. Throws, having changed nothing, when the
   * changes need a full reconcile (a conflict, a new interface, a subnet).
   */
  private async applyChanges(applied: Map<string, NormalizedExposure>, added: Exposure[], removed: Exposure[]): Promise<ReconcileResult> {
    const { upsert, gone, announce } = planDelta(applied, added, removed);
    const d1 = this.reconciler.applyDelta(upsert, []);
    if (this.frr && (announce.length || gone.length)) {
      try {
        await this.frr.change(announce, gone);
      } catch (err) {
        // the entries are written; the full reconcile that follows fixes BGP (and retries)
        this.fullNeeded = true;
        this.applied = undefined;
        throw err;
      }
    }
    const d2 = this.reconciler.applyDelta([], gone);
    for (const n of upsert) applied.set(n.key, n);
    for (const k of gone) applied.delete(k);
    if (this.bgpState) this.bgpState.announced = applied.size;
    return {
      added: d1.added,
      updated: d1.updated,
      removed: d2.removed,
      unchanged: applied.size - d1.added - d1.updated,
      portsAdded: 0,
      portsRemoved: 0,
      total: applied.size,
    };
  }

  private async syncBgp(prefixes: string[], withdraw: boolean): Promise<void> {
    if (!this.frr || !this.bgpState) return;
    try {
      if (!this.bgpState.configured) {
        await this.frr.configure();
        this.bgpState.configured = true;
        this.log.info('bgp configured', { asn: this.frr.config.asn, neighbors: this.frr.config.neighbors.map((n) => n.address) });
      }
      const changes = await this.frr.sync(prefixes, { withdraw });
      this.bgpState.announced = prefixes.length;
      delete this.bgpState.lastError;
      if (changes.announced.length || changes.withdrawn.length)
        this.log.info('bgp announcements', { announced: changes.announced.length, withdrawn: changes.withdrawn.length });
    } catch (err) {
      // keep forwarding; retry the announcements shortly
      this.bgpState.configured = false;
      this.bgpState.lastError = (err as Error).message;
      this.log.error('bgp sync failed, retrying in 1 s', { error: this.bgpState.lastError });
      setTimeout(() => this.schedule(), 1000).unref();
    }
  }

  /** Add an exposure through the API; resolves once applied, or rejects (and keeps nothing). */
  async apiPut(e: Exposure): Promise<ReconcileResult | undefined> {
    // the whole desired set must stay valid: an API entry may replace an API entry, nothing else
    const key = normalizeExposure(e).key;
    const others = [...this.staticSource.current(), ...this.apiSource.current().filter((d) => normalizeExposure(d).key !== key)];
    validateExposures([...others, e]);
    this.apiSource.put(e);
    await this.reconcileNow();
    const error = this.last?.error;
    if (error) {
      this.apiSource.remove(e.prefix);
      await this.reconcileNow();
      throw new ExposureError(undefined, 'exposure', error);
    }
    return this.last?.result;
  }

  async apiDelete(prefix: string): Promise<boolean> {
    const had = this.apiSource.remove(prefix);
    if (had) await this.reconcileNow();
    return had;
  }

  /** Every desired exposure with its source and what the fast path forwarded for it. */
  exposureReport(): (Exposure & { source: string; key: string; installed: boolean; packets: string; bytes: string })[] {
    const installed = this.reconciler.current();
    return this.sources.flatMap((src) =>
      src.current().map((e) => {
        const key = normalizeExposure(e).key;
        const entry = installed.get(key);
        const c = entry ? this.dp.exposureCounter(entry.value.id) : { packets: 0n, bytes: 0n };
        return { ...e, source: src.name, key, installed: entry !== undefined, packets: c.packets.toString(), bytes: c.bytes.toString() };
      }),
    );
  }

  reload(config: ExposureConfig): void {
    this.staticSource.replace(config.exposures);
  }

  status(): ExposureStatus {
    const fmt = (r: Record<string, { packets: bigint; bytes: bigint }>) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { packets: v.packets.toString(), bytes: v.bytes.toString() }]));
    return {
      exposures: this.last?.result?.total ?? 0,
      attachments: this.dp.attachments(),
      lastReconcile: this.last,
      bgp: this.bgpState ? { ...this.bgpState } : undefined,
      ovn: this.ovnSource?.status(),
      verdicts: fmt(this.dp.verdicts()),
      returnVerdicts: fmt(this.dp.returnVerdicts()),
    };
  }

  /** Stop: the pinned programs and maps stay, so traffic keeps flowing. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.safetyTimer) clearInterval(this.safetyTimer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.ovnSource?.stop();
    await this.running;
    this.frr?.close();
    this.dp.close();
    this.log.info('exposure controller stopped; the data plane stays attached');
  }
}
