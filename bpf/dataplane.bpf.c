// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The BGP fast path.
 *
 * xdp_ingress (provider NIC): traffic to an exposed address or prefix goes
 * straight to its target interface: destination MAC set to the VM port (or
 * OVN gateway port), source MAC to the target interface's, TTL / hop limit
 * decremented with an incremental checksum update, the VLAN tags replaced by
 * the exposure's (none, or one 802.1Q tag), then redirected through the
 * tx_ports devmap. Everything else passes to the kernel untouched, and so
 * does whatever a router must check or process first: bad headers, martian
 * sources, frames not sent to this host's MAC, IPv4 options and IPv6
 * hop-by-hop headers, datagrams larger than the target's MTU (docs/dataplane.md
 * has the table, with the RFC sections). Fragments are forwarded like any
 * other packet: the decision reads only the destination.
 *
 * tc_return (VM side, TC ingress): replies from exposed addresses go straight
 * out through the FIB's answer (bpf_fib_lookup, bpf_redirect_neigh); with no
 * usable answer the kernel gets the packet.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "dataplane.h"
#include "parse.h"
#include "csum.h"

#define AF_INET 2
#define AF_INET6 10
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32); /* IPv4 address, network order */
	__type(value, struct exposure);
} exp_v4 SEC(".maps");

/* size: a power of two, set with exp4_mask before load */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct exp4_slot);
} exp4_slots SEC(".maps");

const volatile __u32 exp4_mask = 262143;

/* size: a power of two, set with exp6_mask before load */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct exp6_slot);
} exp6_slots SEC(".maps");

const volatile __u32 exp6_mask = 262143;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DP_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_info);
} port_info SEC(".maps");

/* this host's link-layer addresses per ingress interface and VLAN */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, L2_SLOTS);
	__type(key, __u32);
	__type(value, struct l2_local);
} l2_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct in6_addr);
	__type(value, struct exposure);
} exp_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, struct exposure);
} exp_lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, struct exposure);
} exp_lpm_v6 SEC(".maps");

/* Per exposure id and CPU: packets and bytes forwarded. One stripe of
 * exp_stats_stride counters per possible CPU, at cpu * exp_stats_stride + id
 * (both sizes set before load), so each CPU writes only its own stripe. Not a
 * per-CPU array: that reaches a counter through a table of per-CPU pointers,
 * a second cache and TLB miss per packet when hits spread over many
 * exposures (~170 ns at 100,000 in the forward benchmark). Memory-mappable,
 * so the agent reads all counters without a syscall per exposure. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct counter);
} exp_stats SEC(".maps");

const volatile __u32 exp_stats_stride = 131072;

/* source blocklist: prefix -> rule id (index into block_stats) */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u32);
} block_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, __u32);
} block_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct counter);
} block_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, DP_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32); /* ifindex */
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_REASONS);
	__type(key, __u32);
	__type(value, struct counter);
} dp_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RT_REASONS);
	__type(key, __u32);
	__type(value, struct counter);
} rt_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_config);
} dp_config SEC(".maps");

static __always_inline void count(void *map, __u32 key, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, &key);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline int verdict(int action, __u32 reason, __u64 bytes)
{
	count(&dp_verdicts, reason, bytes);
	return action;
}

static __always_inline __u32 config_flags(void)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);

	return cfg ? cfg->flags : 0;
}

/* lowbias32 (Chris Wellons): every input bit moves the slot; mirrored in src/dataplane/exp4.ts */
static __always_inline __u32 exp4_hash(__u32 x)
{
	x ^= x >> 16;
	x *= 0x7feb352d;
	x ^= x >> 15;
	x *= 0x846ca68b;
	x ^= x >> 16;
	return x;
}

