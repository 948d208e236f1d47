// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The lab's VM side: a veth that is the target of an XDP redirect only
 * transmits when its peer has an XDP program, so each VM's eth0 gets this. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
