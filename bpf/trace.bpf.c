// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of the OpenStack service tracer.
 *
 * Cost model (measured on this machine by trace-overhead --hooks, see
 * docs/benchmarks.md): a global sys_enter/sys_exit hook costs every syscall
 * of every process (~100 ns each here); a per-syscall tracepoint costs its
 * syscall ~100 ns and every other syscall ~35 ns of slow path. So we hook
 * the rare syscalls we need one by one (open, unlink, rename, connect,
 * accept, close), and socket data not at read/write — the hottest syscalls
 * of every process, guests included — but at the socket layer's own
 * tracepoints, which only socket I/O reaches. Every hook starts with one
 * hash lookup: is this process in the monitored set? Only
 * monitored processes produce events, with two exceptions that are rare by
 * nature: exec (how the agent discovers services; every process) and
 * writes/unlinks/renames of paths in the sensitive-path table (any process:
 * tampering with /etc/keystone matters whoever does it).
 *
 * The monitored set is keyed by tgid. The agent puts the services' processes
 * in it; a monitored process's children join it here, in the fork hook, so
 * nothing a service starts escapes between fork and the agent noticing.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"
#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define EINPROGRESS 115

/* a syscall's number and arguments in the task's saved user registers
 * (bpf_task_pt_regs): still there when the syscall exits */
#if defined(__TARGET_ARCH_x86)
#define NR_read 0
#define NR_openat 257
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define SC_NR(r) ((r)->orig_ax)
#define SC_ARG0(r) ((r)->di)
#define SC_ARG1(r) ((r)->si)
#define SC_ARG2(r) ((r)->dx)
#define SC_ARG3(r) ((r)->r10)
#else
#error "syscall numbers and registers for this architecture are not defined"
#endif
#define MSG_PEEK 2

/* the agent's own process: never traced, whatever the set says */
const volatile __u32 self_tgid = 0;
/* bytes captured at the start of each message on a tracked socket (≤ TRACE_CAPTURE_MAX) */
const volatile __u32 capture_bytes = 1024;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct mon);
} monitored SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct lpm_path);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sensitive SEC(".maps");

/* service id → ENFORCE_* flags, for services whose profile is in enforce mode */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} enforce SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct exec_allow_key);
	__type(value, __u8);
} exec_allow SEC(".maps");

/* executables that make a process monitored from its exec on, in the kernel,
 * before its first instruction (the mysql client run by hand: a user-space
 * decision would come after its statement). Key: service 0, the path as
 * given to execve; value: what to monitor it as. Written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct exec_allow_key);
	__type(value, struct mon);
} exec_watch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct deny_path_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} deny_files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct peer_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} peer_allow SEC(".maps");

/* a syscall's arguments between enter and exit, per thread */
struct inflight {
	__u64 a0;
	__u64 a1;
	__u64 a2;
	__u32 nr;       /* which handler stashed it */
	__u32 flags;
	__u32 mode;
	__u32 sensitive; /* IN_SENSITIVE, IN_KILLED */
};
#define IN_SENSITIVE 1
#define IN_KILLED 2
enum { /* 1, 2: opens and reads, before they needed no entry hook */ IF_CONNECT = 3, IF_ACCEPT = 4, IF_UNLINK = 5, IF_RENAME = 6 };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn);
} conns SEC(".maps");

/* thread → the greenlet it runs now, for monitored processes that use greenlet
 * (eventlet services): many requests share one thread there, and this tells
 * whose SQL and calls are whose */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} greenlet SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

DECLARE_LOST_COUNTER(events_lost);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TC_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* big records are built here, not on the 512-byte stack */
union scratch {
	struct trace_exec exec;
	struct trace_open open;
	struct trace_file file;
	struct trace_conn conn;
	struct trace_data data;
	struct lpm_path key;
	struct deny_path_key deny;
	struct peer_key peer;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, union scratch);
} scratch SEC(".maps");

