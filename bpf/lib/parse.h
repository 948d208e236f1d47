/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing with explicit bounds checks. */
#ifndef STACKBPF_LIB_PARSE_H
#define STACKBPF_LIB_PARSE_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define VLAN_HLEN 4
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMPV6_ 58
#define VLAN_MAX_TAGS 2

/* L2 view of a frame: up to two VLAN tags, then the L3 protocol. */
struct l2 {
	__u16 proto;     /* host order, after the tags */
	__u16 tags;      /* 0..2 */
	__u16 inner_tci; /* host order: TCI of the innermost tag (PCP kept on rewrite) */
	__u16 l3_off;    /* ETH_HLEN + 4 * tags */
	__u16 outer_tci; /* host order: TCI of the outermost tag */
	__u16 outer_ad;  /* 1: the outermost tag is 802.1ad (TPID 0x88a8) */
};

static __always_inline int is_vlan(__u16 proto_be)
{
	return proto_be == bpf_htons(ETH_P_8021Q) || proto_be == bpf_htons(ETH_P_8021AD);
}

/* 0: ok; -1: truncated. A third tag leaves proto as a VLAN TPID (caller: "other"). */
static __always_inline int parse_l2(void *data, void *data_end, struct l2 *l2)
{
	struct ethhdr *eth = data;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	l2->tags = 0;
	l2->inner_tci = 0;
	l2->outer_tci = 0;
	l2->outer_ad = 0;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_TAGS; i++) {
		if (!is_vlan(proto))
			break;
		struct vlan_hdr *vh = data + ETH_HLEN + i * VLAN_HLEN;
		if ((void *)(vh + 1) > data_end)
			return -1;
		l2->inner_tci = bpf_ntohs(vh->h_vlan_TCI);
		if (i == 0) {
			l2->outer_tci = l2->inner_tci;
			l2->outer_ad = proto == bpf_htons(ETH_P_8021AD);
		}
		proto = vh->h_vlan_encapsulated_proto;
		l2->tags++;
	}
	l2->proto = bpf_ntohs(proto);
	l2->l3_off = ETH_HLEN + l2->tags * VLAN_HLEN;
	return 0;
}

#endif