static __always_inline int lookup_v4(__u32 daddr, __u32 flags, struct exposure *out)
{
	struct exposure *e;

	int window_full = 1;

	if (daddr != EXP4_EMPTY && daddr != EXP4_DELETED) {
		__u32 home = exp4_hash(daddr);
#pragma unroll
		for (int i = 0; i < EXP4_PROBES; i++) {
			__u32 idx = (home + i) & exp4_mask;
			__u64 *w = bpf_map_lookup_elem(&exp4_slots, &idx);
			if (!w)
				break;
			__u64 w0 = *(volatile __u64 *)&w[0];
			__u32 a = (__u32)w0;
			if (a == EXP4_EMPTY) {
				window_full = 0;
				break;
			}
			if (a != daddr)
				continue;
			__u64 w1 = *(volatile __u64 *)&w[1];
			__u32 port = (w1 >> 32) & 0xff;
			struct port_info *pi = bpf_map_lookup_elem(&port_info, &port);
			if (!pi)
				break;
			__builtin_memcpy(out->dmac, (__u8 *)&w0 + 4, 4);
			__builtin_memcpy(out->dmac + 4, &w1, 2);
			__builtin_memcpy(out->smac, pi->smac, 6);
			out->vlan = (w1 >> 16) & 0xffff;
			out->port = port;
			out->id = w1 >> 40;
			out->flags = 0;
			return 1;
		}
	}
	if ((flags & DP_CFG_EXP4_UPDATING) || ((flags & DP_CFG_EXP4_SPILL) && window_full)) {
		e = bpf_map_lookup_elem(&exp_v4, &daddr);
		if (e) {
			*out = *e;
			return 1;
		}
	}
	if (flags & DP_CFG_LPM_V4) {
		struct lpm_v4 key = { .prefixlen = 32 };
		__builtin_memcpy(key.addr, &daddr, 4);
		e = bpf_map_lookup_elem(&exp_lpm_v4, &key);
		if (e) {
			*out = *e;
			return 1;
		}
	}
	return 0;
}

/* the address's four 32-bit words (read little-endian), each mixed in; mirrored in src/dataplane/exp4.ts */
static __always_inline __u32 exp6_hash(const __u32 *a)
{
	return exp4_hash(a[3] ^ exp4_hash(a[2] ^ exp4_hash(a[1] ^ exp4_hash(a[0]))));
}

static __always_inline int lookup_v6(struct in6_addr *daddr, __u32 flags, struct exposure *out)
{
	struct exposure *e = 0;
	__u64 hi, lo;
	int window_full = 1;

	__builtin_memcpy(&hi, daddr, 8);
	__builtin_memcpy(&lo, (__u8 *)daddr + 8, 8);
	if (hi != EXP6_EMPTY && hi != EXP6_DELETED) {
		__u32 a[4];
		__builtin_memcpy(a, daddr, 16);
		__u32 home = exp6_hash(a);
#pragma unroll
		for (int i = 0; i < EXP6_PROBES; i++) {
			__u32 idx = (home + i) & exp6_mask;
			__u64 *w = bpf_map_lookup_elem(&exp6_slots, &idx);
			if (!w)
				break;
			__u64 w0 = *(volatile __u64 *)&w[0];
			if (w0 == EXP6_EMPTY) {
				window_full = 0;
				break;
			}
			if (w0 != hi || *(volatile __u64 *)&w[1] != lo)
				continue;
			__u64 w2 = *(volatile __u64 *)&w[2];
			__u64 w3 = *(volatile __u64 *)&w[3];
			__u32 port = w3 & 0xff;
			struct port_info *pi = bpf_map_lookup_elem(&port_info, &port);
			if (!pi)
				break;
			__builtin_memcpy(out->dmac, &w2, 6);
			__builtin_memcpy(out->smac, pi->smac, 6);
			out->vlan = w2 >> 48;
			out->port = port;
			out->id = (w3 >> 8) & 0xffffff;
			out->flags = 0;
			return 1;
		}
	}
	if ((flags & DP_CFG_EXP6_UPDATING) || ((flags & DP_CFG_EXP6_SPILL) && window_full))
		e = bpf_map_lookup_elem(&exp_v6, daddr);
	if (!e && (flags & DP_CFG_LPM_V6)) {
		struct lpm_v6 key = { .prefixlen = 128 };
		__builtin_memcpy(key.addr, daddr, 16);
		e = bpf_map_lookup_elem(&exp_lpm_v6, &key);
	}
	if (!e)
		return 0;
	*out = *e;
	return 1;
}

