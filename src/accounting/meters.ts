// Ceilometer's language: meter names, types and units exactly as its compute
// pollsters declare them (ceilometer/compute/pollsters/*.py), resource ids
// built as they build them, and samples in the shape its publishers carry
// (publisher/utils.py meter_message_from_counter). What Ceilometer has no
// meter for carries a name of the same form that no Ceilometer meter uses.
import { randomUUID } from 'node:crypto';
import { CLASS_NAMES, type TrafficClass } from './abi.js';
import type { Instance, InstanceDisk, InstanceInterface } from './libvirt.js';

export type MeterType = 'cumulative' | 'gauge' | 'delta';
export interface MeterDef {
  type: MeterType;
  unit: string;
  /** a meter Ceilometer itself has (compared field by field in the tests) */
  ceilometer: boolean;
  help: string;
}

const m = (type: MeterType, unit: string, ceilometer: boolean, help: string): MeterDef => ({ type, unit, ceilometer, help });

export const METERS: Record<string, MeterDef> = {
  cpu: m('cumulative', 'ns', true, 'CPU time used (all threads)'),
  vcpus: m('gauge', 'vcpu', true, 'virtual CPUs'),
  'memory.resident': m('gauge', 'MB', true, 'resident memory of the process on the host'),
  'memory.usage': m('gauge', 'MB', true, "memory the guest uses, by its balloon's figures"),
  'cpu.wait': m('cumulative', 'ns', false, 'time runnable but waiting for a host CPU (run-queue delay)'),
  'network.incoming.bytes': m('cumulative', 'B', true, 'bytes received by the guest (the tap transmitted)'),
  'network.outgoing.bytes': m('cumulative', 'B', true, 'bytes sent by the guest (the tap received)'),
  'network.incoming.packets': m('cumulative', 'packet', true, 'packets received by the guest'),
  'network.outgoing.packets': m('cumulative', 'packet', true, 'packets sent by the guest'),
  'network.incoming.packets.drop': m('cumulative', 'packet', true, 'packets to the guest the tap dropped'),
  'network.outgoing.packets.drop': m('cumulative', 'packet', true, 'packets from the guest the tap dropped'),
  'network.incoming.packets.error': m('cumulative', 'packet', true, 'packets to the guest with errors'),
  'network.outgoing.packets.error': m('cumulative', 'packet', true, 'packets from the guest with errors'),
  'disk.device.read.bytes': m('cumulative', 'B', true, 'bytes read'),
  'disk.device.write.bytes': m('cumulative', 'B', true, 'bytes written'),
  'disk.device.read.requests': m('cumulative', 'request', true, 'read requests'),
  'disk.device.write.requests': m('cumulative', 'request', true, 'write requests'),
  'disk.device.read.latency': m('cumulative', 'ns', true, 'time reads took, summed'),
  'disk.device.write.latency': m('cumulative', 'ns', true, 'time writes took, summed'),
  // a service's disk I/O over every device (Ceilometer's former instance-wide disk meters)
  'disk.read.bytes': m('cumulative', 'B', true, 'bytes read, every device'),
  'disk.write.bytes': m('cumulative', 'B', true, 'bytes written, every device'),
  'disk.read.requests': m('cumulative', 'request', true, 'read requests, every device'),
  'disk.write.requests': m('cumulative', 'request', true, 'write requests, every device'),
  // what a project costs the control plane, per service
  'api.requests': m('cumulative', 'request', false, 'API requests the project made to the service'),
  'api.cpu': m('cumulative', 'ns', false, "the service's worker CPU time while serving them"),
  'api.sql.statements': m('cumulative', 'statement', false, 'SQL statements run while serving them'),
  'api.sql.time': m('cumulative', 'ns', false, 'time those SQL statements took'),
};
// the bytes by where they go: network.{incoming,outgoing}.bytes.{north_south,east_west,node,non_ip,before}
for (const dir of ['incoming', 'outgoing'] as const) {
  for (const cls of CLASS_NAMES) {
    METERS[`network.${dir}.bytes.${cls}`] = m('cumulative', 'B', false, `bytes ${dir === 'incoming' ? 'to' : 'from'} the guest, ${classHelp(cls)}`);
  }
}

function classHelp(c: TrafficClass): string {
  switch (c) {
    case 'north_south':
      return 'to or from outside the tenant networks (provider network, floating IPs, SNAT)';
    case 'east_west':
      return 'inside the tenant networks';
    case 'node':
      return "to or from the node's own services (metadata, DHCP)";
    case 'non_ip':
      return 'non-IP frames (ARP)';
    case 'before':
      return 'counted by the tap before the agent watched it (destination unknown)';
  }
}

