// What this node exposes, computed from an OVN replica with ovn-bgp-agent's
// semantics (docs/ovn.md has the case-by-case mapping to OVN rows). Pure: the
// same rows and options give the same answer, so the whole set can be
// recomputed on every change and diffed by the reconciler.
import { isIP } from 'node:net';
import { canonicalPrefix, type Exposure } from '../dataplane/exposure.js';
import type { Row } from './schema.js';

export interface RowSource {
  rows(table: string): Iterable<Row>;
  get(table: string, uuid: string): Row | undefined;
}

export interface OvnModelOptions {
  /** Names this node goes by in OVN: the chassis name (system-id) and, for neutron:host_id, the host name. */
  chassis: string[];
  /** Provider network name → bridge ("physnet1" → "br-ex"), from ovn-bridge-mappings. */
  bridgeMappings: Map<string, string>;
  /** Also expose tenant subnets behind a router gateway hosted here. */
  exposeTenantNetworks: boolean;
  /** Whether a bridge is there to forward to yet; an exposure waits until it is. */
  bridgeReady?: (bridge: string) => boolean;
}

export interface Pending {
  owner: string;
  prefix: string;
  why: string;
}

export interface OvnExposures {
  exposures: Exposure[];
  /** Found in OVN but not exposable yet (no bridge yet), or refused (conflicting claims). */
  pending: Pending[];
  conflicts: Pending[];
}

const VM_PORT_TYPES = new Set(['', 'virtual']);

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}
function map(v: unknown): Record<string, string> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {};
}
function set(v: unknown): unknown[] {
  return Array.isArray(v) ? v : v === undefined || v === '' ? [] : [v];
}
function first<T>(v: unknown): T | undefined {
  return set(v)[0] as T | undefined;
}

/** "fa:16:3e:00:00:01 198.51.100.10 2001:db8::10" → MAC and addresses (host addresses only). */
export function parseAddresses(s: string): { mac: string; ips: string[] } | undefined {
  const parts = s.trim().split(/\s+/);
  const mac = parts[0] ?? '';
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) return undefined;
  const ips = parts
    .slice(1)
    .map((p) => p.split('/')[0] as string)
    .filter((p) => isIP(p) !== 0);
  return { mac: mac.toLowerCase(), ips };
}

/** "MAC ip1 ip2 is_chassis_resident(\"port\")" (Port_Binding.nat_addresses) → parts. */
export function parseNatAddresses(s: string): { mac: string; ips: string[]; resident: string | undefined } | undefined {
  const m = /is_chassis_resident\("([^"]+)"\)/.exec(s);
  const a = parseAddresses(s.replace(/is_chassis_resident\([^)]*\)/, ''));
  return a ? { ...a, resident: m?.[1] } : undefined;
}

// parsing an address is most of a recompute: remember the answers (bounded)
const hostKeys = new Map<string, string>();
function hostPrefix(ip: string): string {
  let k = hostKeys.get(ip);
  if (k === undefined) {
    // one spelling per address, so that one address is one key (2001:DB8::0:1 → 2001:db8::1)
    k = canonicalPrefix(isIP(ip) === 6 ? `${ip}/128` : `${ip}/32`).key;
    if (hostKeys.size >= 1_000_000) hostKeys.clear();
    hostKeys.set(ip, k);
  }
  return k;
}

class Collector {
  // one exposure per key, a list only when a key is claimed more than once
  private readonly byKey = new Map<string, Exposure | Exposure[]>();
  private readonly bridges = new Map<string, boolean>();
  readonly pending: Pending[] = [];
  constructor(private readonly ready: (bridge: string) => boolean) {}

  private bridgeReady(b: string): boolean {
    let r = this.bridges.get(b);
    if (r === undefined) this.bridges.set(b, (r = this.ready(b)));
    return r;
  }

  add(e: Exposure): void {
    if (!this.bridgeReady(e.target)) {
      this.pending.push({ owner: e.owner, prefix: e.prefix, why: `bridge ${e.target} is not there yet` });
      return;
    }
    // host addresses are made canonical here (hostPrefix); subnets were canonicalised by the caller
    const key = e.prefix;
    const had = this.byKey.get(key);
    if (had === undefined) this.byKey.set(key, e);
    else if (Array.isArray(had)) had.push(e);
    else this.byKey.set(key, [had, e]);
  }

  addAll(list: readonly Exposure[]): void {
    for (const e of list) this.add(e);
  }

