/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Resource accounting: the structs shared with user space
 * (src/accounting/abi.ts mirrors them and is checked against the object's BTF). */
#ifndef STACKBPF_ACCOUNTING_H
#define STACKBPF_ACCOUNTING_H

/* Where a tap's traffic goes (the remote end: destination of what the guest
 * sends, source of what it receives). */
enum acct_class {
	ACCT_NORTH_SOUTH = 0, /* any IP address not in the class rules */
	ACCT_EAST_WEST = 1,   /* the tenant networks */
	ACCT_NODE = 2,        /* the node's own services: metadata, DHCP */
	ACCT_NON_IP = 3,      /* ARP and other non-IP frames */
	ACCT_BEFORE = 4,      /* counted by the device before the agent watched it */
	ACCT_CLASSES = 5,
};

/* Direction, from the guest's point of view, as Ceilometer names it:
 * "incoming" is what the tap transmits to the guest (TC egress). */
enum acct_dir {
	ACCT_OUT = 0, /* from the guest: TC ingress on the tap */
	ACCT_IN = 1,  /* to the guest: TC egress on the tap */
};

struct acct_count {
	__u64 packets;
	__u64 bytes;
};

/* A tap's slot in tap_slots (a per-CPU array used as an open-addressing
 * table): its namespace's cookie and ifindex, then [dir][class] counters.
 * ifindex 0: an empty slot; ACCT_TOMBSTONE: a removed one (probing goes on). */
struct acct_tap {
	__u64 netns;
	__u32 ifindex;
	__u32 pad;
	struct acct_count c[2][ACCT_CLASSES];
};

#define ACCT_TOMBSTONE 0xffffffff
#define ACCT_PROBES 4

/* A class rule: the remote address masked equals addr. For IPv4 only
 * addr[0] and mask[0] are used. Sorted by prefix length, longest first. */
struct acct_rule {
	__u32 addr[4];
	__u32 mask[4];
	__u32 klass;
	__u32 family; /* 4 or 6; 0 ends the list */
};

#define ACCT_MAX_RULES 32

/* IPv4 rules apart, compact: the common case scans only these */
struct acct_rule4 {
	__u32 addr;
	__u32 mask;
	__u32 klass;
};

/* watched: a process whose CPU and disk I/O are accounted (a qemu, a service worker) */
struct acct_task {
	__u32 kind;   /* 1: instance, 2: service */
	__u32 parent; /* a service's child: the watched process it was forked from (0: registered by user space) */
};

/* exited value: CPU of a watched process's exited threads (the scheduler's
 * own figures: task->se.sum_exec_runtime and sched_info) */
struct acct_cpu {
	__u64 run_ns;   /* on a CPU */
	__u64 wait_ns;  /* runnable, waiting on a run queue */
	__u64 slices;   /* times it got a CPU after waiting */
};

struct acct_disk_key {
	__u32 tgid;
	__u32 dev; /* the block device, in the kernel's dev_t encoding (major << 20 | minor) */
	__u32 op;  /* 0 read, 1 write */
	__u32 pad;
};

struct acct_disk {
	__u64 requests;
	__u64 bytes;
	__u64 latency_ns; /* summed from the request's start to its completion */
};

#endif
