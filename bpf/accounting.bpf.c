// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Resource accounting: what instances and services use, aggregated in the
 * kernel and read by user space once per interval (no per-packet or
 * per-request event leaves the kernel).
 *
 * acct_tap_out / acct_tap_in (TC ingress / egress on a VM's tap): bytes and
 *   packets per tap, direction and where the traffic goes (the class rules:
 *   tenant networks, the node's services, everything else).
 * acct_tasks (iter/task): one record per thread of a watched process, with the
 *   scheduler's own cumulative figures (time on a CPU, time runnable but
 *   waiting for one) and, for the process, its dead threads' CPU time and its
 *   resident pages. User space runs the iterator once per interval: nothing
 *   runs on a context switch, so an unwatched process pays nothing.
 * acct_fork (sched_process_fork): a watched service's children are watched.
 * acct_exit (sched_process_exit): a watched thread's final figures, so a
 *   process that ends between two reads is still fully accounted.
 * acct_bio_queue / acct_io_start / acct_io_done (block layer tp_btf): bytes
 *   per bio as the process submits it, requests and their latency per request
 *   the process started; per watched process, block device and direction (a
 *   qemu thread submits a guest's I/O with cache=none).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "accounting.h"
#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_UDP 17
#define TC_ACT_UNSPEC -1
#define TASK_DEAD 0x80

BTF_EXPORT_STRUCT(acct_task_rec);

/* the processes whose CPU, memory and disk I/O are accounted, by tgid */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct acct_task);
} watched SEC(".maps");

/* the taps' counters: an open-addressing table over a per-CPU array
 * (size: a power of two set before load, with tap_mask) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, struct acct_tap);
} tap_slots SEC(".maps");

const volatile __u32 tap_mask = 2047;

static __always_inline __u32 tap_home(__u64 netns, __u32 ifindex)
{
	return (ifindex * 2654435761u) ^ ((__u32)netns * 40503u);
}

struct acct_rules {
	__u32 count;  /* IPv6 rules in r */
	__u32 count4; /* IPv4 rules in r4 */
	struct acct_rule r[ACCT_MAX_RULES];
	struct acct_rule4 r4[ACCT_MAX_RULES];
};

/* the class rules, longest prefix first (one entry) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct acct_rules);
} class_rules SEC(".maps");

/* frames seen on a tap with no slot (a tap being set up or torn down) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tap_unknown SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct acct_disk_key);
	__type(value, struct acct_disk);
} disk_stats SEC(".maps");

struct inflight_io {
	__u64 start_ns;
	__u32 tgid;
	__u32 dev;
	__u32 op;
	__u32 pad;
};

/* requests in flight of watched processes, by request pointer */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight_io);
} inflight SEC(".maps");

/* disk: a request the inflight table had no room for, or a stats entry that could not be made */
DECLARE_LOST_COUNTER(disk_lost);

/* ---- network ---- */

static __always_inline struct acct_rules *rules(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&class_rules, &zero);
}

static __always_inline __u32 match4(__be32 a)
{
	struct acct_rules *rs = rules();
	if (!rs)
		return ACCT_NORTH_SOUTH;
	__u32 n = rs->count4;
	for (__u32 i = 0; i < ACCT_MAX_RULES; i++) {
		if (i >= n)
			break;
		struct acct_rule4 *r = &rs->r4[i];
		if ((a & r->mask) == r->addr)
			return r->klass;
	}
	return ACCT_NORTH_SOUTH;
}

static __always_inline __u32 match6(const __u32 *addr)
{
	struct acct_rules *rs = rules();
	if (!rs)
		return ACCT_NORTH_SOUTH;
	__u32 n = rs->count;
	for (__u32 i = 0; i < ACCT_MAX_RULES; i++) {
		if (i >= n)
			break;
		struct acct_rule *r = &rs->r[i];
		if ((addr[0] & r->mask[0]) != r->addr[0] || (addr[1] & r->mask[1]) != r->addr[1] || (addr[2] & r->mask[2]) != r->addr[2] ||
		    (addr[3] & r->mask[3]) != r->addr[3])
			continue;
		return r->klass;
	}
	return ACCT_NORTH_SOUTH;
}

