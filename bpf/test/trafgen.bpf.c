// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Traffic generator and sink for the forward benchmark.
 * xdp_gen runs under BPF_PROG_RUN's live-frames mode and returns XDP_TX, so
 * every run transmits one UDP frame out of the interface the run names.
 * Frames are recycled already modified, so every field is rewritten on every
 * run. Frames are IPv6/UDP (the test networks' addresses are 2001:db8::/32,
 * the only range with room for 100,000 destinations), the destination
 * walking the `dst_count` addresses that follow `dst_prefix` (its last 32
 * bits are the index), or IPv4/UDP to the `dst_count` addresses in dsts4 (the
 * IPv4 documentation ranges hold 768); in a scrambled order either way, so
 * hits spread uniformly; the payload carries the send time.
 * xdp_sink counts and drops; while `sink_latency` is set it also keeps a
 * histogram of one-way latency (reading the clock costs the receiver ~5%). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FRAME_LEN 70 /* Ethernet 14 + IPv6 40 + UDP 8 + send time 8; IPv4 frames are as long */
#define HIST_BUCKETS 8192 /* 256 ns each: up to ~2 ms */
#define MAX_DSTS4 131072
#define MAX_SCHED 262144

const volatile __u8 src_mac[6] = {};
const volatile __u8 dst_mac[6] = {};
const volatile __u8 family = 6; /* 6: IPv6 frames to dst_prefix + index; 4: IPv4 frames to dsts4[index] */
const volatile __u8 src_ip6[16] = {};
const volatile __u8 dst_prefix[12] = {}; /* the first 96 bits of every IPv6 destination */
const volatile __u32 src_ip4 = 0; /* network order */
__u32 dst_count = 1;
__u32 sched_len = 0; /* > 0: destination indexes come from sched, in order (e.g. Zipf draws) */
__u64 cursor = 0;
__u32 sink_latency = 0; /* the sink reads the clock only while this is set (the paced latency run) */

/* a schedule of destination indexes, walked in order when sched_len > 0 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SCHED);
	__type(key, __u32);
	__type(value, __u32);
} sched SEC(".maps");

/* IPv4 destinations (network order): the documentation ranges are not one prefix */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_DSTS4);
	__type(key, __u32);
	__type(value, __u32);
} dsts4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HIST_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} received SEC(".maps");

/* Where the send time sits: after Ethernet, an IP header without options or extension headers, UDP. */
static __always_inline __u64 *stamp_of(void *data, void *data_end, int ip_len)
{
	__u64 *stamp = data + sizeof(struct ethhdr) + ip_len + sizeof(struct udphdr);

	return (void *)(stamp + 1) > data_end ? 0 : stamp;
}

static __always_inline void write_udp(struct udphdr *udp, __u16 len)
{
	udp->source = bpf_htons(40000);
	udp->dest = bpf_htons(9);
	udp->len = bpf_htons(len);
	udp->check = 0; /* nothing on the way verifies it: forwarding does not, the sink drops */
}

static __always_inline int gen6(struct xdp_md *ctx, __u32 idx)
{
	void *data = (void *)(long)ctx->data;
	struct ipv6hdr *ip = data + sizeof(struct ethhdr);
	__u64 *stamp = stamp_of(data, (void *)(long)ctx->data_end, sizeof(*ip));

	if (!stamp)
		return -1;
	ip->version = 6;
	ip->priority = 0;
	ip->flow_lbl[0] = 0;
	ip->flow_lbl[1] = 0;
	ip->flow_lbl[2] = 0;
	ip->payload_len = bpf_htons(FRAME_LEN - sizeof(struct ethhdr) - sizeof(*ip));
	ip->nexthdr = 17;
	ip->hop_limit = 64;
#pragma unroll
	for (int i = 0; i < 16; i++)
		ip->saddr.in6_u.u6_addr8[i] = src_ip6[i];
#pragma unroll
	for (int i = 0; i < 12; i++)
		ip->daddr.in6_u.u6_addr8[i] = dst_prefix[i];
	ip->daddr.in6_u.u6_addr32[3] = bpf_htonl(idx);
	write_udp((void *)(ip + 1), FRAME_LEN - sizeof(struct ethhdr) - sizeof(*ip));
	*stamp = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int gen4(struct xdp_md *ctx, __u32 idx)
{
	void *data = (void *)(long)ctx->data;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__u64 *stamp = stamp_of(data, (void *)(long)ctx->data_end, sizeof(*ip));
	__u32 *dst = bpf_map_lookup_elem(&dsts4, &idx);

	if (!stamp || !dst)
		return -1;
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(FRAME_LEN - sizeof(struct ethhdr));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = 17;
	ip->check = 0;
	ip->saddr = src_ip4;
	ip->daddr = *dst;
	/* the kernel path verifies the header checksum */
	__u32 sum = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
	write_udp((void *)(ip + 1), FRAME_LEN - sizeof(struct ethhdr) - sizeof(*ip));
	*stamp = bpf_ktime_get_ns();
	return 0;
}

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	/* byte by byte: a memcpy would cast volatile away and let clang fold the zero initialiser */
#pragma unroll
	for (int i = 0; i < 6; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	__u64 n = cursor++;
	__u32 idx = dst_count > 1 ? (__u32)((n * 2654435761ULL) % dst_count) : 0;
	if (sched_len) {
		__u32 at = (__u32)(n % sched_len);
		__u32 *d = bpf_map_lookup_elem(&sched, &at);
		if (d)
			idx = *d;
	}
	if (family == 4) {
		eth->h_proto = bpf_htons(0x0800);
		if (gen4(ctx, idx) < 0)
			return XDP_ABORTED;
	} else {
		eth->h_proto = bpf_htons(0x86DD);
		if (gen6(ctx, idx) < 0)
			return XDP_ABORTED;
	}
	return XDP_TX;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	__u32 zero = 0;
	__u64 *stamp = 0;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(0x86DD)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > (void *)(long)ctx->data_end || ip->nexthdr != 17 || udp->dest != bpf_htons(9))
			return XDP_PASS;
		stamp = stamp_of(data, (void *)(long)ctx->data_end, sizeof(*ip));
	} else if (eth->h_proto == bpf_htons(0x0800)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > (void *)(long)ctx->data_end || ip->ihl != 5 || ip->protocol != 17 || udp->dest != bpf_htons(9))
			return XDP_PASS;
		stamp = stamp_of(data, (void *)(long)ctx->data_end, sizeof(*ip));
	}
	if (!stamp)
		return XDP_PASS;
	__u64 *n = bpf_map_lookup_elem(&received, &zero);
	if (n)
		*n += 1;
	if (!sink_latency)
		return XDP_DROP;
	__u64 delta = bpf_ktime_get_ns() - *stamp;
	__u32 bucket = delta >> 8;
	if (bucket >= HIST_BUCKETS)
		bucket = HIST_BUCKETS - 1;
	__u64 *h = bpf_map_lookup_elem(&latency, &bucket);
	if (h)
		*h += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
