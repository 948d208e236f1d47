// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark wrappers around the data plane's ingress path (npm run bench --
 * xdp-cost). BPF_PROG_TEST_RUN repeats a program on one buffer, and the
 * router changes that buffer (TTL), so each wrapper restores the TTL and
 * sets the destination from bench_addrs (cycling through it), with a valid
 * header checksum, before the
 * real ingress code runs; xdp_bench_base does the same and stops, so its
 * cost can be subtracted. */
#include "../dataplane.bpf.c"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, __u32); /* IPv4 address, network order */
} bench_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct in6_addr);
} bench_addrs6 SEC(".maps");

__u32 bench_count = 1; /* addresses in bench_addrs (bench_addrs6) to cycle through */
__u32 bench_cursor = 0;

static __always_inline int prepare(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__u32 idx = bench_cursor;
	__u32 *addr;

	if ((void *)(ip + 1) > data_end)
		return -1;
	if (++idx >= bench_count)
		idx = 0;
	bench_cursor = idx;
	addr = bpf_map_lookup_elem(&bench_addrs, &idx);
	if (!addr)
		return -1;
	ip->daddr = *addr;
	ip->ttl = 64;
	/* a valid header checksum again (the router checks it, RFC 1812 5.2.2):
	 * the bench packets have a 20-byte header */
	__u16 *w = (void *)ip;
	__u32 sum = 0;
	ip->check = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum & 0xffff;
	return 0;
}

SEC("xdp")
int xdp_bench(struct xdp_md *ctx)
{
	if (prepare(ctx) < 0)
		return XDP_ABORTED;
	return ingress(ctx);
}

SEC("xdp")
int xdp_bench_base(struct xdp_md *ctx)
{
	if (prepare(ctx) < 0)
		return XDP_ABORTED;
	return XDP_DROP;
}

static __always_inline int prepare6(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	__u32 idx = bench_cursor;
	struct in6_addr *addr;

	if ((void *)(ip6 + 1) > data_end)
		return -1;
	if (++idx >= bench_count)
		idx = 0;
	bench_cursor = idx;
	addr = bpf_map_lookup_elem(&bench_addrs6, &idx);
	if (!addr)
		return -1;
	ip6->daddr = *addr;
	ip6->hop_limit = 64;
	return 0;
}

SEC("xdp")
int xdp_bench6(struct xdp_md *ctx)
{
	if (prepare6(ctx) < 0)
		return XDP_ABORTED;
	return ingress(ctx);
}

SEC("xdp")
int xdp_bench6_base(struct xdp_md *ctx)
{
	if (prepare6(ctx) < 0)
		return XDP_ABORTED;
	return XDP_DROP;
}

SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_DROP;
}