/* from_guest: the remote end is the destination (TC ingress on the tap) */
static __always_inline __u32 classify(struct __sk_buff *skb, int from_guest)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + 14;
		struct iphdr copy;
		if ((void *)(ip + 1) > end) {
			/* headers not in the linear part: copy them */
			if (bpf_skb_load_bytes(skb, 14, &copy, sizeof(copy)) < 0)
				return ACCT_NORTH_SOUTH;
			ip = &copy;
		}
		if (ip->protocol == IPPROTO_UDP && !(ip->frag_off & bpf_htons(0x1fff))) {
			/* DHCP: the guest's client port 68 to a server's 67 */
			__u32 off = 14 + (ip->ihl & 0xf) * 4;
			__u32 ports = 0;
			__u32 *p = data + off;
			if (off <= 14 + 60 && (void *)(p + 1) <= end)
				ports = *p;
			else if (bpf_skb_load_bytes(skb, off, &ports, sizeof(ports)) < 0)
				ports = 0;
			if (ports == (from_guest ? bpf_htonl((68 << 16) | 67) : bpf_htonl((67 << 16) | 68)))
				return ACCT_NODE;
		}
		/* multicast and broadcast stay on the segment whoever sends them: class of the destination */
		__u32 dst = bpf_ntohl(ip->daddr);
		return match4(from_guest || (dst >> 28) == 0xe || dst == 0xffffffff ? ip->daddr : ip->saddr);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		/* source at 14+8, destination at 14+24 */
		__u32 both[8];
		if (bpf_skb_load_bytes(skb, 14 + 8, both, 32) < 0)
			return ACCT_NORTH_SOUTH;
		/* to a multicast group (NDP, MLD: often from ::), or from the guest: the destination */
		__u32 addr[4];
		int dst = from_guest || (both[4] & 0xff) == 0xff;
		addr[0] = dst ? both[4] : both[0];
		addr[1] = dst ? both[5] : both[1];
		addr[2] = dst ? both[6] : both[2];
		addr[3] = dst ? both[7] : both[3];
		return match6(addr);
	}
	return ACCT_NON_IP;
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline void count_tap(struct __sk_buff *skb, __u32 dir)
{
	/* the device's namespace (bpf_get_netns_cookie answers the socket's,
	 * or the initial namespace for a packet with none: forwarded traffic) */
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 ifindex = skb->ifindex;
	__u64 netns = 0;
	struct net_device *dev = kskb->dev;
	if (dev)
		netns = BPF_CORE_READ(dev, nd_net.net, net_cookie);
	__u32 h = tap_home(netns, ifindex);
	struct acct_tap *t = 0;
	for (__u32 i = 0; i < ACCT_PROBES; i++) {
		__u32 idx = (h + i) & tap_mask;
		struct acct_tap *s = bpf_map_lookup_elem(&tap_slots, &idx);
		if (!s || s->ifindex == 0)
			break;
		if (s->ifindex == ifindex && s->netns == netns) {
			t = s;
			break;
		}
	}
	if (!t) {
		__u32 zero = 0;
		__u64 *u = bpf_map_lookup_elem(&tap_unknown, &zero);
		if (u)
			*u += 1;
		return;
	}
	__u32 c = classify(skb, dir == ACCT_OUT);
	if (c >= ACCT_CLASSES)
		c = ACCT_NORTH_SOUTH;
	/* per CPU: plain adds; the length is the whole frame, as the device counts it */
	t->c[dir & 1][c].packets += 1;
	t->c[dir & 1][c].bytes += skb->len;
}

SEC("tc")
int acct_tap_out(struct __sk_buff *skb)
{
	count_tap(skb, ACCT_OUT);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int acct_tap_in(struct __sk_buff *skb)
{
	count_tap(skb, ACCT_IN);
	return TC_ACT_UNSPEC;
}

/* ---- CPU and memory: one pass over the tasks, per interval ---- */

struct acct_task_rec {
	__u32 tgid;
	__u32 tid;
	__u64 run_ns;      /* this thread: se.sum_exec_runtime */
	__u64 wait_ns;     /* this thread: sched_info.run_delay */
	__u64 slices;      /* this thread: sched_info.pcount */
	__u64 dead_run_ns; /* the process's exited threads (signal->sum_sched_runtime); leader only */
	__u64 rss_pages;   /* the process's resident pages (file + anon + shmem); leader only */
	char comm[16];
};

SEC("iter/task")
int acct_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	__u32 tgid = task->tgid;
	if (!bpf_map_lookup_elem(&watched, &tgid))
		return 0;
	struct acct_task_rec r = {};
	r.tgid = tgid;
	r.tid = task->pid;
	/* a thread on its way out (PF_EXITING) is counted by acct_exit once it
	 * gets there: counting it here too would add it twice until it is reaped */
	int exiting = task->flags & 0x4; /* PF_EXITING */
	if (exiting && r.tid != tgid)
		return 0;
	if (!exiting) {
		r.run_ns = task->se.sum_exec_runtime;
		r.wait_ns = task->sched_info.run_delay;
		r.slices = task->sched_info.pcount;
	}
	if (r.tid == tgid) {
		struct signal_struct *sig = task->signal;
		if (sig)
			r.dead_run_ns = sig->sum_sched_runtime;
		struct mm_struct *mm = task->mm;
		if (mm) {
			/* what /proc/PID/status reads (percpu_counter_read_positive) */
			__s64 f = BPF_CORE_READ(mm, rss_stat[0].count);
			__s64 a = BPF_CORE_READ(mm, rss_stat[1].count);
			__s64 s = BPF_CORE_READ(mm, rss_stat[3].count);
			r.rss_pages = (f > 0 ? f : 0) + (a > 0 ? a : 0) + (s > 0 ? s : 0);
		}
	}
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->comm);
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/* CPU of the threads that exited since the process was watched, plus (set by
 * user space when it starts watching) the CPU of those that exited before:
 * with the live threads of the iterator, the process's cumulative CPU; after
 * the process is gone, its final figures. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct acct_cpu);
} exited SEC(".maps");

SEC("tp_btf/sched_process_exit")
int BPF_PROG(acct_exit, struct task_struct *task, bool group_dead)
{
	__u32 tgid = task->tgid;
	if (!bpf_map_lookup_elem(&watched, &tgid))
		return 0;
	struct acct_cpu *e = bpf_map_lookup_elem(&exited, &tgid);
	if (!e)
		return 0;
	__sync_fetch_and_add(&e->run_ns, task->se.sum_exec_runtime);
	__sync_fetch_and_add(&e->wait_ns, task->sched_info.run_delay);
	__sync_fetch_and_add(&e->slices, task->sched_info.pcount);
	return 0;
}

/* A service's worker forked between two readings is accounted from its
 * first instruction: the child of a watched service process is watched too
 * (user space learns its service from its parent). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(acct_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid;
	struct acct_task *p = bpf_map_lookup_elem(&watched, &ptgid);
	if (!p || p->kind != 2)
		return 0;
	__u32 ctgid = child->tgid;
	if (ctgid == ptgid)
		return 0; /* a thread: already covered by its process */
	struct acct_cpu zero = {};
	bpf_map_update_elem(&exited, &ctgid, &zero, BPF_NOEXIST);
	struct acct_task t = { .kind = 2, .parent = ptgid };
	bpf_map_update_elem(&watched, &ctgid, &t, BPF_NOEXIST);
	return 0;
}

