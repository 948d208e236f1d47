/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Records the tracer (bpf/trace.bpf.c) writes to its ring buffer; decoded by
 * src/trace/records.ts through the generated src/trace/abi.generated.ts. Every record starts with struct trace_hdr. Change a
 * layout here and there together (the decoder checks sizes against BTF). */
#ifndef STACKBPF_TRACE_H
#define STACKBPF_TRACE_H

#define TRACE_COMM_LEN 16
#define TRACE_PATH_LEN 256
#define TRACE_ARGS_LEN 1024
#define TRACE_CAPTURE_MAX 2048 /* power of two: bounds every captured chunk */
#define TRACE_LPM_PATH 128

enum trace_kind {
	TK_EXEC = 1,
	TK_FORK = 2,
	TK_EXIT = 3,
	TK_OPEN = 4,
	TK_FILE = 5,     /* unlink / rename / write-open under a sensitive path */
	TK_CONNECT = 6,
	TK_ACCEPT = 7,
	TK_CLOSE = 8,
	TK_DATA = 9,     /* first bytes of a message on a tracked socket */
};

enum trace_file_op {
	TF_OPEN_WRITE = 1,
	TF_UNLINK = 2,
	TF_RENAME = 3,
};

/* header flags */
enum trace_hdr_flag {
	TH_MONITORED = 1, /* the process is in the monitored set */
	TH_SENSITIVE = 2, /* a path matched the sensitive-path table */
	TH_KILLED = 4,    /* enforcement: the kernel sent SIGKILL to the process */
};

/* monitored: tgid → what to do for the process (written by the agent) */
struct mon {
	__u32 service;
	__u32 flags; /* enum trace_mon_flag */
};
enum trace_mon_flag {
	MON_CAPTURE = 1, /* track sockets and capture message heads */
};

/* sensitive: LPM trie over absolute path bytes; prefixlen counts 8 per byte */
struct lpm_path {
	__u32 prefixlen;
	__u8 path[TRACE_LPM_PATH];
};

/* conns: the tracked sockets of monitored processes; the agent adds the
 * ones opened before it started (adoption) */
struct conn_key {
	__u32 tgid;
	__u32 fd;
};

struct conn {
	__u64 id;
	__u64 sk;
	__u64 opened;
	__u64 msg_start;
	__u64 msg_bytes;
	__u64 bytes_in;
	__u64 bytes_out;
	__u32 captured;
	__u32 seq;
	__u16 family;
	__u8 dir;
	__u8 role; /* enum trace_role */
	__u8 proto;
	__u8 flags; /* enum trace_conn_flag */
	__u8 pad[2];
};

enum trace_conn_flag {
	/* a framed protocol (AMQP 0-9-1): each syscall starts a new message, and
	 * oslo.messaging's message ids are looked for past the captured bytes */
	CONN_FRAMED = 1,
};

/* how far back from the end of one syscall's bytes the message-id scan looks,
 * its step, and the window it sends around what it found (from before
 * "_msg_id" and "_reply_q" when it found "_unique_id", which follows them) */
#define TRACE_SCAN_MAX 32768
#define TRACE_SCAN_STEP 64
#define TRACE_KEY_WINDOW 384
#define TRACE_KEY_BEFORE 224

enum trace_role {
	ROLE_SERVER = 1, /* accepted */
	ROLE_CLIENT = 2, /* connected */
};

#define TRACE_ALLOW_PATH 128

/* exec enforcement: a service whose enforce flag is set may only run the
 * executables in exec_allow; anything else is killed at exec */
struct exec_allow_key {
	__u32 service;
	char path[TRACE_ALLOW_PATH];
};
/* enforce: service id → these flags */
enum trace_enforce {
	ENFORCE_EXEC = 1,
	ENFORCE_FILES = 2, /* opens under a deny_files prefix of the service kill */
	ENFORCE_PEERS = 4, /* connects to an IP peer outside peer_allow kill */
};

/* deny_files: LPM trie over (service, absolute path bytes); prefixlen counts
 * the service's 32 bits plus 8 per path byte */
