// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Self-test programs for the runtime: every map kind the runtime supports,
 * an XDP program whose verdicts and output bytes the tests check through
 * BPF_PROG_TEST_RUN, and TC / cgroup hooks that count what they see. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "selftest.h"

#define ETH_P_IP 0x0800
#define ETH_ALEN 6
#define COUNTER_TC 10
#define COUNTER_CONNECT4 11

const volatile __u32 rewrite_ttl = 1;   /* decrement TTL on XDP_TX */
const volatile __u64 magic = 0;         /* copied into counters[12] on every run */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct route_value);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
} prefixes SEC(".maps");

static __always_inline void bump(void *map, __u32 key)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int finish(__u32 verdict)
{
	__u32 key = verdict;
	__u64 *v = bpf_map_lookup_elem(&verdicts, &key);

	if (v)
		*v += 1;
	return verdict;
}

/* Source address in `prefixes` → the stored verdict; XDP_TX swaps MACs and
 * decrements the TTL with an incremental checksum update (RFC 1624). */
SEC("xdp")
int xdp_classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct lpm_v4_key key = { .prefixlen = 32 };
	__u32 *verdict;
	__u8 tmp[ETH_ALEN];
	__u32 zero = 12;
	__u64 *m;

	m = bpf_map_lookup_elem(&counters, &zero);
	if (m)
		*m = magic;

	if ((void *)(eth + 1) > data_end)
		return finish(XDP_DROP);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return finish(XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return finish(XDP_DROP);

	__builtin_memcpy(key.addr, &ip->saddr, 4);
	verdict = bpf_map_lookup_elem(&prefixes, &key);
	if (!verdict)
		return finish(XDP_PASS);
	if (*verdict != XDP_TX)
		return finish(*verdict > XDP_REDIRECT ? XDP_ABORTED : *verdict);

	if (rewrite_ttl) {
		if (ip->ttl <= 1)
			return finish(XDP_PASS);
		/* TTL is the high byte of the 16-bit word it shares with protocol */
		__u32 sum = (__u16)~bpf_ntohs(ip->check) + (__u16)~0x0100;
		ip->ttl -= 1;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		ip->check = bpf_htons(~sum & 0xffff);
	}
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	return finish(XDP_TX);
}

/* Counts packets in a per-CPU hash keyed by ifindex. */
SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	__u32 key = ctx->ingress_ifindex;
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&percpu_hash, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&percpu_hash, &key, &one, BPF_NOEXIST);
	return XDP_PASS;
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	bump(&counters, COUNTER_TC);
	return 0; /* TC_ACT_OK / TCX_PASS */
}

SEC("cgroup/connect4")
int connect4_count(struct bpf_sock_addr *ctx)
{
	bump(&counters, COUNTER_CONNECT4);
	return 1; /* allow */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