/* Slot writes from user space: the batch is put in exp4_pending, then this
 * program runs (BPF_PROG_RUN): single 8-byte stores, the key word last,
 * published with an atomic exchange (a full barrier). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exp4_batch);
} exp4_pending SEC(".maps");

SEC("syscall")
int exp4_write(void *ctx)
{
	__u32 zero = 0;
	struct exp4_batch *b = bpf_map_lookup_elem(&exp4_pending, &zero);

	if (!b)
		return -1;
	for (int i = 0; i < EXP4_BATCH; i++) {
		if (i >= b->count)
			break;
		struct exp4_write *wr = &b->w[i];
		__u32 idx = wr->index;
		__u64 *w = bpf_map_lookup_elem(&exp4_slots, &idx);
		if (!w)
			return -1;
		if (wr->op == 1)
			w[1] = wr->w1;
		__sync_lock_test_and_set(&w[0], wr->w0);
	}
	return 0;
}

/* The same for the IPv6 slots: w3, w2, w1 in single stores, then w0 with an
 * atomic exchange (a full barrier). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exp6_batch);
} exp6_pending SEC(".maps");

SEC("syscall")
int exp6_write(void *ctx)
{
	__u32 zero = 0;
	struct exp6_batch *b = bpf_map_lookup_elem(&exp6_pending, &zero);

	if (!b)
		return -1;
	for (int i = 0; i < EXP6_BATCH; i++) {
		if (i >= b->count)
			break;
		struct exp6_write *wr = &b->w[i];
		__u32 idx = wr->index;
		__u64 *w = bpf_map_lookup_elem(&exp6_slots, &idx);
		if (!w)
			return -1;
		if (wr->op == 1) {
			w[3] = wr->w[3];
			w[2] = wr->w[2];
			w[1] = wr->w[1];
		}
		__sync_lock_test_and_set(&w[0], wr->w[0]);
	}
	return 0;
}

/* Rebuild the L2 header for the exposure: its MACs and its VLAN (0 or 1 tag). */
static __always_inline int rewrite_l2(struct xdp_md *ctx, struct l2 *l2, struct exposure *e)
{
	int out_tags = e->vlan ? 1 : 0;
	int delta = (l2->tags - out_tags) * VLAN_HLEN; /* > 0: shrink, < 0: grow */
	__u16 tci = (l2->inner_tci & 0xe000) | (e->vlan & 0x0fff);
	__u16 proto = bpf_htons(l2->proto);

	if (delta && bpf_xdp_adjust_head(ctx, delta))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, e->dmac, 6);
	__builtin_memcpy(eth->h_source, e->smac, 6);
	if (out_tags) {
		struct vlan_hdr *vh = (void *)(eth + 1);
		if ((void *)(vh + 1) > data_end)
			return -1;
		eth->h_proto = bpf_htons(ETH_P_8021Q);
		vh->h_vlan_TCI = bpf_htons(tci);
		vh->h_vlan_encapsulated_proto = proto;
	} else {
		eth->h_proto = proto;
	}
	return 0;
}

/* RFC 1812 5.2.2: a router MUST NOT forward a datagram whose header
 * checksum is wrong or whose total length is shorter than its header or
 * longer than the bytes the link layer delivered (the kernel's ip_rcv drops
 * those too). IHL >= 5 and the options in the frame are checked by the caller. */