  result(): OvnExposures {
    const exposures: Exposure[] = [];
    const conflicts: Pending[] = [];
    for (const v of this.byKey.values()) {
      if (!Array.isArray(v)) {
        exposures.push(v);
        continue;
      }
      const list = v;
      const a = list[0] as Exposure;
      // the same forwarding claimed twice (a FIP seen from the NAT and the gateway port) is one exposure
      const differ = list.find((e) => e.target !== a.target || e.mac !== a.mac || (e.vlan ?? 0) !== (a.vlan ?? 0));
      if (differ) {
        // two different answers for one address: expose neither rather than the wrong one
        for (const e of list)
          conflicts.push({
            owner: e.owner,
            prefix: e.prefix,
            why: `also claimed by ${list
              .filter((o) => o !== e)
              .map((o) => o.owner)
              .join(', ')} with a different target`,
          });
        continue;
      }
      exposures.push(a);
    }
    // no sort: the order follows the replica's rows, which is stable from one recompute to the next
    return { exposures, pending: this.pending, conflicts };
  }
}

interface Provider {
  bridge: string;
  vlan: number;
  network: string;
}

// A VM port's exposures depend only on its row (rows are replaced, never
// changed in place, by the replica) and its provider network: remember them
// per row, so a recompute over 10,000 unchanged ports makes no new objects.
const vmMemo = new WeakMap<Row, { bridge: string; vlan: number; network: string; list: Exposure[] }>();
function vmExposures(row: Row, prov: Provider, addresses: unknown, name: string): Exposure[] {
  const m = vmMemo.get(row);
  if (m && m.bridge === prov.bridge && m.vlan === prov.vlan && m.network === prov.network) return m.list;
  const list: Exposure[] = [];
  for (const a of set(addresses) as string[]) {
    const parsed = parseAddresses(a);
    if (!parsed) continue;
    for (const ip of parsed.ips)
      list.push({
        prefix: hostPrefix(ip),
        target: prov.bridge,
        mac: parsed.mac,
        vlan: prov.vlan,
        owner: `lsp:${name}`,
        reason: `VM port on provider network ${prov.network}`,
      });
  }
  vmMemo.set(row, { bridge: prov.bridge, vlan: prov.vlan, network: prov.network, list });
  return list;
}

/** A port bound here whose MAC and addresses OVN does not know ("unknown": port security off). */
function noAddress(name: string, addresses: unknown): Pending {
  return {
    owner: `lsp:${name}`,
    prefix: '-',
    why: `no "MAC address" entry in OVN (${JSON.stringify(addresses)}): the port's MAC is not known (port security disabled?)`,
  };
}

// ---------------------------------------------------------------- NB mode

/**
 * NB mode (ovn-bgp-agent's nb_ovn_bgp_driver): Logical_Switch(_Port),
 * Logical_Router(_Port), NAT, Gateway_Chassis and HA_Chassis(_Group).
 */
