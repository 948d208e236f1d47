// One reading per interval: which instances run here (libvirt's status
// files), what the kernel counted for them since (task iterator, tap and disk
// maps), turned into Ceilometer's meters. Instances and taps are followed as
// they come and go; what ends is read one last time and flushed. Everything
// the agent needs to finish an instance's accounting after a restart (which
// process, which taps, which disks) is kept in the usage store's state, so a
// guest that ended while the agent was down is still flushed.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { AcctTaskRec } from './abi.js';
import { AcctClass, CLASS_NAMES, WatchKind } from './abi.js';
import { type NetnsDevices, netnsDevices, netnsPath } from '../ebpf/index.js';
import type { AccountingKernel, TapRef } from './kernel.js';
import { DomainDirectory, type Instance } from './libvirt.js';
import { diskResource, instanceResource, interfaceResource, METERS, type Resource, serviceResource } from './meters.js';
import type { UsageStore } from './store.js';

const PAGE = 4096;

export interface Reading {
  ts: number;
  resources: Resource[];
  values: { resource: string; meter: string; volume: number }[];
  /** resources that ended in this reading (their values above are the last) */
  ended: string[];
}

/** What a tap's device counted that our counters did not see (before we watched it), per direction. */
interface Before {
  outBytes: number;
  outPackets: number;
  inBytes: number;
  inPackets: number;
  /** the estimate is refined until then (frames queued in the tap are counted by it when the guest reads them) */
  settleUntil: number;
}
const SETTLE_MS = 30_000;

interface TrackedTap {
  tap: string;
  ref: TapRef;
  resource: Resource;
  before: Before;
}
interface TrackedDisk {
  target: string;
  dev: number;
  resource: Resource;
}
interface Tracked {
  inst: Instance;
  /** when this agent began accounting it (ms) */
  since?: number;
  startTime: string;
  resource: Resource;
  taps: TrackedTap[];
  disks: TrackedDisk[];
}

/** What the state table keeps per watched qemu process. */
interface SavedInstance {
  inst: Omit<Instance, 'vcpuThreads'> & { vcpuThreads: [number, number][] };
  startTime: string;
  resource: Resource;
  taps: TrackedTap[];
  disks: TrackedDisk[];
}

export interface CollectorOptions {
  host: string;
  libvirtDir: string;
  /**
   * namespaces whose tap devices are counted from the moment they appear,
   * before a domain claims them ('' = the agent's own)
   */
  tapNamespaces?: string[];
  /** a tap no domain claims for this long is reported (default 30 s) */
  orphanSeconds?: number;
  /** read the balloon's memory figures (memory.usage) this often through libvirt's read-only API; 0: never */
  balloonSeconds?: number;
  /** live processes of the traced services (the tracer's identity) */
  services?: () => { pid: number; service: string }[];
}

export interface CollectorStatus {
  instances: number;
  taps: number;
  services: number;
  /** domain files that could not be read, with why */
  domainErrors: { file: string; error: string }[];
  /** taps that belong to no domain, and interfaces whose tap is missing */
  orphanTaps: string[];
  tapErrors: string[];
  /** a cumulative value lower than the one stored before (kept at the stored value) */
  regressions: number;
  /** the last one: what went backwards, from what to what */
  lastRegression?: { resource: string; meter: string; stored: number; read: number; ts: number };
  readings: number;
  lastReadingMs: number;
}

