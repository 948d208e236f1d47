// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* What the kernel charges an unmonitored process for each way of hooking
 * syscalls, measured by the trace-overhead benchmark (--hooks):
 * - empty programs on the tracer's hottest per-syscall hooks (read): the
 *   floor under the tracer's own programs there;
 * - one generic sys_enter/sys_exit pair (tp_btf) that returns at once for a
 *   process outside the monitored set, the set kept either as a hash of
 *   tgids (what the tracer has) or as a bitmap in an array (a lookup the
 *   verifier inlines into pointer arithmetic). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} floor_hash SEC(".maps");

/* one bit per pid: PID_MAX_LIMIT (4,194,304) bits */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} floor_bits SEC(".maps");

/* how often a monitored process came through (keeps the checks from being
 * optimised away) */
__u64 floor_hits;

static __always_inline int by_hash(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&floor_hash, &tgid))
		__sync_fetch_and_add(&floor_hits, 1);
	return 0;
}

static __always_inline int by_bits(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 word = (tgid >> 6) & 0xffff;
	__u64 *w = bpf_map_lookup_elem(&floor_bits, &word);
	if (w && (*w >> (tgid & 63)) & 1)
		__sync_fetch_and_add(&floor_hits, 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_hash_enter, struct pt_regs *regs, long id)
{
	return by_hash();
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_hash_exit, struct pt_regs *regs, long ret)
{
	return by_hash();
}

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_bits_enter, struct pt_regs *regs, long id)
{
	return by_bits();
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_bits_exit, struct pt_regs *regs, long ret)
{
	return by_bits();
}

/* the tracer's remaining per-syscall hooks on file work (openat at exit,
 * close at entry), empty: the floor under them */
SEC("tracepoint/syscalls/sys_exit_openat")
int floor_openat_exit(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int floor_close_enter(void *ctx)
{
	return 0;
}
