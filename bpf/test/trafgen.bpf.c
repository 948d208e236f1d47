// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Traffic generator and sink for the forward benchmark.
 * xdp_gen runs under BPF_PROG_RUN's live-frames mode and returns XDP_TX, so
 * every run transmits one UDP frame out of the interface the run names.
 * Frames are recycled already modified, so every field is rewritten on every
 * run. The destination walks the `dst_count` addresses from `dst_base` in a
 * scrambled order (hits spread uniformly); the payload carries the send time.
 * xdp_sink counts and drops, and keeps a histogram of one-way latency. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FRAME_LEN 60
#define HIST_BUCKETS 8192 /* 256 ns each: up to ~2 ms */

const volatile __u8 src_mac[6] = {};
const volatile __u8 dst_mac[6] = {};
const volatile __u32 src_ip = 0;   /* network order */
const volatile __u32 dst_base = 0; /* host order */
__u32 dst_count = 1;
__u64 cursor = 0;

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

/* The frame both programs handle: Ethernet, IPv4 without options, UDP, the send time. */
struct frame {
	struct ethhdr *eth;
	struct iphdr *ip;
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
	__u32 sum = 0;
	__u16 *w;

	if (frame_of(ctx, &f) < 0)
		return XDP_ABORTED;
	struct ethhdr *eth = f.eth;
	struct iphdr *ip = f.ip;
	struct udphdr *udp = f.udp;
	__u64 *stamp = f.stamp;
	/* byte by byte: a memcpy would cast volatile away and let clang fold the zero initialiser */
#pragma unroll
	for (int i = 0; i < 6; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	eth->h_proto = bpf_htons(0x0800);

	__u64 n = cursor++;
	__u32 idx = dst_count > 1 ? (__u32)((n * 2654435761ULL) % dst_count) : 0;
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(FRAME_LEN - sizeof(*eth));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = 17;
	ip->check = 0;
	ip->saddr = src_ip;
	ip->daddr = bpf_htonl(dst_base + idx);
	w = (void *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;

	udp->source = bpf_htons(40000);
	udp->dest = bpf_htons(9);
	udp->len = bpf_htons(FRAME_LEN - sizeof(*eth) - sizeof(*ip));
	udp->check = 0;
	*stamp = bpf_ktime_get_ns();
	return XDP_TX;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	struct frame f;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&received, &zero);

	if (frame_of(ctx, &f) < 0 || f.eth->h_proto != bpf_htons(0x0800) || f.ip->protocol != 17 || f.udp->dest != bpf_htons(9))
		return XDP_PASS;
	__u64 *stamp = f.stamp;
	if (n)
		*n += 1;
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
