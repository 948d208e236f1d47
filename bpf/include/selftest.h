/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ABI of the runtime's self-test programs in bpf/test, mirrored in
 * test/fixtures/selftest-abi.ts and checked against the objects' BTF. */
#ifndef STACKBPF_SELFTEST_H
#define STACKBPF_SELFTEST_H

#define SELFTEST_COMM_LEN 16
#define SELFTEST_PATH_LEN 64

/* One record of the ring buffer burst / stream producers. */
struct selftest_seq_event {
	__u64 seq;       /* producer's sequence number, starts at 0 */
	__u32 cpu;
	__u32 pid;
	__u64 ktime_ns;
	__u64 payload;   /* producer-defined */
};

/* A process event from the tracing self-test programs. */
struct selftest_proc_event {
	__u32 kind;      /* 1 = exec (tp_btf), 2 = openat (tracepoint), 3 = uprobe */
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	char comm[SELFTEST_COMM_LEN];
	char path[SELFTEST_PATH_LEN];
};

/* LPM trie key for IPv4. */
struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

/* A struct value used to check codecs: mixed widths and padding. */
struct route_value {
	__u8 mac[6];
	__u16 vlan;
	__u32 ifindex;
	__u64 packets;
	__u8 addr6[16];
};

#endif
