/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Incremental checksum updates (RFC 1624). */
#ifndef STACKBPF_LIB_CSUM_H
#define STACKBPF_LIB_CSUM_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>

/* Decrement the IPv4 TTL and patch the header checksum: the TTL is the high
 * byte of the 16-bit word it shares with the protocol, so that word drops by
 * 0x0100 and HC' = ~(~HC + ~m + m') = ~(~HC + 0xfeff). */
static __always_inline void ipv4_dec_ttl(struct iphdr *ip)
{
	__u32 sum = (__u16)~bpf_ntohs(ip->check) + 0xfeffu;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = bpf_htons((__u16)~sum);
	ip->ttl--;
}

#endif