/** The kernel's dev_t (major << 20 | minor) from a stat() st_dev (glibc's encoding). */
export function kernelDev(stDev: number): number {
  const d = BigInt(stDev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return ((major << 20) | minor) >>> 0;
}

/**
 * The whole disk a file's device writes to, as the block layer's requests
 * carry it: a partition's parent; below device-mapper (LVM) or MD, the one
 * disk under it (a stack over several disks is not followed: its I/O cannot
 * be told apart by disk, and the file's own device is returned).
 */
export function wholeDiskDev(stDev: number): number {
  let dev = kernelDev(stDev);
  for (let hops = 0; hops < 8; hops++) {
    const sys = `/sys/dev/block/${dev >>> 20}:${dev & 0xfffff}`;
    try {
      if (existsSync(`${sys}/partition`)) {
        dev = devOf(readFileSync(`${sys}/../dev`, 'utf8'));
        continue;
      }
      const slaves = existsSync(`${sys}/slaves`) ? readdirSync(`${sys}/slaves`) : [];
      if (slaves.length === 1) {
        dev = devOf(readFileSync(`${sys}/slaves/${slaves[0]}/dev`, 'utf8'));
        continue;
      }
    } catch {}
    break;
  }
  return dev;
}

const devOf = (text: string): number => {
  const [major, minor] = text.trim().split(':').map(Number);
  return (((major as number) << 20) | (minor as number)) >>> 0;
};

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

// /proc/net/dev columns: rx bytes packets errs drop fifo frame compressed multicast, tx bytes packets errs drop ...
const RX_BYTES = 0;
const RX_PACKETS = 1;
const RX_ERRS = 2;
const RX_DROP = 3;
const TX_BYTES = 8;
const TX_PACKETS = 9;
const TX_ERRS = 10;
const TX_DROP = 11;

export class Collector {
  private readonly domains: DomainDirectory;
  private readonly tracked = new Map<number, Tracked>();
  /** service processes watched: pid → service */
  private readonly servicePids = new Map<number, { service: string; startTime: string }>();
  private readonly st: CollectorStatus = {
    instances: 0,
    taps: 0,
    services: 0,
    domainErrors: [],
    orphanTaps: [],
    tapErrors: [],
    regressions: 0,
    readings: 0,
    lastReadingMs: 0,
  };
  private readonly reported = new Set<string>();
  /** memory.usage (MB) per domain name, from the balloon, read through virsh every balloonSeconds */
  private readonly balloon = new Map<string, number>();
  private balloonAt = 0;
  private balloonRunning = false;
  /** recent cumulative CPU of each service process (ns), for the control-plane cost of requests */
  private readonly cpuHistory = new Map<number, { ts: number; cpu: number }[]>();
  /** services with retired totals (their values are reported even when no process runs) */
  private readonly retiredServices = new Set<string>();
  /** the previous run's instances were looked at (first reading) */
  private recovered = false;
  /** the instances whose state row is written */
  private readonly saved = new Set<number>();
  /** a QEMU's network namespace (its inode), which does not change while it runs */
  private readonly nsIno = new Map<number, number>();
  /** this reading's exited-threads CPU of every watched process (one batched read) */
  private exitedNow = new Map<number, { run_ns: number; wait_ns: number; slices: number }>();
  /** this reading's view of each namespace (devices, ifindexes, counters), by the namespace's inode */
  private views = new Map<number, NetnsDevices>();
  /** taps counted since they appeared, not (yet) claimed by a domain: cookie:ifindex → */
  private readonly loose = new Map<string, { tap: string; ref: TapRef; ns: string; since: number; before: Before }>();

  constructor(
    private readonly kernel: AccountingKernel,
    private readonly store: UsageStore,
    private readonly opts: CollectorOptions,
    private readonly log: { info(m: string, f?: object): void; warn(m: string, f?: object): void },
  ) {
    this.domains = new DomainDirectory(opts.libvirtDir);
    // what a previous run was watching: the kernel kept counting
    for (const key of store.stateKeys('svcpid:')) {
      const saved = store.state<{ service: string; startTime: string }>(key);
      if (saved) this.servicePids.set(Number(key.slice(7)), saved);
    }
    for (const key of store.stateKeys('svc:')) this.retiredServices.add(key.slice(4));
  }

  status(): CollectorStatus {
    return { ...this.st, instances: this.tracked.size, services: new Set([...this.servicePids.values()].map((s) => s.service)).size };
  }

  /** The instances being accounted (for status and the API). */
  instances(): { uuid: string; name: string; pid: number; project?: string; taps: string[]; disks: string[] }[] {
    return [...this.tracked.values()].map((t) => ({
      uuid: t.inst.uuid,
      name: t.inst.name,
      pid: t.inst.pid,
      ...(t.inst.projectId ? { project: t.inst.projectId } : {}),
      taps: t.taps.map((x) => x.tap),
      disks: t.disks.map((d) => d.target),
    }));
  }

  private warnOnce(key: string, msg: string, fields: object): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.log.warn(msg, fields);
  }

  /** A namespace's devices for this reading (one setns per namespace per reading). */
  private view(where: number | string): NetnsDevices | undefined {
    const path = typeof where === 'number' ? `/proc/${where}/ns/net` : where ? netnsPath(where) : '/proc/self/ns/net';
    let ino = typeof where === 'number' ? this.nsIno.get(where) : undefined;
    if (ino === undefined) {
      try {
        ino = statSync(path).ino;
      } catch {
        return undefined;
      }
      if (typeof where === 'number') this.nsIno.set(where, ino);
    }
    let v = this.views.get(ino);
    if (!v) {
      try {
        v = netnsDevices(typeof where === 'number' ? path : where || undefined, (n) => n.startsWith('tap') || n.startsWith('vnet'));
      } catch {
        return undefined;
      }
      this.views.set(ino, v);
    }
    return v;
  }

  /** One reading. */
  read(now = Date.now()): Reading {
    const t0 = process.hrtime.bigint();
    this.views = new Map();
    const reading: Reading = { ts: now, resources: [], values: [], ended: [] };
    const scan = this.domains.scan();
    this.st.domainErrors = scan.errors;
    for (const e of scan.errors) this.warnOnce(`dom:${e.file}:${e.error}`, 'a libvirt domain file cannot be read: its instance is not accounted', e);
    const running = new Map<number, Instance>();
    // a domain is taken on as soon as libvirt starts it (paused while QEMU opens its images): all the
    // I/O QEMU does for the instance counts, its own probing of the images included
    for (const inst of scan.instances) if (inst.state === 'running' || inst.state === 'paused') running.set(inst.pid, inst);

    // instances that ended, or a pid that is now another process
    for (const [pid, t] of this.tracked) {
      const inst = running.get(pid);
      // an unchanged status file is the same process (libvirt removes it when QEMU ends); re-check every 10th reading
      if (inst && inst.uuid === t.inst.uuid && ((inst === t.inst && this.st.readings % 10 !== 0) || startTimeOf(pid) === t.startTime)) continue;
      this.finish(pid, t, reading);
    }
    // instances from a previous run of the agent (re-adopted, or finished if they ended while it was down): once
    for (const key of this.recovered ? [] : this.store.stateKeys('pid:')) {
      const pid = Number(key.slice(4));
      if (this.tracked.has(pid)) continue;
      const saved = this.store.state<SavedInstance>(key);
      if (!saved) continue;
      const inst = running.get(pid);
      if (inst && inst.uuid === saved.inst.uuid && startTimeOf(pid) === saved.startTime) {
        this.tracked.set(pid, { ...saved, inst }); // re-adopted: the kernel kept counting
        continue;
      }
      this.finish(pid, { ...saved, inst: { ...saved.inst, vcpuThreads: new Map(saved.inst.vcpuThreads) } }, reading);
    }
    this.recovered = true;
    for (const [pid, inst] of running) {
      const t = this.tracked.get(pid);
      if (t) {
        t.inst = inst; // metadata and vCPU threads may change
        this.ensureTaps(t, pid);
        continue;
      }
      this.startInstance(pid, inst);
    }
    this.scanTaps(now);
    this.readBalloons(now);
    this.syncServices(reading);

    const tasks = this.kernel.readTasks();
    this.exitedNow = this.kernel.exitedAll();
    const byTgid = new Map<number, AcctTaskRec[]>();
    for (const r of tasks) {
      let l = byTgid.get(r.tgid);
      if (!l) byTgid.set(r.tgid, (l = []));
      l.push(r);
    }
    const disk = new Map<number, ReturnType<AccountingKernel['readDisk']>>();
    for (const e of this.kernel.readDisk()) {
      let l = disk.get(e[0].tgid);
      if (!l) disk.set(e[0].tgid, (l = []));
      l.push(e);
    }
    for (const [pid, t] of this.tracked) this.instanceValues(pid, t, byTgid.get(pid) ?? [], disk.get(pid) ?? [], reading);
    this.serviceValues(byTgid, disk, reading);
    this.guard(reading);
    this.st.readings++;
    this.st.lastReadingMs = Number(process.hrtime.bigint() - t0) / 1e6;
    this.st.taps = [...this.tracked.values()].reduce((n, t) => n + t.taps.length, 0);
    return reading;
  }

  /** Cumulative meters never go backwards: a lower value keeps the stored one (counted). */
  private guard(r: Reading): void {
    for (const v of r.values) {
      if (METERS[v.meter]?.type !== 'cumulative') continue;
      const last = this.store.lastValue(v.resource, v.meter);
      if (last !== undefined && v.volume < last) {
        this.st.regressions++;
        this.st.lastRegression = { resource: v.resource, meter: v.meter, stored: last, read: v.volume, ts: r.ts };
        v.volume = last;
      }
    }
  }

  private startInstance(pid: number, inst: Instance): void {
    const startTime = startTimeOf(pid);
    if (!startTime) return;
    const lead = this.kernel.readProcess(pid).find((r) => r.tid === pid);
    this.kernel.watch(pid, WatchKind.instance, lead?.dead_run_ns ?? 0);
    const t: Tracked = { inst, since: Date.now(), resource: instanceResource(inst, this.opts.host), startTime, taps: [], disks: [] };
    for (const d of inst.disks) {
      const source = d.source;
      if (!source?.startsWith('/')) continue;
      try {
        const dev = wholeDiskDev(statSync(source).dev);
        const first = t.disks.find((x) => x.dev === dev);
        if (first) {
          // the block layer cannot tell two files of one process on one device apart
          this.warnOnce(`shared:${inst.uuid}:${d.target}`, 'two disks of an instance on one host device: their I/O is counted under the first', {
            instance: inst.uuid,
            disk: d.target,
            countedUnder: first.target,
          });
          continue;
        }
        t.disks.push({ target: d.target, dev, resource: diskResource(inst, d, this.opts.host) });
      } catch (err) {
        this.warnOnce(`disk:${inst.uuid}:${d.target}`, 'an instance disk cannot be attributed (its source is not readable)', {
          instance: inst.uuid,
          disk: d.target,
          error: (err as Error).message,
        });
      }
    }
    this.tracked.set(pid, t);
    this.ensureTaps(t, pid);
    this.log.info('accounting an instance', { instance: inst.uuid, name: inst.name, pid, project: inst.projectId, taps: t.taps.map((x) => x.tap) });
  }

  private ensureTaps(t: Tracked, pid: number): void {
    const ns = `/proc/${pid}/ns/net`;
    let changed = false;
    for (const vnic of t.inst.interfaces) {
      if (t.taps.some((x) => x.tap === vnic.tap)) continue;
      try {
        const v = this.view(pid);
        const d = v?.devices.get(vnic.tap);
        const ref: TapRef = d && v ? { netns: Number(v.cookie), ifindex: d.ifindex } : this.kernel.tapRef(vnic.tap, ns);
        const key = `${ref.netns}:${ref.ifindex}`;
        const loose = this.loose.get(key);
        let before: Before;
        if (loose) {
          // counted since it appeared
          this.loose.delete(key);
          before = loose.before;
        } else {
          this.kernel.attachTap(vnic.tap, ns, ref);
          before = { outBytes: 0, outPackets: 0, inBytes: 0, inPackets: 0, settleUntil: Date.now() + SETTLE_MS };
          this.settle(before, ref, d?.stats, Date.now());
        }
        t.taps.push({ tap: vnic.tap, ref, resource: interfaceResource(t.inst, vnic, this.opts.host), before });
        changed = true;
      } catch (err) {
        const msg = `${t.inst.name} (${t.inst.uuid}): tap ${vnic.tap}: ${(err as Error).message}`;
        if (!this.st.tapErrors.includes(msg)) this.st.tapErrors.push(msg);
        this.warnOnce(`tap:${msg}`, 'an instance interface cannot be counted', { instance: t.inst.uuid, tap: vnic.tap, error: (err as Error).message });
      }
    }
    if (changed || !this.saved.has(pid)) this.save(pid, t);
  }

  /**
   * The balloon's figures (memory.usage, as Ceilometer computes it: available
   * − usable, else available − unused) need libvirt's API: one read-only virsh
   * for every domain at once, in the background, every balloonSeconds.
   */
  private readBalloons(now: number): void {
    const period = (this.opts.balloonSeconds ?? 10) * 1000;
    if (!period || this.balloonRunning || !this.tracked.size) return;
    // a guest that has just booted reports its balloon figures a little later: ask again sooner
    const missing = [...this.tracked.values()].some((t) => !this.balloon.has(t.inst.name) && now - (t.since ?? 0) < 60_000);
    if (now - this.balloonAt < (missing ? Math.min(period, 2000) : period)) return;
    this.balloonAt = now;
    this.balloonRunning = true;
    const names = [...this.tracked.values()].map((t) => t.inst.name).filter((n) => /^[A-Za-z0-9_.-]+$/.test(n));
    const script = names.map((n) => `echo @@${n}; dommemstat ${n}`).join('; ');
    execFile('virsh', ['-r', '-c', 'qemu:///system', script], { timeout: 30_000, maxBuffer: 8 << 20 }, (err, stdout) => {
      this.balloonRunning = false;
      if (err && !stdout) {
        this.warnOnce(`balloon:${(err as Error).message}`, 'memory.usage: cannot read the balloon through libvirt', { error: (err as Error).message });
        return;
      }
      let name = '';
      let stats: Record<string, number> = {};
      const flush = () => {
        if (!name) return;
        const used =
          stats.usable !== undefined && stats.available !== undefined
            ? stats.available - stats.usable
            : stats.available !== undefined && stats.unused !== undefined
              ? stats.available - stats.unused
              : undefined;
        if (used !== undefined) this.balloon.set(name, Math.round((used / 1024) * 1000) / 1000);
        else this.balloon.delete(name);
      };
      for (const line of stdout.split('\n')) {
        if (line.startsWith('@@')) {
          flush();
          name = line.slice(2).trim();
          stats = {};
          continue;
        }
        const [k, v] = line.trim().split(/\s+/);
        if (k && v && /^\d+$/.test(v)) stats[k] = Number(v);
      }
      flush();
    });
  }

  /**
   * Count every tap of the configured namespaces from the moment it appears:
   * a tap is created before its domain starts, so nothing it carries is
   * missed (a tap counted only once its domain is seen has frames queued in
   * it that the device counts later, when the guest reads them).
   */
  private scanTaps(now: number): void {
    const claimed = new Set<string>();
    for (const t of this.tracked.values()) for (const x of t.taps) claimed.add(`${x.ref.netns}:${x.ref.ifindex}`);
    const present = new Set<string>();
    // the configured namespaces and those the instances' qemu run in, each once
    const seen = new Set<bigint>();
    const spaces: [string, NetnsDevices][] = [];
    for (const ns of ['', ...(this.opts.tapNamespaces ?? []), ...[...this.tracked.keys()].map((pid) => `/proc/${pid}/ns/net`)]) {
      const v = this.view(ns);
      if (!v || seen.has(v.cookie)) continue;
      seen.add(v.cookie);
      spaces.push([ns, v]);
    }
    for (const [ns, v] of spaces) {
      for (const [name, d] of v.devices) {
        if (!name.startsWith('tap')) continue;
        const ref: TapRef = { netns: Number(v.cookie), ifindex: d.ifindex };
        const key = `${ref.netns}:${ref.ifindex}`;
        present.add(key);
        if (claimed.has(key) || this.loose.has(key)) continue;
        try {
          this.kernel.attachTap(name, ns || undefined, ref);
          const before: Before = { outBytes: 0, outPackets: 0, inBytes: 0, inPackets: 0, settleUntil: now + SETTLE_MS };
          this.settle(before, ref, d.stats, now);
          this.loose.set(key, { tap: name, ref, ns, since: now, before });
        } catch (err) {
          this.warnOnce(`loose:${key}`, 'a tap cannot be counted', { tap: name, netns: ns || 'own', error: (err as Error).message });
        }
      }
    }
    for (const [key, l] of this.loose) {
      if (present.has(key)) continue;
      this.kernel.detachTap(l.ref); // never claimed by a domain: nothing to account it to
      this.loose.delete(key);
    }
    // loose taps still settle (frames queued before their guest reads them)
    for (const [, l] of this.loose) {
      const v = this.view(l.ns);
      this.settle(l.before, l.ref, v?.devices.get(l.tap)?.stats, now);
    }
    // a tap no domain claimed for a while is reported (a domain that failed to start, a leftover)
    this.st.orphanTaps = [...this.loose.values()]
      .filter((l) => now - l.since > (this.opts.orphanSeconds ?? 30) * 1000)
      .map((l) => `${l.tap} (${l.ns || 'own namespace'})`);
  }

  /**
   * The device's counts our counters did not see: what it counted before we
   * did. Refined (never lowered) while it settles: frames queued in a tap
   * when we attached are counted by the device only when the guest reads them.
   */
  private settle(b: Before, ref: TapRef, dev: number[] | undefined, now: number): boolean {
    if (now > b.settleUntil || !dev) return false;
    const c = this.kernel.readTap(ref);
    if (!c) return false;
    const sum = (a: number[] | undefined) => (a ?? []).reduce((x, y) => x + y, 0);
    const next = {
      outBytes: Math.max(b.outBytes, (dev[RX_BYTES] ?? 0) - sum(c.bytes[0])),
      outPackets: Math.max(b.outPackets, (dev[RX_PACKETS] ?? 0) - sum(c.packets[0])),
      inBytes: Math.max(b.inBytes, (dev[TX_BYTES] ?? 0) - sum(c.bytes[1])),
      inPackets: Math.max(b.inPackets, (dev[TX_PACKETS] ?? 0) - sum(c.packets[1])),
    };
    const changed = next.outBytes !== b.outBytes || next.outPackets !== b.outPackets || next.inBytes !== b.inBytes || next.inPackets !== b.inPackets;
    Object.assign(b, next);
    return changed;
  }

  private save(pid: number, t: Tracked): void {
    const saved: SavedInstance = { ...t, inst: { ...t.inst, vcpuThreads: [...t.inst.vcpuThreads] } };
    this.store.putState(`pid:${pid}`, saved);
    this.saved.add(pid);
  }

  private instanceValues(pid: number, t: Tracked, threads: AcctTaskRec[], disk: ReturnType<AccountingKernel['readDisk']>, r: Reading): void {
    const ex = this.exitedNow.get(pid) ?? this.kernel.exitedCpu(pid) ?? { run_ns: 0, wait_ns: 0, slices: 0 };
    const cpu = ex.run_ns + threads.reduce((n, x) => n + x.run_ns, 0);
    const wait = ex.wait_ns + threads.reduce((n, x) => n + x.wait_ns, 0);
    const res = t.resource;
    r.resources.push(res);
    r.values.push({ resource: res.id, meter: 'cpu', volume: cpu }, { resource: res.id, meter: 'cpu.wait', volume: wait });
    r.values.push({ resource: res.id, meter: 'vcpus', volume: t.inst.flavor?.vcpus ?? t.inst.vcpus });
    const lead = threads.find((x) => x.tid === pid);
    if (lead) r.values.push({ resource: res.id, meter: 'memory.resident', volume: Math.round(((lead.rss_pages * PAGE) / 1048576) * 1000) / 1000 });
    const usage = this.balloon.get(t.inst.name);
    if (usage !== undefined) r.values.push({ resource: res.id, meter: 'memory.usage', volume: usage });
    this.tapValues(pid, t, r);
    this.diskValues(pid, t.disks, disk, r);
  }

  private tapValues(pid: number, t: Tracked, r: Reading): void {
    const v = this.view(pid);
    for (const x of t.taps) {
      const dev = v?.devices.get(x.tap)?.stats;
      if (this.settle(x.before, x.ref, dev, r.ts)) this.save(pid, t);
      const c = this.kernel.readTap(x.ref);
      if (!c) continue;
      const B = AcctClass.before;
      (c.bytes[0] as number[])[B] = (c.bytes[0]?.[B] ?? 0) + x.before.outBytes;
      (c.packets[0] as number[])[B] = (c.packets[0]?.[B] ?? 0) + x.before.outPackets;
      (c.bytes[1] as number[])[B] = (c.bytes[1]?.[B] ?? 0) + x.before.inBytes;
      (c.packets[1] as number[])[B] = (c.packets[1]?.[B] ?? 0) + x.before.inPackets;
      r.resources.push(x.resource);
      const id = x.resource.id;
      const sum = (a: number[] | undefined) => (a ?? []).reduce((p, q) => p + q, 0);
      r.values.push(
        { resource: id, meter: 'network.outgoing.bytes', volume: sum(c.bytes[0]) },
        { resource: id, meter: 'network.outgoing.packets', volume: sum(c.packets[0]) },
        { resource: id, meter: 'network.incoming.bytes', volume: sum(c.bytes[1]) },
        { resource: id, meter: 'network.incoming.packets', volume: sum(c.packets[1]) },
      );
      for (const cls of CLASS_NAMES) {
        const i = AcctClass[cls];
        r.values.push(
          { resource: id, meter: `network.outgoing.bytes.${cls}`, volume: c.bytes[0]?.[i] ?? 0 },
          { resource: id, meter: `network.incoming.bytes.${cls}`, volume: c.bytes[1]?.[i] ?? 0 },
        );
      }
      const d = dev;
      if (d) {
        // the guest's point of view: what the tap drops on transmit never reached the guest
        r.values.push(
          { resource: id, meter: 'network.incoming.packets.drop', volume: d[TX_DROP] ?? 0 },
          { resource: id, meter: 'network.outgoing.packets.drop', volume: d[RX_DROP] ?? 0 },
          { resource: id, meter: 'network.incoming.packets.error', volume: d[TX_ERRS] ?? 0 },
          { resource: id, meter: 'network.outgoing.packets.error', volume: d[RX_ERRS] ?? 0 },
        );
      }
    }
  }

  private diskValues(pid: number, disks: TrackedDisk[], disk: ReturnType<AccountingKernel['readDisk']>, r: Reading): void {
    for (const d of disks) {
      const rd = disk.find(([k]) => k.tgid === pid && k.dev === d.dev && k.op === 0)?.[1];
      const wr = disk.find(([k]) => k.tgid === pid && k.dev === d.dev && k.op === 1)?.[1];
      r.resources.push(d.resource);
      const id = d.resource.id;
      r.values.push(
        { resource: id, meter: 'disk.device.read.bytes', volume: rd?.bytes ?? 0 },
        { resource: id, meter: 'disk.device.read.requests', volume: rd?.requests ?? 0 },
        { resource: id, meter: 'disk.device.read.latency', volume: rd?.latency_ns ?? 0 },
        { resource: id, meter: 'disk.device.write.bytes', volume: wr?.bytes ?? 0 },
        { resource: id, meter: 'disk.device.write.requests', volume: wr?.requests ?? 0 },
        { resource: id, meter: 'disk.device.write.latency', volume: wr?.latency_ns ?? 0 },
      );
    }
  }

  /** An instance ended (or its pid is another process now): last values, then let go. */
  private finish(pid: number, t: Tracked, r: Reading): void {
    // no live threads any more: the exited map holds the process's final CPU
    const alive = startTimeOf(pid) === t.startTime;
    const threads = alive ? this.kernel.readTasks().filter((x) => x.tgid === pid) : [];
    this.instanceValues(pid, t, threads, this.kernel.readDisk(), r);
    for (const x of t.taps) this.kernel.detachTap(x.ref);
    this.kernel.unwatch(pid);
    this.tracked.delete(pid);
    this.nsIno.delete(pid);
    this.store.putState(`pid:${pid}`, undefined);
    this.saved.delete(pid);
    r.ended.push(t.resource.id, ...t.taps.map((x) => x.resource.id), ...t.disks.map((d) => d.resource.id));
    this.log.info('instance accounting finished', { instance: t.inst.uuid, name: t.inst.name, pid });
  }

  private syncServices(r: Reading): void {
    if (!this.opts.services) return;
    const want = new Map<number, string>();
    for (const p of this.opts.services()) want.set(p.pid, p.service);
    // children the kernel added (forked by a watched service process): the service of their parent
    const kernelKids = this.kernel.watchedEntries().filter((e) => e.kind === WatchKind.service && e.parent !== 0);
    const parentOf = new Map(kernelKids.map((e) => [e.tgid, e.parent]));
    for (const e of kernelKids) {
      if (this.servicePids.has(e.tgid)) continue;
      let service = want.get(e.tgid);
      for (let p = e.parent, hops = 0; !service && p && hops < 16; p = parentOf.get(p) ?? 0, hops++) service = this.servicePids.get(p)?.service ?? want.get(p);
      if (!service) {
        this.kernel.unwatch(e.tgid); // its service is unknown (its parent's accounting ended before)
        continue;
      }
      this.servicePids.set(e.tgid, { service, startTime: startTimeOf(e.tgid) ?? 'gone' });
      this.store.putState(`svcpid:${e.tgid}`, this.servicePids.get(e.tgid));
    }
    for (const [pid, s] of this.servicePids) {
      const other = want.get(pid);
      if (other === undefined || other === s.service) {
        // listed by the tracer (which sees exits): alive, checked in /proc every 10th reading; else checked now
        if (other === s.service && this.st.readings % 10 !== 0) continue;
        if (startTimeOf(pid) === s.startTime) continue;
      }
      // the process ended (or is another service's now): its final CPU and disk go into the service's retired totals
      const ex = this.kernel.exitedCpu(pid) ?? { run_ns: 0, wait_ns: 0, slices: 0 };
      const retired = this.store.state<Record<string, number>>(`svc:${s.service}`) ?? {};
      const live = this.kernel.readTasks().filter((x) => x.tgid === pid);
      retired.cpu = (retired.cpu ?? 0) + ex.run_ns + live.reduce((n, x) => n + x.run_ns, 0);
      retired['cpu.wait'] = (retired['cpu.wait'] ?? 0) + ex.wait_ns + live.reduce((n, x) => n + x.wait_ns, 0);
      for (const [k, v] of this.kernel.readDisk()) {
        if (k.tgid !== pid) continue;
        const op = k.op === 0 ? 'read' : 'write';
        retired[`disk.${op}.bytes`] = (retired[`disk.${op}.bytes`] ?? 0) + v.bytes;
        retired[`disk.${op}.requests`] = (retired[`disk.${op}.requests`] ?? 0) + v.requests;
      }
      this.store.putState(`svc:${s.service}`, retired);
      this.kernel.unwatch(pid);
      this.servicePids.delete(pid);
      this.cpuHistory.delete(pid);
      this.store.putState(`svcpid:${pid}`, undefined);
      this.retiredServices.add(s.service);
    }
    void r;
    for (const [pid, service] of want) {
      if (this.servicePids.has(pid) || this.tracked.has(pid)) continue;
      const startTime = startTimeOf(pid);
      if (!startTime) continue;
      const lead = this.kernel.readProcess(pid).find((x) => x.tid === pid);
      this.kernel.watch(pid, WatchKind.service, lead?.dead_run_ns ?? 0);
      this.servicePids.set(pid, { service, startTime });
      this.store.putState(`svcpid:${pid}`, { service, startTime });
    }
  }

  private serviceValues(byTgid: Map<number, AcctTaskRec[]>, disk: Map<number, ReturnType<AccountingKernel['readDisk']>>, r: Reading): void {
    const per = new Map<string, Record<string, number>>();
    for (const [pid, s] of this.servicePids) {
      const v = per.get(s.service) ?? {};
      per.set(s.service, v);
      const threads = byTgid.get(pid) ?? [];
      const ex = this.exitedNow.get(pid) ?? { run_ns: 0, wait_ns: 0, slices: 0 };
      const cpu = ex.run_ns + threads.reduce((n, x) => n + x.run_ns, 0);
      v.cpu = (v.cpu ?? 0) + cpu;
      let h = this.cpuHistory.get(pid);
      if (!h) this.cpuHistory.set(pid, (h = []));
      h.push({ ts: r.ts, cpu });
      if (h.length > 30) h.shift();
      v['cpu.wait'] = (v['cpu.wait'] ?? 0) + ex.wait_ns + threads.reduce((n, x) => n + x.wait_ns, 0);
      const lead = threads.find((x) => x.tid === pid);
      v['memory.resident'] = (v['memory.resident'] ?? 0) + ((lead?.rss_pages ?? 0) * PAGE) / 1048576;
      for (const [k, d] of disk.get(pid) ?? []) {
        const op = k.op === 0 ? 'read' : 'write';
        v[`disk.${op}.bytes`] = (v[`disk.${op}.bytes`] ?? 0) + d.bytes;
        v[`disk.${op}.requests`] = (v[`disk.${op}.requests`] ?? 0) + d.requests;
      }
    }
    for (const service of this.retiredServices) if (!per.has(service)) per.set(service, {});
    for (const [service, v] of per) {
      const res = serviceResource(service, this.opts.host);
      r.resources.push(res);
      const retired = this.store.state<Record<string, number>>(`svc:${service}`) ?? {};
      for (const meter of ['cpu', 'cpu.wait', 'disk.read.bytes', 'disk.write.bytes', 'disk.read.requests', 'disk.write.requests'])
        r.values.push({ resource: res.id, meter, volume: (v[meter] ?? 0) + (retired[meter] ?? 0) });
      r.values.push({ resource: res.id, meter: 'memory.resident', volume: Math.round((v['memory.resident'] ?? 0) * 1000) / 1000 });
    }
  }

  /** A service process's cumulative CPU at a time (ns), interpolated between readings. */
  cpuAt(pid: number, ts: number): number | undefined {
    const h = this.cpuHistory.get(pid);
    if (!h?.length) return undefined;
    const first = h[0] as { ts: number; cpu: number };
    if (ts <= first.ts) return first.cpu;
    for (let i = 1; i < h.length; i++) {
      const a = h[i - 1] as { ts: number; cpu: number };
      const b = h[i] as { ts: number; cpu: number };
      if (ts <= b.ts) return a.cpu + ((b.cpu - a.cpu) * (ts - a.ts)) / Math.max(1, b.ts - a.ts);
    }
    return undefined; // after the last reading: not known yet
  }

  /** Stop: the kernel keeps counting (pins); the state says what to re-adopt. */
  stop(): void {
    for (const [pid, t] of this.tracked) this.save(pid, t);
  }
}