static __always_inline int ipv4_header_ok(struct iphdr *ip, void *data_end, __u64 l3_bytes)
{
	__u32 hlen = ip->ihl * 4, tot = bpf_ntohs(ip->tot_len), sum = 0;
	__u16 *w = (void *)ip;

	if (tot < hlen || tot > l3_bytes)
		return 0;
#pragma unroll
	for (int i = 0; i < 30; i++) {
		if (i >= hlen / 2)
			break;
		if ((void *)(w + i + 1) > data_end)
			return 0;
		sum += w[i];
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* RFC 1812 5.3.7: no forwarding from 0.0.0.0/8, 127.0.0.0/8, multicast
 * (224.0.0.0/4) or class E and limited broadcast (240.0.0.0/4) sources;
 * RFC 3927 2.7: nor from IPv4 link-local sources (169.254.0.0/16) */
static __always_inline int ipv4_martian_src(const struct iphdr *ip)
{
	const __u8 *a = (const __u8 *)&ip->saddr;

	return a[0] == 0 || a[0] == 127 || a[0] >= 224 || (a[0] == 169 && a[1] == 254);
}

/* RFC 4291: a multicast source (2.7) is never valid, the unspecified address
 * (2.5.2) is never forwarded, the loopback address (2.5.3) never leaves a
 * node, a link-local source (2.5.6) never leaves its link, an IPv4-mapped
 * address (2.5.5.2) is not used on the wire */
static __always_inline int ipv6_martian_src(const struct ipv6hdr *ip6)
{
	const __u32 *a = (const __u32 *)&ip6->saddr;
	const __u8 *b = (const __u8 *)a;

	if (b[0] == 0xff || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80))
		return 1;
	if ((a[0] | a[1]) != 0)
		return 0;
	if (a[2] == bpf_htonl(0xffff))
		return 1;
	return a[2] == 0 && (a[3] == 0 || a[3] == bpf_htonl(1));
}

/* RFC 1812 5.3.4: forward only frames sent to this host's link-layer
 * address: never a link-layer broadcast or multicast, and, where the agent
 * registered the ingress interface's addresses (DP_CFG_L2_CHECK), only the
 * address of the interface (or VLAN device) the frame arrived on, not
 * another host's that a promiscuous NIC or a bridge port hands up. */
static __always_inline int l2_for_us(struct xdp_md *ctx, const struct ethhdr *eth, const struct l2 *l2, __u32 flags)
{
	if (eth->h_dest[0] & 1)
		return 0;
	if (!(flags & DP_CFG_L2_CHECK))
		return 1;
	__u32 ifindex = ctx->ingress_ifindex, vid = 0;
	if (l2->tags > 1)
		return 0;
	if (l2->tags == 1 && (l2->outer_tci & 0x0fff)) {
		/* the VLAN devices the agent registers are 802.1Q; VID 0 is a
		 * priority tag on the untagged link, whatever its TPID */
		if (l2->outer_ad)
			return 0;
		vid = 0x1000 | (l2->outer_tci & 0x0fff);
	}
	__u32 home = l2_home(ifindex, vid);
#pragma unroll
	for (int i = 0; i < L2_PROBES; i++) {
		__u32 idx = (home + i) & (L2_SLOTS - 1);
		struct l2_local *v = bpf_map_lookup_elem(&l2_local, &idx);
		if (!v)
			return 0;
		__u32 at = *(volatile __u32 *)&v->ifindex;
		if (at == 0)
			return 0;
		if (at != ifindex || v->vid != vid)
			continue;
		return *(const __u32 *)v->mac == *(const __u32 *)eth->h_dest &&
		       *(const __u16 *)(v->mac + 4) == *(const __u16 *)(eth->h_dest + 4);
	}
	return 0;
}

/* The last checks before forwarding, shared by both families: link-layer
 * destination, TTL, target port, the target's MTU. 0: forward. */
static __always_inline int forward_checks(struct xdp_md *ctx, void *data, struct l2 *l2, struct exposure *out, __u32 flags,
					  __u8 ttl, __u32 l3len, __u32 *reason)
{
	if (!l2_for_us(ctx, data, l2, flags)) {
		*reason = DP_NOT_LOCAL;
		return -1;
	}
	if (ttl <= 1) {
		*reason = DP_TTL;
		return -1;
	}
	__u32 port = out->port;
	if (!bpf_map_lookup_elem(&tx_ports, &port)) {
		*reason = DP_NO_PORT;
		return -1;
	}
	struct port_info *pi = bpf_map_lookup_elem(&port_info, &port);
	if (pi && pi->mtu && l3len > pi->mtu) {
		*reason = DP_TOO_BIG;
		return -1;
	}
	return 0;
}

static __always_inline int ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct exposure out;
	struct l2 l2;
	__u32 flags, l3len, reason;

	if (parse_l2(data, data_end, &l2) < 0)
		return verdict(XDP_PASS, DP_MALFORMED, bytes);
	flags = config_flags();

	if (l2.proto == ETH_P_IP) {
		struct iphdr *ip = data + l2.l3_off;
		if ((void *)(ip + 1) > data_end)
			return verdict(XDP_PASS, DP_MALFORMED, bytes);
		if (ip->version != 4 || ip->ihl < 5 || (void *)ip + ip->ihl * 4 > data_end)
			return verdict(XDP_PASS, DP_MALFORMED, bytes);
		if (!ipv4_header_ok(ip, data_end, bytes - l2.l3_off))
			return verdict(XDP_PASS, DP_BAD_HEADER, bytes);
		if (flags & DP_CFG_BLOCK_V4) {
			struct lpm_v4 src = { .prefixlen = 32 };
			__builtin_memcpy(src.addr, &ip->saddr, 4);
			__u32 *rule = bpf_map_lookup_elem(&block_v4, &src);
			if (rule) {
				count(&block_stats, *rule, bytes);
				return verdict(XDP_DROP, DP_BLOCKED, bytes);
			}
		}
		if (ipv4_martian_src(ip))
			return verdict(XDP_PASS, DP_MARTIAN, bytes);
		/* RFC 1812 5.2.4, 5.3.13: options (record route, timestamps,
		 * source routes) are the kernel's to process */
		if (ip->ihl > 5)
			return verdict(XDP_PASS, DP_OPTIONS, bytes);
		if (!lookup_v4(ip->daddr, flags, &out))
			return verdict(XDP_PASS, DP_MISS, bytes);
		l3len = bpf_ntohs(ip->tot_len);
		if (forward_checks(ctx, data, &l2, &out, flags, ip->ttl, l3len, &reason))
			return verdict(XDP_PASS, reason, bytes);
		ipv4_dec_ttl(ip);
	} else if (l2.proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = data + l2.l3_off;
		if ((void *)(ip6 + 1) > data_end)
			return verdict(XDP_PASS, DP_MALFORMED, bytes);
		if (ip6->version != 6)
			return verdict(XDP_PASS, DP_MALFORMED, bytes);
		/* RFC 8200 3: the payload length must fit the bytes delivered */
		l3len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (l3len > bytes - l2.l3_off)
			return verdict(XDP_PASS, DP_BAD_HEADER, bytes);
		if (flags & DP_CFG_BLOCK_V6) {
			struct lpm_v6 src = { .prefixlen = 128 };
			__builtin_memcpy(src.addr, &ip6->saddr, 16);
			__u32 *rule = bpf_map_lookup_elem(&block_v6, &src);
			if (rule) {
				count(&block_stats, *rule, bytes);
				return verdict(XDP_DROP, DP_BLOCKED, bytes);
			}
		}
		/* an ICMPv6 message with no body is no NDP message: it is routed */
		if (ip6->nexthdr == IPPROTO_ICMPV6_ && l3len > sizeof(*ip6)) {
			__u8 *type = (void *)(ip6 + 1);
			if ((void *)(type + 1) > data_end)
				return verdict(XDP_PASS, DP_MALFORMED, bytes);
			if (*type >= 133 && *type <= 137)
				return verdict(XDP_PASS, DP_NDP, bytes);
		}
		if (ipv6_martian_src(ip6))
			return verdict(XDP_PASS, DP_MARTIAN, bytes);
		/* RFC 8200 4.3: a hop-by-hop header (router alert, jumbograms)
		 * is the kernel's to process */
		if (ip6->nexthdr == 0)
			return verdict(XDP_PASS, DP_OPTIONS, bytes);
		if (!lookup_v6(&ip6->daddr, flags, &out))
			return verdict(XDP_PASS, DP_MISS, bytes);
		if (forward_checks(ctx, data, &l2, &out, flags, ip6->hop_limit, l3len, &reason))
			return verdict(XDP_PASS, reason, bytes);
		ip6->hop_limit--;
	} else {
		return verdict(XDP_PASS, DP_OTHER, bytes);
	}

	count(&exp_stats, bpf_get_smp_processor_id() * exp_stats_stride + out.id, bytes);
	/* the link layer's padding after the datagram is not forwarded (the
	 * kernel trims it in ip_rcv / ipv6_rcv, and the next link pads again) */
	if (bytes - l2.l3_off > l3len && bpf_xdp_adjust_tail(ctx, -(int)(bytes - l2.l3_off - l3len)))
		return verdict(XDP_ABORTED, DP_ERROR, bytes);
	if (rewrite_l2(ctx, &l2, &out) < 0)
		return verdict(XDP_ABORTED, DP_ERROR, bytes);
	count(&dp_verdicts, DP_REDIRECT, bytes);
	return bpf_redirect_map(&tx_ports, out.port, 0);
}

