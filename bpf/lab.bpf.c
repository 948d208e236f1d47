// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Programs for the lab's VMs.
 * - xdp_pass: a veth that is the target of an XDP redirect only transmits
 *   when its peer runs XDP, so each VM's eth0 gets this.
 * - tc_vlan_untag / tc_vlan_tag: a VM on a tagged provider network, without
 *   VLAN devices (this kernel has none): strip the tag on ingress, add it on
 *   egress. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_P_8021Q 0x8100

const volatile __u16 vlan_id = 0;

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int tc_vlan_untag(struct __sk_buff *skb)
{
	if (!skb->vlan_present)
		return TC_ACT_SHOT; /* this VM's network is tagged: untagged frames are not for it */
	if ((skb->vlan_tci & 0x0fff) != vlan_id)
		return TC_ACT_SHOT;
	return bpf_skb_vlan_pop(skb) ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc")
int tc_vlan_tag(struct __sk_buff *skb)
{
	return bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vlan_id) ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
