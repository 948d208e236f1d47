// The OVN → exposure computation (pure logic) on hand-built rows, for the
// cases the e2e test cannot produce on one chassis: live migration, VLAN
// provider networks, IPv6, distributed FIPs, tenant subnets, conflicts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config.js';
import { computeNb, computeSb, parseNatAddresses, type RowSource } from '../../src/ovn/model.js';
import type { Row } from '../../src/ovn/schema.js';
import { parseBridgeMappings } from '../../src/ovn/source.js';

class Rows implements RowSource {
  private readonly t = new Map<string, Map<string, Row>>();
  private n = 0;
  add(table: string, row: Record<string, unknown>): string {
    const uuid = `u${++this.n}`;
    if (!this.t.has(table)) this.t.set(table, new Map());
    this.t.get(table)?.set(uuid, { _uuid: uuid, ...(row as object) } as Row);
    return uuid;
  }
  rows(table: string): Iterable<Row> {
    return this.t.get(table)?.values() ?? [];
  }
  get(table: string, uuid: string): Row | undefined {
    return this.t.get(table)?.get(uuid);
  }
}

const mappings = new Map([
  ['physnet1', 'br-ex'],
  ['vlannet', 'br-vlan'],
]);

function nbWorld(): { db: Rows; ports: string[]; provider: string } {
  const db = new Rows();
  const ports: string[] = [];
  ports.push(
    db.add('Logical_Switch_Port', {
      name: 'ln',
      type: 'localnet',
      options: { network_name: 'vlannet' },
      tag: [100],
      addresses: ['unknown'],
      up: [],
      external_ids: {},
    }),
  );
  const provider = db.add('Logical_Switch', { name: 'neutron-net1', ports });
  return { db, ports, provider };
}

function lsp(db: Rows, ports: string[], name: string, addresses: string, extra: Record<string, unknown> = {}): string {
  const u = db.add('Logical_Switch_Port', { name, type: '', addresses: [addresses], options: {}, external_ids: {}, up: [true], tag: [], ...extra });
  ports.push(u);
  return u;
}

