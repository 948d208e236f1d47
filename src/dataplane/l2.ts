// This host's link-layer addresses on the provider interfaces, for the
// RFC 1812 5.3.4 check in xdp_ingress: a frame is forwarded only when it was
// sent to the MAC of the interface it arrived on (untagged), or of the VLAN
// device on that interface for its tag.
import { readFileSync } from 'node:fs';
import { ifindexOf, macOf, withNetns } from '../ebpf/index.js';
import { l2Vid } from './abi.js';

export interface LocalAddress {
  ifindex: number;
  /** l2_key.vid: 0 untagged, 0x1000 | VID for one tag */
  vid: number;
  mac: string;
  /** the device the address belongs to (the NIC or a VLAN device on it) */
  ifname: string;
}

/** VLAN devices per lower device, from /proc/net/vlan/config (absent without 8021q). */
export function vlanDevices(netns?: string): { ifname: string; vid: number; lower: string }[] {
  let text: string;
  try {
    text = withNetns(netns, () => readFileSync('/proc/net/vlan/config', 'utf8'));
  } catch {
    return [];
  }
  const out: { ifname: string; vid: number; lower: string }[] = [];
  for (const line of text.split('\n')) {
    const cols = line.split('|').map((c) => c.trim());
    if (cols.length !== 3 || !/^\d+$/.test(cols[1] as string)) continue;
    out.push({ ifname: cols[0] as string, vid: Number(cols[1]), lower: cols[2] as string });
  }
  return out;
}

/** The addresses frames arriving on these interfaces may be sent to. */
export function localAddresses(ifnames: readonly string[], netns?: string): LocalAddress[] {
  const vlans = vlanDevices(netns);
  const out: LocalAddress[] = [];
  for (const ifname of ifnames) {
    const ifindex = ifindexOf(ifname, netns);
    out.push({ ifindex, vid: 0, mac: macOf(ifname, netns), ifname });
    for (const v of vlans) {
      if (v.lower !== ifname || v.vid === 0) continue;
      out.push({ ifindex, vid: l2Vid(v.vid), mac: macOf(v.ifname, netns), ifname: v.ifname });
    }
  }
  return out;
}
