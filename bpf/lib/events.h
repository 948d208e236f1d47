/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ring buffer output with kernel-side loss accounting.
 *
 * Every program family that reports through a ring buffer declares one
 * per-CPU counter map next to it; user space sums it to report lost events
 * (the ring was full when the program tried to reserve a record).
 */
#ifndef STACKBPF_LIB_EVENTS_H
#define STACKBPF_LIB_EVENTS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define DECLARE_LOST_COUNTER(name)                     \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__uint(max_entries, 1);                \
		__type(key, __u32);                    \
		__type(value, __u64);                  \
	} name SEC(".maps")

/* Keep a struct that is only used as a local (ring records) in the object's
 * BTF, so user space can check its codec against the real layout. */
#define BTF_EXPORT_STRUCT(name) struct name *__btf_export_##name __attribute__((unused))
/* The same for an enum whose values user space reads by name. */
#define BTF_EXPORT_ENUM(name) enum name *__btf_export_enum_##name __attribute__((unused))

static __always_inline void count_lost(void *lost_map)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(lost_map, &zero);

	if (lost)
		*lost += 1; /* per-CPU slot: no atomic needed */
}

/* Copy `size` bytes into the ring; on a full ring count the loss instead. */
static __always_inline int emit_event(void *ring, void *lost_map, const void *data, __u64 size)
{
	if (bpf_ringbuf_output(ring, (void *)data, size, 0) < 0) {
		count_lost(lost_map);
		return -1;
	}
	return 0;
}

#endif