describe('OVN model, NB mode', () => {
  test('VLAN provider network and IPv6: /32 and /128 to the mapped bridge with the localnet tag', () => {
    const { db, ports } = nbWorld();
    lsp(db, ports, 'p1', 'fa:16:3e:00:00:01 198.51.100.10 2001:db8::10', { options: { 'requested-chassis': 'node-a' } });
    const r = computeNb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: false });
    assert.deepEqual(r.exposures.map((e) => [e.prefix, e.target, e.mac, e.vlan]).sort(), [
      ['198.51.100.10/32', 'br-vlan', 'fa:16:3e:00:00:01', 100],
      ['2001:db8::10/128', 'br-vlan', 'fa:16:3e:00:00:01', 100],
    ]);
  });

  test('live migration: requested-chassis lists both hosts, neutron:host_id decides; exactly one node exposes', () => {
    const { db, ports } = nbWorld();
    const migrating = { options: { 'requested-chassis': 'node-a,node-b' }, external_ids: { 'neutron:host_id': 'node-b' } };
    lsp(db, ports, 'p1', 'fa:16:3e:00:00:01 198.51.100.10', migrating);
    const a = computeNb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: false });
    const b = computeNb(db, { chassis: ['node-b', 'chassis-uuid-b'], bridgeMappings: mappings, exposeTenantNetworks: false });
    assert.equal(a.exposures.length, 0);
    assert.equal(b.exposures.length, 1);
  });

  test('ports that are down, unbound, on unmapped networks or of other types are not exposed', () => {
    const { db, ports } = nbWorld();
    lsp(db, ports, 'down', 'fa:16:3e:00:00:01 198.51.100.11', { options: { 'requested-chassis': 'node-a' }, up: [false] });
    lsp(db, ports, 'else', 'fa:16:3e:00:00:02 198.51.100.12', { options: { 'requested-chassis': 'node-z' } });
    lsp(db, ports, 'router', 'router', { type: 'router', options: { 'requested-chassis': 'node-a' } });
    const other: string[] = [];
    other.push(
      db.add('Logical_Switch_Port', {
        name: 'ln2',
        type: 'localnet',
        options: { network_name: 'unmapped' },
        tag: [],
        addresses: ['unknown'],
        up: [],
        external_ids: {},
      }),
    );
    lsp(db, other, 'unmapped', 'fa:16:3e:00:00:03 198.51.100.13', { options: { 'requested-chassis': 'node-a' } });
    db.add('Logical_Switch', { name: 'neutron-net2', ports: other });
    assert.equal(computeNb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: false }).exposures.length, 0);
  });

  test('distributed FIP on the node of its port with external_mac; tenant subnets only behind the flag', () => {
    const { db, ports } = nbWorld();
    const gwLsp = lsp(db, ports, 'gw-lsp', 'router', { type: 'router', options: { 'router-port': 'lrp-gw' } });
    void gwLsp;
    const gc = db.add('Gateway_Chassis', { chassis_name: 'node-gw', priority: 1 });
    const gw = db.add('Logical_Router_Port', {
      name: 'lrp-gw',
      mac: 'fa:16:3e:aa:00:01',
      networks: ['198.51.100.2/24'],
      gateway_chassis: [gc],
      ha_chassis_group: [],
      status: {},
    });
    const inner = db.add('Logical_Router_Port', {
      name: 'lrp-in',
      mac: 'fa:16:3e:aa:00:02',
      networks: ['203.0.113.129/25', '2001:db8:5::1/64'],
      gateway_chassis: [],
      ha_chassis_group: [],
      status: {},
    });
    const tenantPorts: string[] = [];
    lsp(db, tenantPorts, 'vm-t', 'fa:16:3e:00:00:05 203.0.113.130', { options: { 'requested-chassis': 'node-a' } });
    db.add('Logical_Switch', { name: 'neutron-tenant', ports: tenantPorts });
    const nat = db.add('NAT', {
      type: 'dnat_and_snat',
      external_ip: '198.51.100.50',
      external_mac: ['fa:16:3e:ff:00:50'],
      logical_port: ['vm-t'],
      external_ids: { 'neutron:fip_id': 'f1' },
    });
    db.add('Logical_Router', { name: 'r1', ports: [gw, inner], nat: [nat] });
    const onA = computeNb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: true });
    assert.deepEqual(onA.exposures.map((e) => [e.prefix, e.mac, e.owner]).sort(), [['198.51.100.50/32', 'fa:16:3e:ff:00:50', 'fip:f1']]);
    const onGw = computeNb(db, { chassis: ['node-gw'], bridgeMappings: mappings, exposeTenantNetworks: true });
    assert.deepEqual(onGw.exposures.map((e) => [e.prefix, e.mac]).sort(), [
      ['198.51.100.2/32', 'fa:16:3e:aa:00:01'],
      ['2001:db8:5::/64', 'fa:16:3e:aa:00:01'],
      ['203.0.113.128/25', 'fa:16:3e:aa:00:01'],
    ]);
    assert.equal(computeNb(db, { chassis: ['node-gw'], bridgeMappings: mappings, exposeTenantNetworks: false }).exposures.length, 1);
  });

  test('one address claimed with two different MACs: neither is exposed, both are reported', () => {
    const { db, ports } = nbWorld();
    lsp(db, ports, 'p1', 'fa:16:3e:00:00:01 198.51.100.10', { options: { 'requested-chassis': 'node-a' } });
    lsp(db, ports, 'p2', 'fa:16:3e:00:00:02 198.51.100.10', { options: { 'requested-chassis': 'node-a' } });
    const r = computeNb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: false });
    assert.equal(r.exposures.length, 0);
    assert.deepEqual(r.conflicts.map((c) => c.owner).sort(), ['lsp:p1', 'lsp:p2']);
  });

  test('an exposure whose bridge is missing waits as pending', () => {
    const { db, ports } = nbWorld();
    lsp(db, ports, 'p1', 'fa:16:3e:00:00:01 198.51.100.10', { options: { 'requested-chassis': 'node-a' } });
    const r = computeNb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: false, bridgeReady: () => false });
    assert.equal(r.exposures.length, 0);
    assert.match(r.pending[0]?.why ?? '', /bridge br-vlan is not there yet/);
  });
});