/** A sample as Ceilometer's publishers carry it (meter_message_from_counter). */
export interface Sample {
  source: string;
  counter_name: string;
  counter_type: MeterType;
  counter_unit: string;
  counter_volume: number;
  user_id: string | null;
  project_id: string | null;
  resource_id: string;
  timestamp: string;
  resource_metadata: Record<string, unknown>;
  message_id: string;
  monotonic_time: number | null;
  message_signature: string;
}

/** What a resource is; kept with its samples. */
export interface Resource {
  id: string;
  kind: 'instance' | 'interface' | 'disk' | 'service' | 'control';
  instanceId?: string;
  projectId?: string;
  userId?: string;
  service?: string;
  metadata: Record<string, unknown>;
}

/** Ceilometer's resource metadata for an instance (compute/pollsters/util.py, from the domain instead of Nova's API). */
export function instanceMetadata(i: Instance, host: string): Record<string, unknown> {
  const f = i.flavor;
  return {
    display_name: i.displayName ?? i.name,
    name: i.name,
    instance_id: i.uuid,
    instance_type: f?.name ?? null,
    host,
    instance_host: host,
    flavor: f ? { name: f.name, vcpus: f.vcpus ?? i.vcpus, ram: f.memoryMb ?? i.memoryMb, disk: f.diskGb ?? 0, ephemeral: f.ephemeralGb ?? 0 } : null,
    status: 'active',
    vcpus: f?.vcpus ?? i.vcpus,
    memory_mb: f?.memoryMb ?? i.memoryMb,
    disk_gb: f?.diskGb ?? 0,
    ephemeral_gb: f?.ephemeralGb ?? 0,
    root_gb: (f?.diskGb ?? 0) - (f?.ephemeralGb ?? 0),
  };
}

export function instanceResource(i: Instance, host: string): Resource {
  return {
    id: i.uuid,
    kind: 'instance',
    instanceId: i.uuid,
    ...(i.projectId ? { projectId: i.projectId } : {}),
    ...(i.userId ? { userId: i.userId } : {}),
    metadata: instanceMetadata(i, host),
  };
}

/** `<instance-name>-<instance-uuid>-<tap>`, as Ceilometer's network pollsters build it. */
export function interfaceResource(i: Instance, vnic: InstanceInterface, host: string): Resource {
  return {
    id: `${i.name}-${i.uuid}-${vnic.tap}`,
    kind: 'interface',
    instanceId: i.uuid,
    ...(i.projectId ? { projectId: i.projectId } : {}),
    ...(i.userId ? { userId: i.userId } : {}),
    metadata: {
      ...instanceMetadata(i, host),
      name: vnic.tap,
      mac: vnic.mac,
      fref: null,
      vnic_name: vnic.tap,
      instance_id: i.uuid,
      ...(vnic.portId ? { port_id: vnic.portId } : {}),
    },
  };
}

/** `<instance-uuid>-<device>`, as Ceilometer's disk pollsters build it. */
export function diskResource(i: Instance, d: InstanceDisk, host: string): Resource {
  return {
    id: `${i.uuid}-${d.target}`,
    kind: 'disk',
    instanceId: i.uuid,
    ...(i.projectId ? { projectId: i.projectId } : {}),
    ...(i.userId ? { userId: i.userId } : {}),
    metadata: { ...instanceMetadata(i, host), disk_name: d.target },
  };
}

/** A project's use of a service's API: `<project>:<service>`. */
export function controlResource(project: string, service: string, host: string): Resource {
  return { id: `${project}:${service}`, kind: 'control', projectId: project, service, metadata: { host, service, project_id: project } };
}

export function serviceResource(service: string, host: string): Resource {
  return { id: `${host}-${service}`, kind: 'service', service, metadata: { host, service } };
}

/** Samples we publish say who measured them (Ceilometer keeps resource metadata as it is). */
export const MEASURED_BY = 'stackbpf';

export function makeSample(r: Resource, name: string, volume: number, ts: number): Sample {
  const def = METERS[name];
  if (!def) throw new Error(`unknown meter ${name}`);
  return {
    source: 'openstack',
    counter_name: name,
    counter_type: def.type,
    counter_unit: def.unit,
    counter_volume: volume,
    user_id: r.userId ?? null,
    project_id: r.projectId ?? null,
    resource_id: r.id,
    timestamp: new Date(ts).toISOString().replace('Z', '+00:00'),
    resource_metadata: { ...r.metadata, measured_by: MEASURED_BY },
    message_id: randomUUID(),
    monotonic_time: null,
    message_signature: '',
  };
}