/* the key of an exec_allow lookup (zero-padded path) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_allow_key);
} allow_key SEC(".maps");

BTF_EXPORT_STRUCT(trace_hdr);
BTF_EXPORT_STRUCT(trace_exec);
BTF_EXPORT_STRUCT(trace_fork);
BTF_EXPORT_STRUCT(trace_exit);
BTF_EXPORT_STRUCT(trace_open);
BTF_EXPORT_STRUCT(trace_file);
BTF_EXPORT_STRUCT(trace_conn);
BTF_EXPORT_STRUCT(trace_close);
BTF_EXPORT_STRUCT(trace_data);
BTF_EXPORT_ENUM(trace_kind);
BTF_EXPORT_ENUM(trace_file_op);
BTF_EXPORT_ENUM(trace_hdr_flag);
BTF_EXPORT_ENUM(trace_mon_flag);
BTF_EXPORT_ENUM(trace_role);
BTF_EXPORT_ENUM(trace_conn_flag);
BTF_EXPORT_ENUM(trace_enforce);
BTF_EXPORT_ENUM(trace_counter);

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &which);

	if (n)
		*n += 1;
}

static __always_inline void *scratch_slot(__u32 i)
{
	return bpf_map_lookup_elem(&scratch, &i);
}

static __always_inline struct mon *monitored_self(__u32 tgid)
{
	return bpf_map_lookup_elem(&monitored, &tgid);
}

static __always_inline void fill_hdr(struct trace_hdr *h, __u16 kind, __u32 service, __u16 flags)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();

	h->ts = bpf_ktime_get_ns();
	h->kind = kind;
	h->flags = flags;
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)bpf_get_current_uid_gid();
	h->service = service;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* ---- processes ---------------------------------------------------------- */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(trace_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct trace_exec *ev = scratch_slot(0);
	__u32 tgid = p->tgid;
	struct mon *m;
	__u64 start, end, len;
	long n;

	if (!ev || tgid == self_tgid)
		return 0;
	m = monitored_self(tgid);
	if (!m) {
		__u32 zero = 0;
		struct exec_allow_key *k = bpf_map_lookup_elem(&allow_key, &zero);
		struct mon *w;

		if (k) {
			__builtin_memset(k->path, 0, sizeof(k->path));
			k->service = 0;
			bpf_probe_read_kernel_str(k->path, sizeof(k->path), bprm->filename);
			w = bpf_map_lookup_elem(&exec_watch, k);
			if (w && bpf_map_update_elem(&monitored, &tgid, w, BPF_ANY) == 0)
				m = monitored_self(tgid);
		}
	}
	fill_hdr(&ev->h, TK_EXEC, m ? m->service : 0, m ? TH_MONITORED : 0);
	ev->cgroup = bpf_get_current_cgroup_id();
	n = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), bprm->filename);
	ev->filename_len = n > 0 ? n - 1 : 0;
	start = BPF_CORE_READ(p, mm, arg_start);
	end = BPF_CORE_READ(p, mm, arg_end);
	len = end > start ? end - start : 0;
	if (len > TRACE_ARGS_LEN)
		len = TRACE_ARGS_LEN;
	ev->args_len = 0;
	if (len > 0 && bpf_probe_read_user(ev->args, len, (void *)start) == 0)
		ev->args_len = len;
	else if (len > 0)
		count(TC_READ_FAULT);
	/* enforcement: an executable the service's profile does not allow dies
	 * here, before its first user-space instruction */
	if (m) {
		__u32 *ef = bpf_map_lookup_elem(&enforce, &m->service);
		__u32 zero = 0;
		struct exec_allow_key *k = bpf_map_lookup_elem(&allow_key, &zero);

		if (ef && (*ef & ENFORCE_EXEC) && k) {
			__builtin_memset(k->path, 0, sizeof(k->path));
			k->service = m->service;
			bpf_probe_read_kernel_str(k->path, sizeof(k->path), bprm->filename);
			if (!bpf_map_lookup_elem(&exec_allow, k)) {
				bpf_send_signal(9);
				ev->h.flags |= TH_KILLED;
			}
		}
	}
	emit_event(&events, &events_lost, ev, sizeof(*ev));
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(trace_fork, struct task_struct *parent, struct task_struct *child)
{
	struct trace_fork ev = {};
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct mon *m;

	if (child->pid != ctgid) /* a new thread, not a new process */
		return 0;
	m = monitored_self(ptgid);
	if (!m || ptgid == self_tgid)
		return 0;
	if (bpf_map_update_elem(&monitored, &ctgid, m, BPF_ANY) < 0)
		count(TC_MONITORED_FULL);
	fill_hdr(&ev.h, TK_FORK, m->service, TH_MONITORED);
	ev.child = ctgid;
	emit_event(&events, &events_lost, &ev, sizeof(ev));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(trace_exit, struct task_struct *p)
{
	struct trace_exit ev = {};
	__u32 tgid = p->tgid;
	struct mon *m;

	if (p->pid != tgid) /* a thread; the process ends with its leader */
		return 0;
	m = monitored_self(tgid);
	if (!m)
		return 0;
	fill_hdr(&ev.h, TK_EXIT, m->service, TH_MONITORED);
	ev.code = p->exit_code;
	bpf_map_delete_elem(&monitored, &tgid);
	emit_event(&events, &events_lost, &ev, sizeof(ev));
	return 0;
}

/* ---- files -------------------------------------------------------------- */

/* Is this user path under a sensitive prefix? Absolute paths only. */
static __always_inline int is_sensitive(const char *upath)
{
	struct lpm_path *key = scratch_slot(1);
	__u32 *hit;

	if (!key)
		return 0;
	__builtin_memset(key->path, 0, sizeof(key->path));
	if (bpf_probe_read_user_str(key->path, sizeof(key->path), upath) <= 0)
		return 0;
	if (key->path[0] != '/')
		return 0;
	key->prefixlen = TRACE_LPM_PATH * 8;
	hit = bpf_map_lookup_elem(&sensitive, key);
	return hit != 0;
}

static __always_inline void stash(__u32 tid, __u32 nr, __u64 a0, __u64 a1, __u64 a2, __u32 flags, __u32 mode, __u32 sens)
{
	struct inflight in = { .a0 = a0, .a1 = a1, .a2 = a2, .nr = nr, .flags = flags, .mode = mode, .sensitive = sens };

	if (bpf_map_update_elem(&inflight, &tid, &in, BPF_ANY) < 0)
		count(TC_INFLIGHT_FULL);
}

static __always_inline __u32 enforce_flags(__u32 service)
{
	__u32 *ef = bpf_map_lookup_elem(&enforce, &service);

	return ef ? *ef : 0;
}

/* Is this open forbidden to the service (an absolute path under one of its
 * deny_files prefixes)? The syscall itself still runs (a tracepoint cannot
 * stop it); SIGKILL is delivered before it returns to user space. */
static __always_inline int deny_open(__u32 service, const char *upath)
{
	struct deny_path_key *k;
	long n;

	if (!(enforce_flags(service) & ENFORCE_FILES))
		return 0;
	k = scratch_slot(1);
	if (!k)
		return 0;
	n = bpf_probe_read_user_str(k->path, sizeof(k->path), upath);
	if (n < 2 || k->path[0] != '/')
		return 0; /* unreadable, empty or relative: not matched */
	k->service = service;
	k->prefixlen = 32 + (n - 1) * 8;
	return bpf_map_lookup_elem(&deny_files, k) != 0;
}

/* Is this connect forbidden to the service (an IPv4/IPv6 peer no peer_allow
 * entry of the service covers)? Other families are not judged. */
static __always_inline int deny_connect(__u32 service, __u64 uaddr, __u64 addrlen)
{
	struct peer_key *k;
	__u16 family = 0;

	if (!(enforce_flags(service) & ENFORCE_PEERS) || !uaddr)
		return 0;
	if (bpf_probe_read_user(&family, sizeof(family), (void *)uaddr) < 0)
		return 0;
	k = scratch_slot(1);
	if (!k)
		return 0;
	__builtin_memset(k, 0, sizeof(*k));
	if (family == AF_INET && addrlen >= 16) {
		k->addr[10] = 0xff;
		k->addr[11] = 0xff;
		if (bpf_probe_read_user(&k->addr[12], 4, (void *)(uaddr + 4)) < 0)
			return 0;
	} else if (family == AF_INET6 && addrlen >= 24) {
		if (bpf_probe_read_user(k->addr, 16, (void *)(uaddr + 8)) < 0)
			return 0;
	} else {
		return 0;
	}
	if (bpf_probe_read_user(k->port, 2, (void *)(uaddr + 2)) < 0)
		return 0;
	k->service = service;
	k->prefixlen = 32 + 128 + 16;
	return bpf_map_lookup_elem(&peer_allow, k) == 0;
}

static __always_inline struct inflight *take_inflight(__u32 tid, __u32 nr)
{
	struct inflight *in = bpf_map_lookup_elem(&inflight, &tid);

	if (!in)
		return 0;
	if (in->nr != nr) {
		bpf_map_delete_elem(&inflight, &tid);
		return 0;
	}
	return in;
}

/* openat: one hook, at exit. The arguments are still in the saved
 * registers, so no entry hook is needed: every open of every process costs
 * one tracepoint, not two. Deny-list kills happen here too: a tracepoint
 * cannot stop the syscall either way, and SIGKILL is delivered before it
 * returns to user space. */
SEC("tracepoint/syscalls/sys_exit_openat")
int trace_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, flags, sens = 0;
	struct mon *m = monitored_self(tgid);
	struct trace_open *ev;
	struct pt_regs *regs;
	const char *upath;
	long n;

	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs || SC_NR(regs) != NR_openat)
		return 0;
	flags = SC_ARG2(regs);
	upath = (const char *)SC_ARG1(regs);
	if (!m) {
		if (!(flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)))
			return 0;
		if (tgid == self_tgid || !is_sensitive(upath))
			return 0;
		sens = IN_SENSITIVE;
	} else {
		if (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC))
			sens = is_sensitive(upath) ? IN_SENSITIVE : 0;
		if (deny_open(m->service, upath)) {
			bpf_send_signal(9);
			sens |= IN_KILLED;
		}
	}
	ev = scratch_slot(0);
	if (!ev)
		return 0;
	fill_hdr(&ev->h, TK_OPEN, m ? m->service : 0,
		 (m ? TH_MONITORED : 0) | (sens & IN_SENSITIVE ? TH_SENSITIVE : 0) | (sens & IN_KILLED ? TH_KILLED : 0));
	ev->ret = ctx->ret;
	ev->dfd = SC_ARG0(regs);
	ev->flags = flags;
	ev->mode = SC_ARG3(regs);
	n = bpf_probe_read_user_str(ev->path, sizeof(ev->path), upath);
	if (n < 0)
		count(TC_READ_FAULT);
	ev->path_len = n > 0 ? n - 1 : 0;
	emit_event(&events, &events_lost, ev, sizeof(*ev));
	return 0;
}

