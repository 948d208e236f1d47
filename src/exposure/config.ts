// The exposure controller's configuration sections: the data plane, BGP,
// OVN and static exposures (docs/configuration.md is generated from these).
import { z } from 'zod';
import { type Exposure, ExposureError, normalizeExposure } from '../dataplane/exposure.js';
import { parseRemote } from '../ovn/ovsdb.js';
import { parseBridgeMappings } from '../ovn/source.js';
import { bool, defaultedSection, int, ipAddress, list, oneOf, section, str, strList } from '../schema.js';

const dataplane = defaultedSection({
  provider_interfaces: strList().default([]).describe('XDP ingress on each provider NIC; none = no data plane'),
  xdp_mode: oneOf(['auto', 'native', 'generic'], 'auto').describe('auto: native, else generic'),
  return_interfaces: strList().default([]).describe('TC return path on each (the agent turns on forwarding on these only: bpf_fib_lookup needs it)'),
  max_exposures: int(1, 4_000_000, 131072).describe('exact entries per family; also sizes the counters'),
  max_block_rules: int(1, 1_000_000, 65536).describe('sources that can be dropped at XDP'),
});

const neighbor = section({
  address: ipAddress().describe('the peer'),
  remote_as: int(1, 4294967295),
  families: list(z.enum(['ipv4', 'ipv6'], { error: 'expected ipv4 or ipv6' }))
    .optional()
    .describe("default: the address's family"),
});

const bgp = section({
  asn: int(1, 4294967295),
  router_id: str().check((ctx) => {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(ctx.value) || ctx.value.split('.').some((o) => Number(o) > 255)) {
      ctx.issues.push({ code: 'custom', input: ctx.value, message: 'expected an IPv4 address' });
    }
  }),
  neighbors: list(neighbor).min(1, { error: 'list at least one neighbour' }),
  frr: defaultedSection({
    netns: str().optional().describe('run vtysh inside this namespace'),
    pathspace: str().optional().describe('FRR instance (vtysh -N)'),
    vtysh: str().default('/usr/bin/vtysh'),
  }),
})
  .optional()
  .describe('without it nothing is announced');

const ovn = section({
  mode: oneOf(['sb', 'nb'], 'sb').describe('sb: Port_Binding; nb: Logical_Switch_Port, NAT, ...'),
  connection: str()
    .check((ctx) => {
      for (const part of ctx.value.split(',')) {
        try {
          parseRemote(part.trim());
        } catch (err) {
          ctx.issues.push({ code: 'custom', input: ctx.value, message: (err as Error).message });
          return;
        }
      }
    })
    .optional()
    .describe('the SB (default tcp:127.0.0.1:6642) or NB (default tcp:127.0.0.1:6641) database; tcp:, ssl:, unix:, comma-separated'),
  ssl: section({ private_key: str(), certificate: str(), ca_cert: str() }).optional().describe('needed for ssl: remotes: the files ovn-controller uses'),
  ovs_connection: str().default('unix:/var/run/openvswitch/db.sock').describe('local OVS: chassis name, bridge mappings'),
  chassis: z
    .union([str(), strList()], { error: 'expected a chassis name or a list of them' })
    .optional()
    .describe('default: external_ids:system-id and :hostname of the local OVS'),
  bridge_mappings: str()
    .check((ctx) => {
      try {
        parseBridgeMappings(ctx.value, 'ovn.bridge_mappings');
      } catch (err) {
        ctx.issues.push({ code: 'custom', input: ctx.value, message: (err as Error).message.replace(/^ovn\.bridge_mappings: /, '') });
      }
    })
    .optional()
    .describe('default: external_ids:ovn-bridge-mappings of the local OVS'),
  expose_tenant_networks: bool(false).describe('also expose subnets behind a router gateway active here'),
  resync_seconds: int(0, 86400, 300).describe('safety-net recompute and reconcile; 0 = off'),
})
  .optional()
  .describe('learn exposures from OVN (docs/ovn.md)');

const exposure = section({
  prefix: str().describe('an address (/32, /128) or a prefix (tenant subnet)'),
  target: str().describe('interface on the VM side'),
  mac: str().describe("VM port MAC, or the OVN gateway port's"),
  vlan: z.number({ error: 'expected a number' }).optional().describe('VLAN on the VM side; 0 = untagged'),
  owner: str().describe('who owns it; one prefix, one owner'),
  reason: z.string().optional(),
}).check((ctx) => {
  try {
    normalizeExposure(ctx.value as Exposure);
  } catch (err) {
    if (!(err instanceof ExposureError)) throw err;
    ctx.issues.push({ code: 'custom', input: ctx.value, path: [err.field], message: err.message.slice(err.field.length + 2) });
  }
});

export const exposureSections = {
  dataplane,
  bgp,
  ovn,
  exposures: list(exposure).default([]).describe('static exposures (more can be added through the API)'),
};
