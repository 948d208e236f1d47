// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Ring buffer producers for the runtime's tests and benchmark. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "selftest.h"
#include "events.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

DECLARE_LOST_COUNTER(events_lost);

/* key 0: tgid whose write(2) calls feed the stream producer */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} stream_target SEC(".maps");

__u64 next_seq = 0;
BTF_EXPORT_STRUCT(selftest_seq_event);

static __always_inline void produce(__u64 payload)
{
	struct selftest_seq_event ev = {};

	ev.seq = __sync_fetch_and_add(&next_seq, 1);
	ev.cpu = bpf_get_smp_processor_id();
	ev.pid = bpf_get_current_pid_tgid() >> 32;
	ev.ktime_ns = bpf_ktime_get_ns();
	ev.payload = payload;
	emit_event(&events, &events_lost, &ev, sizeof(ev));
}

/* One event per run: driven by BPF_PROG_TEST_RUN with `repeat` = burst size. */
SEC("xdp")
int xdp_burst(struct xdp_md *ctx)
{
	produce(ctx->data_end - ctx->data);
	return XDP_PASS;
}

/* One event per write(2) of the target process. */
SEC("tracepoint/syscalls/sys_enter_write")
int tp_write_stream(struct trace_event_raw_sys_enter *ctx)
{
	__u32 zero = 0, tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 *target = bpf_map_lookup_elem(&stream_target, &zero);

	if (!target || *target != tgid)
		return 0;
	produce(ctx->args[2]);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