SEC("xdp")
int xdp_ingress(struct xdp_md *ctx)
{
	return ingress(ctx);
}

static __always_inline int rt_verdict(int action, __u32 reason, __u64 bytes)
{
	count(&rt_verdicts, reason, bytes);
	return action;
}

/* Replies leave untagged: drop the VLAN tag(s) of the VM side, accelerated
 * (skb metadata) or in the data. Invalidates packet pointers. */
static __always_inline int pop_vlans(struct __sk_buff *skb, int in_data)
{
#pragma unroll
	for (int i = 0; i < VLAN_MAX_TAGS + 1; i++) {
		if (!skb->vlan_present && !in_data)
			break;
		if (bpf_skb_vlan_pop(skb))
			return -1;
		if (in_data)
			in_data--;
	}
	return 0;
}

#define PACKET_BROADCAST 1
#define PACKET_MULTICAST 2

/* The return path gets the same treatment for what it forwards: a reply
 * from an exposed address leaves on the fast path only if it is a datagram
 * a router forwards as is (valid header, no options or hop-by-hop header,
 * not a link-layer broadcast or multicast, TTL left); the FIB refuses what is too big for
 * the next hop (BPF_FIB_LKUP_RET_FRAG_NEEDED) and what it cannot route.
 * Everything else goes to the kernel untouched. */
