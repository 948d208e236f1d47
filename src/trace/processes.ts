// The tracer's process table: which process is which service, its parent,
// its command line (redacted), and whether it is in the kernel's monitored
// set. Filled from /proc at start, then kept current from exec, fork and
// exit records (the kernel adds a monitored process's children to the set
// itself; the table follows).
import { readdirSync, readlinkSync } from 'node:fs';
import { type ProcessInfo, readProcess, type ServiceIdentifier } from './identity.js';
import { redactArgv } from './redact.js';

export interface Proc extends ProcessInfo {
  /** redacted */
  argv: string[];
  service: string;
  instance?: string;
  monitored: boolean;
  capture: boolean;
  exitedAt?: number;
  /** this process as events' parent context (built once) */
  asParent?: { pid: number; comm: string; service: string };
}

export interface MonitorPolicy {
  /** services whose processes are traced (undefined: every recognised service except stackbpf) */
  services?: readonly string[];
  /** services whose sockets are tracked for HTTP/SQL capture */
  captureServices: readonly string[];
}

/** Services that speak HTTP APIs or SQL: their sockets are worth capturing by default. */
export const DEFAULT_CAPTURE_SERVICES = [
  'keystone',
  'nova-api',
  'nova-metadata',
  'nova-compute',
  'nova-conductor',
  'nova-scheduler',
  'neutron-server',
  'neutron-agent',
  'neutron-ovn-metadata-agent',
  'placement',
  'glance',
  // the mysql / mariadb / psql client run by hand: its statements are audited
  'db-client',
];

export interface MonitorChange {
  pid: number;
  /** undefined: remove from the kernel's set */
  entry?: { service: number; capture: boolean };
}

export class ProcessTable {
  readonly procs = new Map<number, Proc>();
  private readonly serviceIds = new Map<string, number>();
  private readonly serviceNames: string[] = [''];

  constructor(
    private readonly identifier: ServiceIdentifier,
    private readonly policy: MonitorPolicy,
    private readonly selfPid = process.pid,
  ) {}

  serviceId(name: string): number {
    let id = this.serviceIds.get(name);
    if (id === undefined) {
      id = this.serviceNames.length;
      this.serviceNames.push(name);
      this.serviceIds.set(name, id);
    }
    return id;
  }

  serviceName(id: number): string {
    return this.serviceNames[id] ?? '';
  }

  /** would a process of this service be captured (its sockets parsed)? */
  captures(service: string): boolean {
    return this.policy.captureServices.includes(service);
  }

  wants(service: string): boolean {
    if (!service || this.selfPidService(service)) return false;
    return this.policy.services ? this.policy.services.includes(service) : true;
  }

  private selfPidService(service: string): boolean {
    return service === 'stackbpf' && !(this.policy.services ?? []).includes('stackbpf');
  }

  private build(info: ProcessInfo, inherited?: Proc): Proc {
    const id = this.identifier.identify(info);
    const service = id?.service ?? inherited?.service ?? '';
    const monitored = info.pid !== this.selfPid && (id ? this.wants(id.service) : inherited?.monitored === true);
    const p: Proc = {
      pid: info.pid,
      ppid: info.ppid,
      comm: info.comm,
      exe: info.exe,
      argv: redactArgv(info.argv),
      uid: info.uid,
      service,
      monitored,
      capture: monitored && this.policy.captureServices.includes(service),
    };
    const instance = id?.instance ?? (id ? undefined : inherited?.instance);
    if (instance) p.instance = instance;
    return p;
  }

  private change(p: Proc): MonitorChange {
    return p.monitored ? { pid: p.pid, entry: { service: this.serviceId(p.service), capture: p.capture } } : { pid: p.pid };
  }

  /** Read every process from /proc; returns the monitored ones. */
  scan(proc = '/proc'): MonitorChange[] {
    const infos: ProcessInfo[] = [];
    for (const name of readdirSync(proc)) {
      if (!/^\d+$/.test(name)) continue;
      const info = readProcess(Number(name), proc);
      if (info && (info.argv.length > 0 || info.exe)) infos.push(info);
    }
    // parents before children, so children can inherit
    const byPid = new Map(infos.map((i) => [i.pid, i]));
    const depth = (i: ProcessInfo): number => {
      let d = 0;
      for (let p = byPid.get(i.ppid); p && d < 64; p = byPid.get(p.ppid)) d++;
      return d;
    };
    infos.sort((a, b) => depth(a) - depth(b));
    const out: MonitorChange[] = [];
    const seen = new Map<number, Proc>();
    for (const info of infos) {
      const p = this.build(info, seen.get(info.ppid));
      seen.set(p.pid, p);
      // the table keeps monitored processes only: nothing else produces events
      if (p.monitored) {
        this.procs.set(p.pid, p);
        out.push(this.change(p));
      }
    }
    return out;
  }

  /** An exec: identify again. Returns the change to make in the kernel's set, if any. */
  onExec(pid: number, ppid: number, comm: string, filename: string, argv: string[], uid: number, kernelService: string): MonitorChange | undefined {
    const before = this.procs.get(pid);
    let exe = filename;
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      /* gone already: the file the kernel ran will do */
    }
    const parent = this.procs.get(ppid);
    const inherited = before ?? parent ?? (kernelService ? ({ service: kernelService, monitored: true } as Proc) : undefined);
    const p = this.build({ pid, ppid, comm, exe, argv, uid }, inherited);
    if (p.monitored) this.procs.set(pid, p);
    else this.procs.delete(pid);
    if (before?.monitored === p.monitored && before.service === p.service && before.capture === p.capture) return undefined;
    if (!before && !p.monitored && !kernelService) return undefined;
    return this.change(p);
  }

  onFork(parentPid: number, child: number): void {
    const parent = this.procs.get(parentPid);
    if (!parent?.monitored) return;
    const c: Proc = { ...parent, pid: child, ppid: parentPid };
    delete c.exitedAt;
    delete c.asParent;
    this.procs.set(child, c);
  }

  onExit(pid: number, now = Date.now()): void {
    const p = this.procs.get(pid);
    if (p) p.exitedAt = now;
  }

  /** Forget processes that exited more than `graceMs` ago (late events can still name them until then). */
  prune(now = Date.now(), graceMs = 30_000): number[] {
    const gone: number[] = [];
    for (const [pid, p] of this.procs) {
      if (p.exitedAt !== undefined && now - p.exitedAt > graceMs) {
        this.procs.delete(pid);
        gone.push(pid);
      }
    }
    return gone;
  }

  get(pid: number): Proc | undefined {
    return this.procs.get(pid);
  }

  /** Monitored processes whose exit the tracer missed (e.g. a lost record). */
  vanished(alive: (pid: number) => boolean): number[] {
    const out: number[] = [];
    for (const p of this.procs.values()) if (p.exitedAt === undefined && !alive(p.pid)) out.push(p.pid);
    return out;
  }

  monitoredCount(): number {
    let n = 0;
    for (const p of this.procs.values()) if (p.monitored && p.exitedAt === undefined) n++;
    return n;
  }

  /** the live monitored processes and their services */
  live(): { pid: number; service: string }[] {
    const out: { pid: number; service: string }[] = [];
    for (const [pid, p] of this.procs) if (p.monitored && p.exitedAt === undefined && p.service) out.push({ pid, service: p.service });
    return out;
  }

  /** service → number of live monitored processes */
  services(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of this.procs.values()) if (p.monitored && p.exitedAt === undefined) out[p.service] = (out[p.service] ?? 0) + 1;
    return out;
  }
}
