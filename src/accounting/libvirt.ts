// Instances from libvirt's own state: the status files libvirtd keeps for
// each running domain (/run/libvirt/qemu/NAME.xml: <domstatus pid=...> with
// the vCPU thread ids and the live domain XML inside). Reading them needs no
// libvirt connection and no Nova: Nova writes what we need into the domain —
// instance UUID and name, owner project and user, flavor, and the Neutron
// port of each interface (<nova:ports>, <virtualport> interfaceid).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';

export interface InstanceInterface {
  /** the tap device on the host */
  tap: string;
  mac: string;
  /** Neutron port id (virtualport interfaceid, or the <nova:port> whose id the tap name starts with) */
  portId?: string;
  /** fixed addresses Nova recorded for the port */
  ips: string[];
  type: string;
  bridge?: string;
}

export interface InstanceDisk {
  /** the guest's name for it (vda), as Ceilometer's disk resource ids use */
  target: string;
  source?: string;
  type: string;
}

export interface Instance {
  /** libvirt domain name (instance-0000000a: Nova's OS-EXT-SRV-ATTR:instance_name) */
  name: string;
  uuid: string;
  /** the qemu process */
  pid: number;
  state: string;
  /** vCPU index → thread id */
  vcpuThreads: Map<number, number>;
  /** Nova's metadata; missing when the domain is not Nova's */
  displayName?: string;
  projectId?: string;
  projectName?: string;
  userId?: string;
  userName?: string;
  flavor?: { name: string; vcpus?: number; memoryMb?: number; diskGb?: number; ephemeralGb?: number };
  vcpus: number;
  memoryMb: number;
  interfaces: InstanceInterface[];
  disks: InstanceDisk[];
}

export class DomainXmlError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'DomainXmlError';
  }
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => ['vcpu', 'interface', 'disk', 'nova:port', 'nova:ip'].includes(name),
});

type Node = Record<string, unknown>;
const obj = (v: unknown): Node | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Node) : undefined);
const arr = (v: unknown): Node[] => (Array.isArray(v) ? v.filter((x): x is Node => !!obj(x)) : obj(v) ? [v as Node] : []);
const str = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  const o = obj(v);
  return o && typeof o['#text'] === 'string' ? (o['#text'] as string) : undefined;
};
const num = (v: unknown): number | undefined => {
  const s = str(v);
  if (s === undefined || s === '') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
};

/** libvirt's <memory> with its unit (KiB by default) in MiB. */
function memoryMb(v: unknown): number {
  const n = num(v) ?? 0;
  const unit = (obj(v)?.['@unit'] as string | undefined) ?? 'KiB';
  const scale: Record<string, number> = { b: 1 / 1048576, bytes: 1 / 1048576, KiB: 1 / 1024, k: 1 / 1024, MiB: 1, M: 1, GiB: 1024, G: 1024 };
  return Math.round(n * (scale[unit] ?? 1 / 1024));
}