describe('OVN model, SB mode', () => {
  test('VM ports bound here, chassisredirect and nat_addresses; bindings elsewhere ignored', () => {
    const db = new Rows();
    const me = db.add('Chassis', { name: 'sys-id-a', hostname: 'node-a' });
    const other = db.add('Chassis', { name: 'sys-id-b', hostname: 'node-b' });
    const dpPub = 'dp-pub';
    const dpRouter = 'dp-r';
    db.add('Port_Binding', {
      logical_port: 'ln',
      type: 'localnet',
      datapath: dpPub,
      options: { network_name: 'physnet1' },
      tag: [],
      mac: ['unknown'],
      chassis: [],
      nat_addresses: [],
      up: [],
    });
    db.add('Port_Binding', {
      logical_port: 'vm-a',
      type: '',
      datapath: dpPub,
      options: {},
      tag: [],
      mac: ['fa:16:3e:00:00:0a 198.51.100.10'],
      chassis: [me],
      nat_addresses: [],
      up: [true],
    });
    db.add('Port_Binding', {
      logical_port: 'vm-b',
      type: '',
      datapath: dpPub,
      options: {},
      tag: [],
      mac: ['fa:16:3e:00:00:0b 198.51.100.11'],
      chassis: [other],
      nat_addresses: [],
      up: [true],
    });
    db.add('Port_Binding', {
      logical_port: 'gw-lsp',
      type: 'patch',
      datapath: dpPub,
      options: { peer: 'lrp-gw' },
      tag: [],
      mac: ['router'],
      chassis: [],
      nat_addresses: ['fa:16:3e:aa:00:01 198.51.100.50 is_chassis_resident("cr-lrp-gw")', 'fa:16:3e:ff:00:60 198.51.100.60 is_chassis_resident("vm-b")'],
      up: [],
    });
    db.add('Port_Binding', {
      logical_port: 'lrp-gw',
      type: 'patch',
      datapath: dpRouter,
      options: { peer: 'gw-lsp' },
      tag: [],
      mac: ['fa:16:3e:aa:00:01 198.51.100.2/24'],
      chassis: [],
      nat_addresses: [],
      up: [],
    });
    db.add('Port_Binding', {
      logical_port: 'cr-lrp-gw',
      type: 'chassisredirect',
      datapath: dpRouter,
      options: { 'distributed-port': 'lrp-gw' },
      tag: [],
      mac: ['fa:16:3e:aa:00:01 198.51.100.2/24'],
      chassis: [me],
      nat_addresses: [],
      up: [],
    });
    const r = computeSb(db, { chassis: ['node-a'], bridgeMappings: mappings, exposeTenantNetworks: false });
    assert.deepEqual(r.exposures.map((e) => [e.prefix, e.mac, e.owner]).sort(), [
      ['198.51.100.10/32', 'fa:16:3e:00:00:0a', 'lsp:vm-a'],
      ['198.51.100.2/32', 'fa:16:3e:aa:00:01', 'cr-lrp:lrp-gw'],
      ['198.51.100.50/32', 'fa:16:3e:aa:00:01', 'fip:198.51.100.50'],
    ]);
  });

  test('nat_addresses entries are parsed, and garbage is skipped', () => {
    assert.deepEqual(parseNatAddresses('fa:16:3e:aa:00:01 198.51.100.50 2001:db8::50 is_chassis_resident("cr-lrp-x")'), {
      mac: 'fa:16:3e:aa:00:01',
      ips: ['198.51.100.50', '2001:db8::50'],
      resident: 'cr-lrp-x',
    });
    assert.equal(parseNatAddresses('router'), undefined);
  });
});

describe('OVN settings', () => {
  test('bridge mappings and the ovn: section are validated with the setting named', () => {
    assert.deepEqual(
      [...parseBridgeMappings('physnet1:br-ex, vlannet:br-vlan')],
      [
        ['physnet1', 'br-ex'],
        ['vlannet', 'br-vlan'],
      ],
    );
    assert.throws(() => parseBridgeMappings('physnet1=br-ex'), /"physnet1=br-ex" is not NETWORK:BRIDGE/);
    const base = { dataplane: { provider_interfaces: ['eth1'] } };
    const c = parseConfig({
      ...base,
      ovn: { connection: 'ssl:192.0.2.10:6642,ssl:192.0.2.11:6642', ssl: { private_key: '/k', certificate: '/c', ca_cert: '/ca' } },
    });
    assert.equal(c.ovn?.mode, 'sb');
    assert.equal(c.ovn?.resyncSeconds, 300);
    assert.throws(() => parseConfig({ ...base, ovn: { connection: 'http://x' } }), /ovn\.connection: remote "http:\/\/x": expected tcp:HOST:PORT/);
    assert.throws(() => parseConfig({ ...base, ovn: { connection: 'ssl:192.0.2.10:6642' } }), /ovn\.ssl: an ssl: connection needs/);
    assert.throws(() => parseConfig({ ...base, ovn: { mode: 'xx' } }), /ovn\.mode: expected one of sb, nb/);
    assert.throws(() => parseConfig({ ...base, ovn: { bridge_mappings: 'a:b:c' } }), /ovn\.bridge_mappings: "a:b:c" is not NETWORK:BRIDGE/);
  });
});