/* ---- disk ---- */

static __always_inline __u32 fs_own_work(void)
{
	return (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_META)) | (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_RAHEAD));
}

static __always_inline struct acct_disk *disk_entry(__u32 tgid, __u32 dev, __u32 op)
{
	struct acct_disk_key k = { .tgid = tgid, .dev = dev, .op = op };
	struct acct_disk *d = bpf_map_lookup_elem(&disk_stats, &k);
	if (d)
		return d;
	struct acct_disk z = {};
	bpf_map_update_elem(&disk_stats, &k, &z, BPF_NOEXIST);
	d = bpf_map_lookup_elem(&disk_stats, &k);
	if (!d)
		count_lost(&disk_lost);
	return d;
}

/* Bytes per bio, as the process submits it: a bio the block layer later
 * merges into a request another process started still counts for its own. */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(acct_bio_queue, struct bio *bio)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&watched, &tgid))
		return 0;
	__u32 flags = bio->bi_opf;
	__u32 op = flags & 0xff;
	if (op > 1 || (flags & fs_own_work()))
		return 0;
	__u32 dev = BPF_CORE_READ(bio, bi_bdev, bd_disk, part0, bd_dev);
	struct acct_disk *d = disk_entry(tgid, dev, op);
	if (d)
		__sync_fetch_and_add(&d->bytes, bio->bi_iter.bi_size);
	return 0;
}

SEC("tp_btf/block_io_start")
int BPF_PROG(acct_io_start, struct request *rq)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&watched, &tgid))
		return 0;
	__u32 flags = rq->cmd_flags;
	__u32 op = flags & 0xff; /* REQ_OP_MASK */
	if (op > 1)
		return 0; /* read and write only: flush and discard carry no data */
	/* the file system's own work done in the process's context (inode and
	 * journal updates on fsync, readahead of the files it maps) is not the
	 * guest's I/O: the guest's disk with cache=none is direct I/O */
	if (flags & fs_own_work())
		return 0;
	struct inflight_io f = { .start_ns = bpf_ktime_get_ns(), .tgid = tgid, .op = op };
	/* the whole disk (rq->part is set only after this tracepoint) */
	f.dev = BPF_CORE_READ(rq, q, disk, part0, bd_dev);
	__u64 key = (__u64)rq;
	if (bpf_map_update_elem(&inflight, &key, &f, BPF_ANY) < 0)
		count_lost(&disk_lost);
	return 0;
}

SEC("tp_btf/block_io_done")
int BPF_PROG(acct_io_done, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct inflight_io *f = bpf_map_lookup_elem(&inflight, &key);
	if (!f)
		return 0;
	__u32 tgid = f->tgid, dev = f->dev, op = f->op;
	__u64 lat = bpf_ktime_get_ns() - f->start_ns;
	bpf_map_delete_elem(&inflight, &key);
	struct acct_disk *d = disk_entry(tgid, dev, op);
	if (!d)
		return 0;
	__sync_fetch_and_add(&d->requests, 1);
	__sync_fetch_and_add(&d->latency_ns, lat);
	return 0;
}
