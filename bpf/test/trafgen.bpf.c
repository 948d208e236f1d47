// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Traffic generator and sink for the forward benchmark.
 * xdp_gen runs under BPF_PROG_RUN's live-frames mode and returns XDP_TX, so
 * every run transmits one UDP frame out of the interface the run names.
 * Frames are recycled already modified, so every field is rewritten on every
 * run. Frames are IPv6/UDP (the test networks' addresses are 2001:db8::/32,
 * the only range with room for 100,000 destinations); the destination walks
 * the `dst_count` addresses that follow `dst_prefix` (its last 32 bits are
 * the index) in a scrambled order, so hits spread uniformly; the payload
 * carries the send time.
 * xdp_sink counts and drops; while `sink_latency` is set it also keeps a
 * histogram of one-way latency (reading the clock costs the receiver ~5%). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FRAME_LEN 70 /* Ethernet 14 + IPv6 40 + UDP 8 + send time 8 */
#define HIST_BUCKETS 8192 /* 256 ns each: up to ~2 ms */

const volatile __u8 src_mac[6] = {};
const volatile __u8 dst_mac[6] = {};
const volatile __u8 src_ip6[16] = {};
const volatile __u8 dst_prefix[12] = {}; /* the first 96 bits of every destination */
__u32 dst_count = 1;
__u64 cursor = 0;
__u32 sink_latency = 0; /* the sink reads the clock only while this is set (the paced latency run) */

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

/* The frame both programs handle: Ethernet, IPv6 without extension headers, UDP, the send time. */
struct frame {
	struct ethhdr *eth;
	struct ipv6hdr *ip;
	struct udphdr *udp;
	__u64 *stamp;
};

static __always_inline int frame_of(struct xdp_md *ctx, struct frame *f)
{
	void *data = (void *)(long)ctx->data;

	f->eth = data;
	f->ip = (void *)(f->eth + 1);
	f->udp = (void *)(f->ip + 1);
	f->stamp = (void *)(f->udp + 1);
	return (void *)(f->stamp + 1) > (void *)(long)ctx->data_end ? -1 : 0;
}

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	struct frame f;

	if (frame_of(ctx, &f) < 0)
		return XDP_ABORTED;
	struct ethhdr *eth = f.eth;
	struct ipv6hdr *ip = f.ip;
	struct udphdr *udp = f.udp;
	__u64 *stamp = f.stamp;
	/* byte by byte: a memcpy would cast volatile away and let clang fold the zero initialiser */
#pragma unroll
	for (int i = 0; i < 6; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	eth->h_proto = bpf_htons(0x86DD);

	__u64 n = cursor++;
	__u32 idx = dst_count > 1 ? (__u32)((n * 2654435761ULL) % dst_count) : 0;
	ip->version = 6;
	ip->priority = 0;
	ip->flow_lbl[0] = 0;
	ip->flow_lbl[1] = 0;
	ip->flow_lbl[2] = 0;
	ip->payload_len = bpf_htons(FRAME_LEN - sizeof(*eth) - sizeof(*ip));
	ip->nexthdr = 17;
	ip->hop_limit = 64;
#pragma unroll
	for (int i = 0; i < 16; i++)
		ip->saddr.in6_u.u6_addr8[i] = src_ip6[i];
#pragma unroll
	for (int i = 0; i < 12; i++)
		ip->daddr.in6_u.u6_addr8[i] = dst_prefix[i];
	ip->daddr.in6_u.u6_addr32[3] = bpf_htonl(idx);

	udp->source = bpf_htons(40000);
	udp->dest = bpf_htons(9);
	udp->len = bpf_htons(FRAME_LEN - sizeof(*eth) - sizeof(*ip));
	udp->check = 0; /* nothing on the way verifies it: forwarding does not, the sink drops */
	*stamp = bpf_ktime_get_ns();
	return XDP_TX;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	struct frame f;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&received, &zero);

	if (frame_of(ctx, &f) < 0 || f.eth->h_proto != bpf_htons(0x86DD) || f.ip->nexthdr != 17 || f.udp->dest != bpf_htons(9))
		return XDP_PASS;
	__u64 *stamp = f.stamp;
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
