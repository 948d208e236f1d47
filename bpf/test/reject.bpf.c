// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A program the verifier must reject (packet read without a bounds check)
 * next to one it accepts: tests that a load failure names the program and
 * carries the verifier's reason, and that autoload can leave one out. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int unchecked_read(struct xdp_md *ctx)
{
	__u32 *first = (void *)(long)ctx->data;

	return *first ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int always_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