export function computeNb(db: RowSource, opts: OvnModelOptions): OvnExposures {
  const me = new Set(opts.chassis);
  const out = new Collector(opts.bridgeReady ?? (() => true));

  // provider switches: a localnet port whose network is mapped to a bridge here
  const lsOfPort = new Map<string, Row>();
  const provider = new Map<string, Provider>(); // LS uuid → provider info
  for (const ls of db.rows('Logical_Switch')) {
    for (const p of set(ls.ports) as string[]) {
      lsOfPort.set(p, ls);
      const lsp = db.get('Logical_Switch_Port', p);
      if (lsp?.type !== 'localnet') continue;
      const network = str(map(lsp.options).network_name);
      const bridge = opts.bridgeMappings.get(network);
      if (bridge) provider.set(ls._uuid, { bridge, vlan: Number(first(lsp.tag) ?? 0), network });
    }
  }
  const lspByRouterPort = new Map<string, Row>();
  for (const lsp of db.rows('Logical_Switch_Port')) {
    if (lsp.type === 'router') lspByRouterPort.set(map(lsp.options)['router-port'] ?? '', lsp);
  }
  let byName: Map<string, Row> | undefined; // only floating IPs need it
  const lspByName = (name: string): Row | undefined => {
    if (!byName) {
      byName = new Map();
      for (const lsp of db.rows('Logical_Switch_Port')) byName.set(str(lsp.name), lsp);
    }
    return byName.get(name);
  };

  const boundHere = (lsp: Row): boolean => {
    const hostId = map(lsp.external_ids)['neutron:host_id'];
    // during a live migration requested-chassis lists both hosts; neutron:host_id says which one owns the port
    if (hostId) return me.has(hostId);
    const requested = map(lsp.options)['requested-chassis'] ?? '';
    const comma = requested.indexOf(',');
    return requested !== '' && me.has(comma < 0 ? requested : requested.slice(0, comma));
  };
  const isUp = (lsp: Row): boolean => first<boolean>(lsp.up) === true;

  // 1. VM ports on provider networks bound here
  for (const lsp of db.rows('Logical_Switch_Port')) {
    if (!VM_PORT_TYPES.has(str(lsp.type)) || !isUp(lsp) || !boundHere(lsp)) continue;
    const ls = lsOfPort.get(lsp._uuid);
    const prov = ls && provider.get(ls._uuid);
    if (!prov) continue;
    const list = vmExposures(lsp, prov, lsp.addresses, str(lsp.name));
    if (list.length) out.addAll(list);
    else out.pending.push(noAddress(str(lsp.name), lsp.addresses));
  }

  // routers: their gateway port (the one with gateway chassis) and where it is active
  const providerOfLrp = (lrp: Row): Provider | undefined => {
    // the switch side is the LSP of type router whose options:router-port names this LRP
    const lsp = lspByRouterPort.get(str(lrp.name));
    const ls = lsp && lsOfPort.get(lsp._uuid);
    return ls ? provider.get(ls._uuid) : undefined;
  };
  const activeChassis = (lrp: Row): string | undefined => {
    const status = map(lrp.status)['hosting-chassis'];
    if (status) return status;
    let best: { name: string; prio: number } | undefined;
    for (const gc of set(lrp.gateway_chassis) as string[]) {
      const r = db.get('Gateway_Chassis', gc);
      if (r && (!best || Number(r.priority) > best.prio)) best = { name: str(r.chassis_name), prio: Number(r.priority) };
    }
    const group = first<string>(lrp.ha_chassis_group);
    const g = group ? db.get('HA_Chassis_Group', group) : undefined;
    for (const hc of set(g?.ha_chassis) as string[]) {
      const r = db.get('HA_Chassis', hc);
      if (r && (!best || Number(r.priority) > best.prio)) best = { name: str(r.chassis_name), prio: Number(r.priority) };
    }
    return best?.name;
  };

  for (const lr of db.rows('Logical_Router')) {
    const ports = (set(lr.ports) as string[]).map((u) => db.get('Logical_Router_Port', u)).filter((r): r is Row => r !== undefined);
    const gw = ports.find((p) => set(p.gateway_chassis).length > 0 || set(p.ha_chassis_group).length > 0 || map(p.status)['hosting-chassis']);
    const gwProv = gw && providerOfLrp(gw);
    const gwHere = gw !== undefined && me.has(activeChassis(gw) ?? '');
    const gwMac = gw ? str(gw.mac).toLowerCase() : '';

    // 2. the router gateway (cr-lrp) addresses, where the gateway is active
    if (gw && gwProv && gwHere) {
      for (const net of set(gw.networks) as string[]) {
        const ip = net.split('/')[0] as string;
        if (isIP(ip))
          out.add({
            prefix: hostPrefix(ip),
            target: gwProv.bridge,
            mac: gwMac,
            vlan: gwProv.vlan,
            owner: `cr-lrp:${str(gw.name)}`,
            reason: `router gateway on provider network ${gwProv.network}`,
          });
      }
    }

    // 3. floating IPs: distributed ones where their port is bound, the others where the gateway is
    for (const natUuid of set(lr.nat) as string[]) {
      const nat = db.get('NAT', natUuid);
      if (nat?.type !== 'dnat_and_snat') continue;
      const ip = str(nat.external_ip);
      if (!isIP(ip)) continue;
      const fipNet = map(nat.external_ids)['neutron:fip_network_id'];
      const prov = gwProv ?? [...provider.entries()].find(([u]) => fipNet && str(db.get('Logical_Switch', u)?.name) === `neutron-${fipNet}`)?.[1];
      if (!prov) continue;
      const extMac = first<string>(nat.external_mac);
      const lport = first<string>(nat.logical_port);
      const owner = `fip:${map(nat.external_ids)['neutron:fip_id'] ?? ip}`;
      if (extMac && lport) {
        const vm = lspByName(lport);
        if (vm && isUp(vm) && boundHere(vm))
          out.add({
            prefix: hostPrefix(ip),
            target: prov.bridge,
            mac: extMac.toLowerCase(),
            vlan: prov.vlan,
            owner,
            reason: `distributed floating IP of ${lport}`,
          });
      } else if (gwHere && gwMac) {
        out.add({
          prefix: hostPrefix(ip),
          target: prov.bridge,
          mac: gwMac,
          vlan: prov.vlan,
          owner,
          reason: `floating IP behind router gateway ${str(gw?.name)}`,
        });
      }
    }

    // 4. tenant subnets behind a gateway active here (behind a flag)
    if (opts.exposeTenantNetworks && gw && gwProv && gwHere) {
      for (const p of ports) {
        if (p === gw) continue;
        for (const net of set(p.networks) as string[]) {
          let prefix: string;
          try {
            prefix = canonicalPrefix(net).key;
          } catch {
            continue;
          }
          out.add({
            prefix,
            target: gwProv.bridge,
            mac: gwMac,
            vlan: gwProv.vlan,
            owner: `subnet:${str(p.name)}`,
            reason: `tenant subnet behind router gateway ${str(gw.name)}`,
          });
        }
      }
    }
  }
  return out.result();
}