struct deny_path_key {
	__u32 prefixlen;
	__u32 service;
	char path[TRACE_ALLOW_PATH];
};

/* peer_allow: LPM trie over (service, IPv6 or IPv4-mapped address, port in
 * network order); an entry ending inside the address allows a network on
 * every port, one with all 176 data bits a host:port */
struct peer_key {
	__u32 prefixlen;
	__u32 service;
	__u8 addr[16];
	__u8 port[2];
	__u8 pad[2];
};

enum trace_counter {
	TC_INFLIGHT_FULL = 0, /* a syscall's arguments could not be stashed: its event is lost */
	TC_CONNS_FULL = 1,    /* a connection could not be tracked: no HTTP/SQL/close events for it */
	TC_MONITORED_FULL = 2,/* a monitored process's child could not join the set */
	TC_READ_FAULT = 3,    /* user memory could not be read (the event goes out without it) */
	TC_KEY_SCANS = 4,     /* framed messages scanned past their capture for a message id */
	TC_KEY_MISSES = 5,    /* ... in which none was found in the last TRACE_SCAN_MAX bytes */
	TC_NR = 8,
};

struct trace_hdr {
	__u64 ts;        /* bpf_ktime_get_ns */
	__u16 kind;
	__u16 flags;
	__u32 tgid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 service;   /* id the agent gave the process's service, 0 if none */
	char comm[TRACE_COMM_LEN];
};

struct trace_exec {
	struct trace_hdr h;
	__u64 cgroup;
	__u32 filename_len;
	__u32 args_len;
	char filename[TRACE_PATH_LEN];
	char args[TRACE_ARGS_LEN];   /* NUL-separated argv, possibly truncated */
};

struct trace_fork {
	struct trace_hdr h;
	__u32 child;
	__u32 pad;
};

struct trace_exit {
	struct trace_hdr h;
	__s32 code;       /* wait status: exit code << 8 | signal */
	__u32 pad;
};

struct trace_open {
	struct trace_hdr h;
	__s64 ret;
	__s32 dfd;
	__u32 flags;
	__u32 mode;
	__u32 path_len;
	char path[TRACE_PATH_LEN];
};

struct trace_file {
	struct trace_hdr h;
	__s64 ret;
	__u32 op;
	__u32 flags;
	char path[TRACE_PATH_LEN];
	char path2[TRACE_PATH_LEN];
};

struct trace_conn {
	struct trace_hdr h;
	__u64 conn_id;
	__s64 ret;
	__u32 fd;
	__u16 family;
	__u8 role;        /* 1 accepted (we serve), 2 connected (we are the client) */
	__u8 proto;
	__u16 lport;
	__u16 rport;
	__u32 pad;
	__u8 laddr[16];
	__u8 raddr[16];
	char unix_path[108];
	__u32 pad2;
};

struct trace_close {
	struct trace_hdr h;
	__u64 conn_id;
	__u64 opened_ns;
	__u64 bytes_in;   /* tcp_sock counters for TCP, else what read/write saw */
	__u64 bytes_out;
	__u64 last_msg_bytes;
	__u64 last_msg_start;
	__u32 fd;
	__u8 role;
	__u8 last_dir;
	__u16 family;
};

struct trace_data {
	struct trace_hdr h;
	__u64 conn_id;
	__u64 prev_bytes;  /* size of the message this one follows (other direction) */
	__u64 prev_start;  /* when that message began */
	__u64 cpu_ns;      /* the thread's time on a CPU so far (se.sum_exec_runtime) */
	__u64 runq_ns;     /* the thread's time runnable, waiting for a CPU (sched_info.run_delay) */
	__u64 greenlet;    /* the greenlet the thread ran then (its PythonState's address), 0 if none seen */
	__u32 fd;
	__u32 seq;         /* message number on the connection */
	__u32 offset;      /* where this chunk starts within its message */
	__u16 len;         /* bytes captured below */
	__u8 dir;          /* 1 in (read), 2 out (write) */
	__u8 role;
	__u8 data[TRACE_CAPTURE_MAX];
};

#endif
