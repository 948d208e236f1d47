// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Empty programs on the tracer's hottest hooks: the trace-overhead benchmark
 * measures what the kernel charges for dispatching to any program there,
 * the floor under the tracer's own cost. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint/syscalls/sys_enter_read")
int floor_read_enter(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int floor_read_exit(void *ctx)
{
	return 0;
}