// ---------------------------------------------------------------- SB mode

/**
 * SB mode (ovn-bgp-agent's ovn_bgp_driver): Chassis and Port_Binding, where
 * ovn-controller records what is bound to which chassis.
 */
export function computeSb(db: RowSource, opts: OvnModelOptions): OvnExposures {
  const out = new Collector(opts.bridgeReady ?? (() => true));
  const mine = new Set<string>();
  const names = new Set(opts.chassis);
  for (const ch of db.rows('Chassis')) if (names.has(str(ch.name)) || names.has(str(ch.hostname))) mine.add(ch._uuid);
  const here = (pb: Row): boolean => mine.has(first<string>(pb.chassis) ?? '');

  const provider = new Map<string, Provider>(); // datapath uuid → provider info
  const pbByName = new Map<string, Row>();
  const patchByPeer = new Map<string, Row>();
  for (const pb of db.rows('Port_Binding')) {
    pbByName.set(str(pb.logical_port), pb);
    if (pb.type === 'localnet') {
      const network = str(map(pb.options).network_name);
      const bridge = opts.bridgeMappings.get(network);
      if (bridge) provider.set(str(pb.datapath), { bridge, vlan: Number(first(pb.tag) ?? 0), network });
    } else if (pb.type === 'patch') {
      const peer = map(pb.options).peer;
      if (peer) patchByPeer.set(peer, pb);
    }
  }

  for (const pb of db.rows('Port_Binding')) {
    const type = str(pb.type);
    // 1. VM ports on provider networks bound here
    if (VM_PORT_TYPES.has(type) && here(pb) && first<boolean>(pb.up) !== false) {
      const prov = provider.get(str(pb.datapath));
      if (!prov) continue;
      const list = vmExposures(pb, prov, pb.mac, str(pb.logical_port));
      if (list.length) out.addAll(list);
      else out.pending.push(noAddress(str(pb.logical_port), pb.mac));
      continue;
    }
    // 2. router gateway ports (chassisredirect) active here, and 4. the subnets behind them
    if (type === 'chassisredirect' && here(pb)) {
      const lrp = map(pb.options)['distributed-port'] ?? '';
      const lsSide = patchByPeer.get(lrp);
      const prov = lsSide && provider.get(str(lsSide.datapath));
      if (!prov) continue;
      let gwMac = '';
      for (const a of set(pb.mac) as string[]) {
        const parsed = parseAddresses(a);
        if (!parsed) continue;
        gwMac = parsed.mac;
        for (const ip of parsed.ips)
          out.add({
            prefix: hostPrefix(ip),
            target: prov.bridge,
            mac: parsed.mac,
            vlan: prov.vlan,
            owner: `cr-lrp:${lrp}`,
            reason: `router gateway on provider network ${prov.network}`,
          });
      }
      if (opts.exposeTenantNetworks && gwMac) {
        // the router's other ports: patch bindings on the router datapath, their networks in `mac`
        for (const rp of db.rows('Port_Binding')) {
          if (rp.type !== 'patch' || rp.datapath !== pb.datapath || rp.logical_port === lrp) continue;
          for (const a of set(rp.mac) as string[]) {
            for (const net of a.trim().split(/\s+/).slice(1)) {
              if (!net.includes('/')) continue;
              let prefix: string;
              try {
                prefix = canonicalPrefix(net).key;
              } catch {
                continue;
              }
              out.add({
                prefix,
                target: prov.bridge,
                mac: gwMac,
                vlan: prov.vlan,
                owner: `subnet:${str(rp.logical_port)}`,
                reason: `tenant subnet behind router gateway ${lrp}`,
              });
            }
          }
        }
      }
      continue;
    }
    // 3. floating IPs: the provider side of a router lists them with the port they live on
    if (type === 'patch') {
      const prov = provider.get(str(pb.datapath));
      if (!prov) continue;
      for (const entry of set(pb.nat_addresses) as string[]) {
        const nat = parseNatAddresses(entry);
        if (!nat?.resident) continue;
        const resident = pbByName.get(nat.resident);
        if (!resident || !here(resident)) continue;
        const distributed = resident.type !== 'chassisredirect';
        for (const ip of nat.ips)
          out.add({
            prefix: hostPrefix(ip),
            target: prov.bridge,
            mac: nat.mac,
            vlan: prov.vlan,
            owner: `fip:${ip}`,
            reason: distributed ? `distributed floating IP of ${nat.resident}` : `floating IP behind router gateway ${nat.resident}`,
          });
      }
    }
  }
  return out.result();
}