SEC("tc")
int tc_return(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u64 bytes = skb->len;
	struct bpf_fib_lookup fib = {};
	struct l2 l2;
	__u32 flags = config_flags(), l3len;
	int rc;

	if (parse_l2(data, data_end, &l2) < 0)
		return rt_verdict(TC_ACT_OK, RT_OTHER, bytes);

	if (l2.proto == ETH_P_IP) {
		struct iphdr *ip = data + l2.l3_off;
		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5 || (void *)ip + ip->ihl * 4 > data_end)
			return rt_verdict(TC_ACT_OK, RT_OTHER, bytes);
		struct exposure src;
		if (!lookup_v4(ip->saddr, flags, &src))
			return rt_verdict(TC_ACT_OK, RT_NOT_EXPOSED, bytes);
		if (!ipv4_header_ok(ip, data_end, bytes - l2.l3_off))
			return rt_verdict(TC_ACT_OK, RT_BAD_HEADER, bytes);
		if (ip->ihl > 5)
			return rt_verdict(TC_ACT_OK, RT_OPTIONS, bytes);
		if (skb->pkt_type == PACKET_BROADCAST || skb->pkt_type == PACKET_MULTICAST)
			return rt_verdict(TC_ACT_OK, RT_NOT_LOCAL, bytes);
		if (ip->ttl <= 1)
			return rt_verdict(TC_ACT_OK, RT_TTL, bytes);
		l3len = bpf_ntohs(ip->tot_len);
		fib.family = AF_INET;
		fib.tos = ip->tos;
		fib.l4_protocol = ip->protocol;
		fib.tot_len = l3len;
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = ip->daddr;
	} else if (l2.proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = data + l2.l3_off;
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return rt_verdict(TC_ACT_OK, RT_OTHER, bytes);
		struct exposure src;
		if (!lookup_v6(&ip6->saddr, flags, &src))
			return rt_verdict(TC_ACT_OK, RT_NOT_EXPOSED, bytes);
		l3len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (l3len > bytes - l2.l3_off)
			return rt_verdict(TC_ACT_OK, RT_BAD_HEADER, bytes);
		/* a hop-by-hop header, or a payload length of 0 (a jumbogram, or
		 * a BIG TCP GSO packet: the length is the skb's) */
		if (ip6->nexthdr == 0 || !ip6->payload_len)
			return rt_verdict(TC_ACT_OK, RT_OPTIONS, bytes);
		if (skb->pkt_type == PACKET_BROADCAST || skb->pkt_type == PACKET_MULTICAST)
			return rt_verdict(TC_ACT_OK, RT_NOT_LOCAL, bytes);
		if (ip6->hop_limit <= 1)
			return rt_verdict(TC_ACT_OK, RT_TTL, bytes);
		fib.family = AF_INET6;
		fib.l4_protocol = ip6->nexthdr;
		fib.tot_len = l3len;
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	} else {
		return rt_verdict(TC_ACT_OK, RT_OTHER, bytes);
	}
	fib.ifindex = skb->ingress_ifindex;

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return rt_verdict(TC_ACT_OK, RT_NO_ROUTE, bytes);

	if (pop_vlans(skb, l2.tags) < 0)
		return rt_verdict(TC_ACT_OK, RT_OTHER, bytes);
	/* the link layer's padding after the datagram is not forwarded (a GSO
	 * packet from the VM side carries none: its length fields are the
	 * aggregate's) */
	if (!skb->gso_size && skb->len > ETH_HLEN + l3len && bpf_skb_change_tail(skb, ETH_HLEN + l3len, 0))
		return rt_verdict(TC_ACT_SHOT, RT_OTHER, bytes);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return rt_verdict(TC_ACT_SHOT, RT_OTHER, bytes);
	if (fib.family == AF_INET) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return rt_verdict(TC_ACT_SHOT, RT_OTHER, bytes);
		ipv4_dec_ttl(ip);
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return rt_verdict(TC_ACT_SHOT, RT_OTHER, bytes);
		ip6->hop_limit--;
	}

	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {};
		nh.nh_family = fib.family;
		if (fib.family == AF_INET)
			nh.ipv4_nh = fib.ipv4_dst;
		else
			__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
		count(&rt_verdicts, RT_NEIGH, bytes);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, 6);
	__builtin_memcpy(eth->h_source, fib.smac, 6);
	count(&rt_verdicts, RT_REDIRECT, bytes);
	return bpf_redirect(fib.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
