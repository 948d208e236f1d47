// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Tracing self-tests: tp_btf, classic tracepoint, raw_tp and uprobe programs
 * that report events of the children of one process. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "selftest.h"
#include "events.h"

const volatile __u32 parent_tgid = 0;   /* report children of this process */
const volatile __u32 uprobe_tgid = 0;   /* report uprobe hits of this process */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} proc_events SEC(".maps");

DECLARE_LOST_COUNTER(proc_events_lost);
BTF_EXPORT_STRUCT(selftest_proc_event);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} exits SEC(".maps");

static __always_inline int is_child(struct task_struct *task)
{
	return BPF_CORE_READ(task, real_parent, tgid) == parent_tgid;
}

static __always_inline void fill_common(struct selftest_proc_event *ev, __u32 kind, struct task_struct *task)
{
	ev->kind = kind;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = bpf_get_current_uid_gid();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct selftest_proc_event ev = {};

	if (p->real_parent->tgid != parent_tgid)
		return 0;
	fill_common(&ev, 1, p);
	bpf_probe_read_kernel_str(ev.path, sizeof(ev.path), bprm->filename);
	emit_event(&proc_events, &proc_events_lost, &ev, sizeof(ev));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct selftest_proc_event ev = {};

	if (!is_child(task))
		return 0;
	fill_common(&ev, 2, task);
	bpf_probe_read_user_str(ev.path, sizeof(ev.path), (const char *)ctx->args[1]);
	emit_event(&proc_events, &proc_events_lost, &ev, sizeof(ev));
	return 0;
}

SEC("raw_tp/sched_process_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 zero = 0;
	__u64 *n;

	if (!is_child(task))
		return 0;
	n = bpf_map_lookup_elem(&exits, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("uprobe")
int on_uprobe(struct pt_regs *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct selftest_proc_event ev = {};

	if ((bpf_get_current_pid_tgid() >> 32) != uprobe_tgid)
		return 0;
	fill_common(&ev, 3, task);
	emit_event(&proc_events, &proc_events_lost, &ev, sizeof(ev));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