/** Parse one status file (or a plain domain XML with a pid given). Throws DomainXmlError naming what is wrong. */
export function parseDomainStatus(text: string, file: string, pidOverride?: number): Instance {
  let doc: Node;
  try {
    doc = parser.parse(text, true) as Node;
  } catch (err) {
    throw new DomainXmlError(file, `not well-formed XML: ${(err as Error).message.split('\n')[0]}`);
  }
  const status = obj(doc.domstatus);
  const domain = obj(status?.domain) ?? obj(doc.domain);
  if (!domain) throw new DomainXmlError(file, 'no <domain> element (expected libvirt <domstatus><domain>...)');
  const pid = pidOverride ?? num(status?.['@pid']);
  if (!pid || pid <= 0) throw new DomainXmlError(file, '<domstatus> has no pid: the domain is not running');
  const name = str(domain.name);
  const uuid = str(domain.uuid);
  if (!name) throw new DomainXmlError(file, '<domain> has no <name>');
  if (!uuid || !/^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(uuid))
    throw new DomainXmlError(file, `<uuid> is missing or not a UUID (${JSON.stringify(uuid ?? null)})`);
  const vcpuThreads = new Map<number, number>();
  for (const v of arr(obj(status?.vcpus)?.vcpu)) {
    const id = num(v['@id']);
    const tid = num(v['@pid']);
    if (id !== undefined && tid) vcpuThreads.set(id, tid);
  }
  const inst: Instance = {
    name,
    uuid,
    pid,
    state: (status?.['@state'] as string | undefined) ?? 'running',
    vcpuThreads,
    vcpus: num(domain.vcpu) ?? 1,
    memoryMb: memoryMb(domain.memory),
    interfaces: [],
    disks: [],
  };
  const nova = obj(obj(domain.metadata)?.['nova:instance']);
  const novaPorts: { id: string; ips: string[] }[] = [];
  if (nova) {
    inst.displayName = str(nova['nova:name']);
    const owner = obj(nova['nova:owner']);
    const user = obj(owner?.['nova:user']);
    const project = obj(owner?.['nova:project']);
    inst.userId = user?.['@uuid'] as string | undefined;
    inst.userName = str(user);
    inst.projectId = project?.['@uuid'] as string | undefined;
    inst.projectName = str(project);
    const f = obj(nova['nova:flavor']);
    if (f) {
      inst.flavor = {
        name: (f['@name'] as string | undefined) ?? '',
        vcpus: num(f['nova:vcpus']),
        memoryMb: num(f['nova:memory']),
        diskGb: num(f['nova:disk']),
        ephemeralGb: num(f['nova:ephemeral']),
      } as Instance['flavor'];
    }
    for (const p of arr(obj(nova['nova:ports'])?.['nova:port'])) {
      const id = p['@uuid'] as string | undefined;
      if (id)
        novaPorts.push({
          id,
          ips: arr(p['nova:ip'])
            .map((ip) => ip['@address'] as string)
            .filter(Boolean),
        });
    }
  }
  const devices = obj(domain.devices) ?? {};
  for (const i of arr(devices.interface)) {
    const tap = obj(i.target)?.['@dev'] as string | undefined;
    if (!tap) continue; // not started yet, or a hostdev: no tap to count on
    const mac = (obj(i.mac)?.['@address'] as string | undefined) ?? '';
    let portId = obj(obj(i.virtualport)?.parameters)?.['@interfaceid'] as string | undefined;
    // Nova names the tap "tap" + the first 11 characters of the port id
    const byName = novaPorts.find((p) => tap.startsWith('tap') && p.id.startsWith(tap.slice(3)) && tap.length > 3);
    portId ??= byName?.id;
    const port = novaPorts.find((p) => p.id === portId);
    inst.interfaces.push({
      tap,
      mac,
      ...(portId ? { portId } : {}),
      ips: port?.ips ?? [],
      type: (i['@type'] as string | undefined) ?? 'unknown',
      ...(obj(i.source)?.['@bridge'] ? { bridge: obj(i.source)?.['@bridge'] as string } : {}),
    });
  }
  for (const d of arr(devices.disk)) {
    if ((d['@device'] as string | undefined) && d['@device'] !== 'disk') continue;
    const target = obj(d.target)?.['@dev'] as string | undefined;
    if (!target) continue;
    const src = obj(d.source);
    const source = (src?.['@file'] ?? src?.['@dev'] ?? src?.['@name']) as string | undefined;
    inst.disks.push({ target, type: (d['@type'] as string | undefined) ?? 'file', ...(source ? { source } : {}) });
  }
  return inst;
}

export interface DomainScan {
  instances: Instance[];
  errors: { file: string; error: string }[];
}

/**
 * Reads libvirt's status directory, re-parsing only files that changed since
 * the last scan (by mtime and size).
 */
export class DomainDirectory {
  private readonly cache = new Map<string, { key: string; result: Instance | { error: string } }>();

  constructor(readonly dir: string) {}

  scan(): DomainScan {
    const out: DomainScan = { instances: [], errors: [] };
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.xml'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.cache.clear();
        return out; // libvirt is not running here (yet)
      }
      throw err;
    }
    const seen = new Set<string>();
    for (const n of names) {
      const file = join(this.dir, n);
      seen.add(file);
      let key: string;
      try {
        const st = statSync(file);
        key = `${st.mtimeMs}:${st.size}:${st.ino}`;
      } catch {
        continue; // removed meanwhile: the domain stopped
      }
      let hit = this.cache.get(file);
      if (!hit || hit.key !== key) {
        let result: Instance | { error: string };
        try {
          result = parseDomainStatus(readFileSync(file, 'utf8'), file);
        } catch (err) {
          result = { error: (err as Error).message };
        }
        hit = { key, result };
        this.cache.set(file, hit);
      }
      if ('error' in hit.result) out.errors.push({ file, error: hit.result.error });
      else out.instances.push(hit.result);
    }
    for (const f of this.cache.keys()) if (!seen.has(f)) this.cache.delete(f);
    return out;
  }
}