/* unlink / rename: reported for monitored processes and, under a sensitive
 * path, for everyone */
static __always_inline int file_op_enter(__u32 nr, const char *p1, const char *p2, __u32 flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 sens;

	if (tgid == self_tgid)
		return 0;
	sens = is_sensitive(p1) || (p2 && is_sensitive(p2));
	if (!sens && !monitored_self(tgid))
		return 0;
	stash((__u32)id, nr, (__u64)p1, (__u64)p2, 0, flags, 0, sens);
	return 0;
}

static __always_inline int file_op_exit(__u32 nr, __u32 op, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id, tgid = id >> 32;
	struct inflight *in = take_inflight(tid, nr);
	struct trace_file *ev;
	struct mon *m;

	if (!in)
		return 0;
	ev = scratch_slot(0);
	if (ev) {
		m = monitored_self(tgid);
		fill_hdr(&ev->h, TK_FILE, m ? m->service : 0,
			 (m ? TH_MONITORED : 0) | (in->sensitive ? TH_SENSITIVE : 0));
		ev->ret = ret;
		ev->op = op;
		ev->flags = in->flags;
		ev->path[0] = 0;
		ev->path2[0] = 0;
		bpf_probe_read_user_str(ev->path, sizeof(ev->path), (const char *)in->a0);
		if (in->a1)
			bpf_probe_read_user_str(ev->path2, sizeof(ev->path2), (const char *)in->a1);
		emit_event(&events, &events_lost, ev, sizeof(*ev));
	}
	bpf_map_delete_elem(&inflight, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int trace_unlinkat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return file_op_enter(IF_UNLINK, (const char *)ctx->args[1], 0, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_unlinkat")
int trace_unlinkat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return file_op_exit(IF_UNLINK, TF_UNLINK, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int trace_unlink_enter(struct trace_event_raw_sys_enter *ctx)
{
	return file_op_enter(IF_UNLINK, (const char *)ctx->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_unlink")
int trace_unlink_exit(struct trace_event_raw_sys_exit *ctx)
{
	return file_op_exit(IF_UNLINK, TF_UNLINK, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int trace_renameat2_enter(struct trace_event_raw_sys_enter *ctx)
{
	return file_op_enter(IF_RENAME, (const char *)ctx->args[1], (const char *)ctx->args[3], ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_exit_renameat2")
int trace_renameat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return file_op_exit(IF_RENAME, TF_RENAME, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int trace_rename_enter(struct trace_event_raw_sys_enter *ctx)
{
	return file_op_enter(IF_RENAME, (const char *)ctx->args[0], (const char *)ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_exit_rename")
int trace_rename_exit(struct trace_event_raw_sys_exit *ctx)
{
	return file_op_exit(IF_RENAME, TF_RENAME, ctx->ret);
}

/* ---- sockets ------------------------------------------------------------ */

static __always_inline struct sock *sock_of_fd(__u32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = 0;
	struct socket *sock;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) < 0 || !file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void fill_addrs(struct trace_conn *ev, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	ev->family = family;
	ev->proto = BPF_CORE_READ(sk, sk_protocol);
	__builtin_memset(ev->laddr, 0, 16);
	__builtin_memset(ev->raddr, 0, 16);
	ev->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		bpf_core_read(ev->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(ev->raddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(ev->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(ev->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* the peer a connect asked for, from its user sockaddr */
static __always_inline void peer_from_user(struct trace_conn *ev, __u64 uaddr)
{
	__u16 family = 0, port = 0;

	if (bpf_probe_read_user(&family, 2, (void *)uaddr) < 0)
		return;
	__builtin_memset(ev->laddr, 0, 16);
	__builtin_memset(ev->raddr, 0, 16);
	if (family == AF_INET)
		bpf_probe_read_user(ev->raddr, 4, (void *)(uaddr + 4));
	else if (family == AF_INET6)
		bpf_probe_read_user(ev->raddr, 16, (void *)(uaddr + 8));
	else
		return;
	bpf_probe_read_user(&port, 2, (void *)(uaddr + 2));
	ev->family = family;
	ev->rport = bpf_ntohs(port);
}

static __always_inline void track(__u32 tgid, __u32 fd, struct mon *m, __u8 role, long ret, __u64 uaddr, __u16 flags)
{
	struct trace_conn *ev = scratch_slot(0);
	struct conn_key key = { .tgid = tgid, .fd = fd };
	struct conn c = {};
	struct sock *sk;

	if (!ev)
		return;
	fill_hdr(&ev->h, role == 1 ? TK_ACCEPT : TK_CONNECT, m->service, TH_MONITORED | flags);
	ev->ret = ret;
	ev->fd = fd;
	ev->role = role;
	ev->unix_path[0] = 0;
	ev->family = 0;
	ev->proto = 0;
	ev->lport = 0;
	ev->rport = 0;
	sk = (ret == 0 || ret == -EINPROGRESS) ? sock_of_fd(fd) : 0;
	if (sk)
		fill_addrs(ev, sk);
	else if (role == 2 && uaddr)
		peer_from_user(ev, uaddr); /* a failed connect: the peer it was for */
	if (ev->family == AF_UNIX && uaddr)
		bpf_probe_read_user_str(ev->unix_path, sizeof(ev->unix_path), (void *)(uaddr + 2));
	ev->conn_id = bpf_ktime_get_ns();
	if (sk && (m->flags & MON_CAPTURE)) {
		c.id = ev->conn_id;
		c.sk = (__u64)sk;
		c.opened = ev->conn_id;
		c.family = ev->family;
		c.proto = ev->proto;
		c.role = role;
		if (bpf_map_update_elem(&conns, &key, &c, BPF_ANY) < 0)
			count(TC_CONNS_FULL);
	}
	emit_event(&events, &events_lost, ev, sizeof(*ev));
}

SEC("tracepoint/syscalls/sys_enter_connect")
int trace_connect_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct mon *m = monitored_self(id >> 32);
	__u32 killed = 0;

	if (!m)
		return 0;
	if (deny_connect(m->service, ctx->args[1], ctx->args[2])) {
		bpf_send_signal(9);
		killed = IN_KILLED;
	}
	stash((__u32)id, IF_CONNECT, ctx->args[0], ctx->args[1], 0, 0, 0, killed);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int trace_connect_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id, tgid = id >> 32;
	struct inflight *in = take_inflight(tid, IF_CONNECT);
	struct mon *m;

	if (!in)
		return 0;
	m = monitored_self(tgid);
	if (m)
		track(tgid, in->a0, m, 2, ctx->ret, in->a1, in->sensitive & IN_KILLED ? TH_KILLED : 0);
	bpf_map_delete_elem(&inflight, &tid);
	return 0;
}

static __always_inline int accept_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct mon *m;

	if (ret < 0)
		return 0;
	m = monitored_self(tgid);
	if (m)
		track(tgid, ret, m, 1, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int trace_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int trace_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_close")
int trace_close_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = { .tgid = id >> 32, .fd = ctx->args[0] };
	struct trace_close ev = {};
	struct tcp_sock *tp;
	struct mon *m;
	struct conn *c;

	m = monitored_self(key.tgid);
	if (!m)
		return 0;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	fill_hdr(&ev.h, TK_CLOSE, m->service, TH_MONITORED);
	ev.conn_id = c->id;
	ev.opened_ns = c->opened;
	ev.fd = key.fd;
	ev.role = c->role;
	ev.family = c->family;
	ev.last_dir = c->dir;
	ev.last_msg_bytes = c->msg_bytes;
	ev.last_msg_start = c->msg_start;
	ev.bytes_in = c->bytes_in;
	ev.bytes_out = c->bytes_out;
	if (c->proto == IPPROTO_TCP && c->sk) {
		tp = (struct tcp_sock *)c->sk;
		ev.bytes_in = BPF_CORE_READ(tp, bytes_received);
		ev.bytes_out = BPF_CORE_READ(tp, bytes_sent);
	}
	bpf_map_delete_elem(&conns, &key);
	emit_event(&events, &events_lost, &ev, sizeof(ev));
	return 0;
}

/* oslo.messaging puts a message's ids ("_msg_id", "_reply_q", "_unique_id")
 * after its arguments and before its context (a few KiB), far past the
 * captured start of a big message: for a framed connection the bytes of one
 * syscall past the capture are scanned from the end backwards (where the ids
 * are near), TRACE_SCAN_STEP at a time (windows overlap so a key across two
 * is found), for "_msg_id" or "_unique_id". */
/* little-endian: the bytes "_msg_id\\" (the key as it appears inside the envelope's JSON string) and "_unique_" */
#define KEY_MSG_ID 0x5c64695f67736d5fULL
#define KEY_UNIQUE 0x5f657571696e755fULL

struct key_scan {
	const __u8 *buf;
	__u32 from;
	__u32 to;
};

/* where in scratch slot 1 the scan leaves what it found: in a map, not on the
 * stack, so the verifier does not follow each possible offset separately */
#define SCAN_FOUND_AT (TRACE_SCAN_STEP + 16)

static long scan_step(__u64 i, void *ctx)
{
	struct key_scan *ks = ctx;
	__u32 back = (__u32)i * (TRACE_SCAN_STEP - 16), end, off, n;
	__u8 *w;

	if (back >= ks->to - ks->from)
		return 1;
	end = ks->to - back;
	off = end > ks->from + TRACE_SCAN_STEP ? end - TRACE_SCAN_STEP : ks->from;
	n = end - off;
	if (n > TRACE_SCAN_STEP)
		n = TRACE_SCAN_STEP;
	w = scratch_slot(1);
	if (!w)
		return 1;
	/* zeroed first, so a short window matches nothing stale; then each position is
	 * compared as one unaligned eight-byte number, unrolled: nothing here depends on n */
	__builtin_memset(w, 0, TRACE_SCAN_STEP + 8);
	if (bpf_probe_read_user(w, n, ks->buf + off) < 0)
		return 1;
#pragma clang loop unroll(full)
	for (int j = 0; j < TRACE_SCAN_STEP - 7; j++) {
		__u64 v = *(__u64 *)(w + j);

		if (v == KEY_MSG_ID || v == KEY_UNIQUE) {
			*(__s32 *)(w + SCAN_FOUND_AT) = off + j;
			return 1;
		}
	}
	return 0;
}

/* Data on a tracked socket. A change of direction starts a new message (on a
 * framed connection every syscall does; `cont` marks a syscall's later
 * iovecs); the first capture_bytes of every message go to user space (over
 * one or more chunks), the rest is only counted. */
static __always_inline void on_data(__u32 tgid, __u32 fd, __u8 dir, const void *ubuf, __u64 size, __u64 avail, struct mon *m, __u8 cont)
{
	struct conn_key key = { .tgid = tgid, .fd = fd };
	struct trace_data *ev;
	struct conn *c;
	__u64 now, prev_bytes = 0, prev_start = 0;
	__u32 len, want, base;

	c = bpf_map_lookup_elem(&conns, &key);
	if (!c || size == 0)
		return;
	now = bpf_ktime_get_ns();
	if (c->dir != dir || ((c->flags & CONN_FRAMED) && !cont)) {
		prev_bytes = c->msg_bytes;
		prev_start = c->msg_start;
		c->dir = dir;
		c->seq += 1;
		c->msg_start = now;
		c->msg_bytes = 0;
		c->captured = 0;
	}
	if (dir == 1)
		c->bytes_in += size;
	else
		c->bytes_out += size;
	want = capture_bytes;
	if (want > TRACE_CAPTURE_MAX)
		want = TRACE_CAPTURE_MAX;
	if (c->captured >= want) {
		c->msg_bytes += size;
		return;
	}
	ev = scratch_slot(0);
	if (!ev) {
		c->msg_bytes += size;
		return;
	}
	fill_hdr(&ev->h, TK_DATA, m->service, TH_MONITORED);
	ev->conn_id = c->id;
	ev->prev_bytes = prev_bytes;
	ev->prev_start = prev_start;
	/* the scheduler's own per-thread sums, so a request's CPU and run-queue
	 * time are differences of two records: nothing runs on a context switch */
	{
		struct task_struct *task = bpf_get_current_task_btf();

		ev->cpu_ns = task->se.sum_exec_runtime;
		ev->runq_ns = task->sched_info.run_delay;
	}
	{
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		__u64 *g = bpf_map_lookup_elem(&greenlet, &tid);

		ev->greenlet = g ? *g : 0;
	}
	ev->fd = fd;
	ev->seq = c->seq;
	base = c->msg_bytes;
	ev->offset = base;
	ev->dir = dir;
	ev->role = c->role;
	len = want - c->captured;
	if (len > avail)
		len = avail;
	len &= TRACE_CAPTURE_MAX * 2 - 1;
	if (len > TRACE_CAPTURE_MAX)
		len = TRACE_CAPTURE_MAX;
	if (bpf_probe_read_user(ev->data, len, ubuf) < 0) {
		count(TC_READ_FAULT);
		len = 0;
	}
	ev->len = len;
	c->captured += len;
	c->msg_bytes += size;
	/* an AMQP 0-9-1 client opens with its protocol header: from now on one message per syscall */
	if (dir == 2 && base == 0 && len >= 8 && ev->data[0] == 'A' && ev->data[1] == 'M' && ev->data[2] == 'Q' && ev->data[3] == 'P' &&
	    ev->data[4] == 0 && ev->data[5] == 0 && ev->data[6] == 9 && ev->data[7] == 1)
		c->flags |= CONN_FRAMED;
	emit_event(&events, &events_lost, ev, (sizeof(*ev) - TRACE_CAPTURE_MAX + len) & 0x1fff);
	if ((c->flags & CONN_FRAMED) && avail > len + 16) {
		struct key_scan ks = { .buf = ubuf, .to = avail };
		__u8 *w = scratch_slot(1);
		__u32 wl, start;
		__s32 found;

		if (!w)
			return;
		ks.from = len > 16 ? len - 16 : 0;
		if (avail > TRACE_SCAN_MAX && avail - TRACE_SCAN_MAX > ks.from)
			ks.from = avail - TRACE_SCAN_MAX;
		*(__s32 *)(w + SCAN_FOUND_AT) = -1;
		count(TC_KEY_SCANS);
		bpf_loop(TRACE_SCAN_MAX / (TRACE_SCAN_STEP - 16) + 1, scan_step, &ks, 0);
		found = *(volatile __s32 *)(w + SCAN_FOUND_AT);
		if (found < 0 || found >= avail) {
			count(TC_KEY_MISSES);
			return;
		}
		/* the window around the key: a chunk of the same message, past a gap */
		start = found > len + TRACE_KEY_BEFORE ? found - TRACE_KEY_BEFORE : len;
		if (start >= avail)
			return;
		wl = avail - start;
		if (wl > TRACE_KEY_WINDOW)
			wl = TRACE_KEY_WINDOW;
		if (bpf_probe_read_user(ev->data, wl, ubuf + start) < 0)
			return;
		ev->prev_bytes = 0;
		ev->prev_start = 0;
		ev->offset = base + start;
		ev->len = wl;
		emit_event(&events, &events_lost, ev, (sizeof(*ev) - TRACE_CAPTURE_MAX + wl) & 0x1fff);
	}
}

/* Socket data is read at the socket layer, not at read(2)/write(2): the
 * sock_send_length / sock_recv_length tracepoints fire inside
 * sock_sendmsg / sock_recvmsg only, so a process reading files, pipes, a tap
 * device or an eventfd (a guest's qemu, a grep) pays nothing there, where a
 * read(2) hook costs every read of every process (measured: trace-overhead
 * --hooks). They fire after the transfer, still inside the syscall: the
 * syscall's own arguments (fd, buffer or iovec) are in the task's saved
 * registers, and the data in the caller's buffer, for as many bytes as
 * `ret` says. */

/* each of the first four iovecs is a chunk of the same message (uwsgi
 * writes the head and the body of a response in one writev); `total` bytes
 * moved, counted across them */
#define IOV_MAX_SEEN 4
static __always_inline void on_iov(__u32 tgid, __u32 fd, __u8 dir, const struct iovec *iov, __u64 iovcnt, __u64 total, struct mon *m)
{
	struct iovec v[IOV_MAX_SEEN] = {};
	__u64 n = iovcnt, i, left = total, len;

	if (!iov || iovcnt == 0)
		return;
	if (n > IOV_MAX_SEEN)
		n = IOV_MAX_SEEN;
	if (bpf_probe_read_user(v, sizeof(v[0]) * n, iov) < 0)
		return;
	for (i = 0; i < IOV_MAX_SEEN; i++) {
		if (i >= n || left == 0)
			break;
		len = v[i].iov_len < left ? v[i].iov_len : left;
		on_data(tgid, fd, dir, v[i].iov_base, len, len, m, i > 0);
		left -= len;
	}
}

static __always_inline int on_sock_io(int ret, int flags, __u8 dir)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mon *m = monitored_self(tgid);
	struct user_msghdr msg;
	struct pt_regs *regs;
	__u64 nr, fd;

	if (!m || !(m->flags & MON_CAPTURE) || ret <= 0 || (flags & MSG_PEEK))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return 0;
	nr = SC_NR(regs);
	fd = SC_ARG0(regs);
	if (dir == 1) {
		if (nr == NR_read || nr == NR_recvfrom)
			on_data(tgid, fd, 1, (const void *)SC_ARG1(regs), ret, ret, m, 0);
		else if (nr == NR_readv)
			on_iov(tgid, fd, 1, (const struct iovec *)SC_ARG1(regs), SC_ARG2(regs), ret, m);
		else if (nr == NR_recvmsg && bpf_probe_read_user(&msg, sizeof(msg), (void *)SC_ARG1(regs)) == 0)
			on_iov(tgid, fd, 1, msg.msg_iov, msg.msg_iovlen, ret, m);
	} else {
		if (nr == NR_write || nr == NR_sendto)
			on_data(tgid, fd, 2, (const void *)SC_ARG1(regs), ret, ret, m, 0);
		else if (nr == NR_writev)
			on_iov(tgid, fd, 2, (const struct iovec *)SC_ARG1(regs), SC_ARG2(regs), ret, m);
		else if (nr == NR_sendmsg && bpf_probe_read_user(&msg, sizeof(msg), (void *)SC_ARG1(regs)) == 0)
			on_iov(tgid, fd, 2, msg.msg_iov, msg.msg_iovlen, ret, m);
	}
	/* anything else (sendfile, splice, io_uring, a kernel socket) is not
	 * a syscall whose buffer we know: not captured */
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(trace_sock_recv, struct sock *sk, int ret, int flags)
{
	return on_sock_io(ret, flags, 1);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(trace_sock_send, struct sock *sk, int ret, int flags)
{
	return on_sock_io(ret, flags, 2);
}

/* ---- greenlets ------------------------------------------------------------ */

/*
 * greenlet::PythonState::operator>>(PyThreadState*): greenlet (2.x) calls it on
 * every switch, in the greenlet switched in, to put that greenlet's Python
 * state back into the thread; its first argument is that state, one per
 * greenlet. The agent attaches this to each greenlet library its monitored
 * processes map (once per file: every process mapping it fires it, so the
 * monitored set filters here).
 */
SEC("uprobe")
int trace_greenlet_in(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 g = PT_REGS_PARM1(ctx);

	if (!monitored_self(id >> 32))
		return 0;
	bpf_map_update_elem(&greenlet, &tid, &g, BPF_ANY);
	return 0;
}
