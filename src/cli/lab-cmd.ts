// `stackbpf lab up|down|status`: the namespace testbed.
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { labAgentPinRoot, labDown, labStatus, labUp, listLabs, type LabState, NODE_ASN, UPSTREAM_ASN } from '../lab/lab.js';

/** An agent configuration for a lab: the node's namespace, its NICs, FRR, and one exposure per VM address. */
export function labAgentConfig(s: LabState, pinRoot: string): Record<string, unknown> {
  return {
    pin_root: pinRoot,
    netns: s.node.ns,
    state_dir: `/run/stackbpf/lab-agent/${s.name}`,
    dataplane: { provider_interfaces: [s.node.provider], return_interfaces: s.vms.map((v) => v.tap) },
    bgp: {
      asn: NODE_ASN,
      router_id: s.node.ipv4,
      neighbors: [
        { address: s.upstream.ipv4, remote_as: UPSTREAM_ASN, families: ['ipv4'] },
        { address: s.upstream.ipv6, remote_as: UPSTREAM_ASN, families: ['ipv6'] },
      ],
      frr: { netns: s.node.ns, pathspace: s.node.frr },
    },
    api: { listen: `unix:/run/stackbpf/lab-agent-${s.name}.sock` },
    exposures: s.vms.flatMap((v, i) => [
      { prefix: v.ipv4, target: v.tap, mac: v.mac, vlan: v.vlan, owner: `lab-vm${i}`, reason: 'lab VM' },
      { prefix: v.ipv6, target: v.tap, mac: v.mac, vlan: v.vlan, owner: `lab-vm${i}`, reason: 'lab VM' },
    ]),
  };
}

export async function runLab(action: string | undefined, values: Record<string, unknown>): Promise<number> {
  const name = (values.name as string | undefined) ?? 'lab';
  const out = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  switch (action) {
    case 'up': {
      const vms = ((values.vms as string | undefined) ?? '0').split(',').map((v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 4094) throw new Error(`--vms: "${v}" is not a VLAN id (0 for untagged)`);
        return n;
      });
      const s = await labUp({ name, vms, log: out });
      if (values['write-config']) {
        writeFileSync(values['write-config'] as string, stringify(labAgentConfig(s, labAgentPinRoot(name))));
        out(`agent configuration written to ${values['write-config'] as string}: stackbpf agent --config ${values['write-config'] as string}`);
      }
      out(`lab ${name} is up. Traffic from upstream: ip netns exec ${s.upstream.ns} ping -I ${s.upstream.client4} ${s.vms[0]?.ipv4}`);
      return 0;
    }
    case 'down':
      out((await labDown(name, out)) ? `lab ${name} is down` : `no lab named ${name}`);
      return 0;
    case 'status': {
      const names = values.name ? [name] : listLabs();
      const all = await Promise.all(names.map((n) => labStatus(n)));
      if (values.json) out(JSON.stringify(all.filter(Boolean)));
      else if (all.length === 0) out('no labs');
      else
        for (const st of all) {
          if (!st) continue;
          const missing = Object.entries(st.namespaces)
            .filter(([, up]) => !up)
            .map(([ns]) => ns);
          out(`lab ${st.name}: ${Object.keys(st.namespaces).length} namespaces${missing.length ? `, MISSING ${missing.join(', ')}` : ''}`);
          out(
            `  bgp: ${st.bgp ? `${st.bgp.established ? 'established' : 'not established'}, upstream learned ${st.bgp.routes.length} route(s)${st.bgp.routes.length ? `: ${st.bgp.routes.join(', ')}` : ''}` : 'FRR not answering'}`,
          );
        }
      return 0;
    }
    default:
      process.stderr.write(`stackbpf lab: expected up, down or status, got ${action ?? 'nothing'}\n`);
      return 2;
  }
}
