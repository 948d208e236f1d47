/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The data plane's kernel/user ABI: map keys, values and counter indexes.
 * Mirrored in src/dataplane/abi.ts and checked against this object's BTF. */
#ifndef STACKBPF_DATAPLANE_H
#define STACKBPF_DATAPLANE_H

#define DP_MAX_PORTS 256

/* Why a packet got its verdict: index of dp_verdicts (per-CPU). */
enum dp_reason {
	DP_OTHER = 0,      /* not IPv4/IPv6 (ARP, LLDP, >2 VLAN tags...): XDP_PASS */
	DP_MALFORMED = 1,  /* truncated or invalid L2/L3 header: XDP_PASS, the kernel decides */
	DP_BLOCKED = 2,    /* source in the blocklist: XDP_DROP */
	DP_NDP = 3,        /* IPv6 neighbour discovery: XDP_PASS */
	DP_MISS = 4,       /* destination not exposed: XDP_PASS */
	DP_TTL = 5,        /* TTL / hop limit <= 1: XDP_PASS (the kernel sends the ICMP error) */
	DP_NO_PORT = 6,    /* exposure's tx port not in tx_ports: XDP_PASS, untouched */
	DP_REDIRECT = 7,   /* forwarded: XDP_REDIRECT */
	DP_ERROR = 8,      /* could not resize the header: XDP_ABORTED */
	DP_BAD_HEADER = 9, /* fails RFC 1812 5.2.2 / RFC 8200 checks (checksum, lengths): XDP_PASS */
	DP_MARTIAN = 10,   /* source no router may forward from (RFC 1812 5.3.7, RFC 3927, RFC 4291): XDP_PASS */
	DP_NOT_LOCAL = 11, /* link-layer destination not this host (RFC 1812 5.3.4): XDP_PASS */
	DP_OPTIONS = 12,   /* IPv4 options or an IPv6 hop-by-hop header, the kernel processes them: XDP_PASS */
	DP_TOO_BIG = 13,   /* larger than the target's MTU (RFC 1812 5.2.6, RFC 8201): XDP_PASS */
	DP_REASONS = 14,
};

/* Return path (TC on the VM side): index of rt_verdicts. */
enum rt_reason {
	RT_NOT_EXPOSED = 0, /* source is not an exposed address: TC_ACT_OK */
	RT_OTHER = 1,       /* not IPv4/IPv6 or malformed: TC_ACT_OK */
	RT_TTL = 2,         /* TTL / hop limit <= 1: TC_ACT_OK */
	RT_NO_ROUTE = 3,    /* the FIB had no usable answer: TC_ACT_OK */
	RT_REDIRECT = 4,    /* bpf_redirect to the FIB's interface */
	RT_NEIGH = 5,       /* bpf_redirect_neigh (neighbour not resolved yet) */
	RT_BAD_HEADER = 6,  /* fails RFC 1812 5.2.2 / RFC 8200 checks: TC_ACT_OK */
	RT_NOT_LOCAL = 7,   /* a link-layer broadcast or multicast (RFC 1812 5.3.4): TC_ACT_OK */
	RT_OPTIONS = 8,     /* IPv4 options or IPv6 hop-by-hop header: TC_ACT_OK */
	RT_REASONS = 9,
};

/* What to do with traffic to an exposed address or prefix. */
struct exposure {
	__u8 dmac[6];  /* VM port MAC or OVN gateway port MAC */
	__u8 smac[6];  /* MAC of the target interface */
	__u16 vlan;    /* VLAN id on the target side; 0 = untagged */
	__u16 port;    /* slot in tx_ports */
	__u32 id;      /* index into exp_stats */
	__u32 flags;   /* reserved, 0 */
};

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* dp_config[0]: which optional lookups are on (saves a miss on each packet). */
struct dp_config {
	__u32 flags;
	__u32 pad;
};
/* exp4_slots: the IPv4 exact-match table the fast path reads first. An
 * open-addressing table in an array map (the verifier inlines array lookups):
 * the 16-byte slot holds the key and the whole forwarding decision, so a hit
 * costs one cache line. Each slot is two 8-byte words written with single
 * stores by exp4_write, the key word last. exp_v4 (hash) stays the complete
 * table. It is read after the slots when DP_CFG_EXP4_UPDATING is set (slots
 * being rewritten), or when DP_CFG_EXP4_SPILL is set and all EXP4_PROBES
 * slots from the key's home were taken (where an entry that did not fit
 * lives: an empty slot in the window proves the key is not there). */
#define EXP4_PROBES 16
#define EXP4_EMPTY 0x00000000u
#define EXP4_DELETED 0xffffffffu

struct exp4_slot {
	__u32 addr;   /* network order; 0: empty, 0xffffffff: deleted */
	__u8 dmac[6];
	__u16 vlan;
	__u8 port;
	__u8 id[3];   /* exposure id, 24 bits little-endian */
};

struct exp4_write {
	__u32 index;
	__u32 op;     /* 1: publish (w1, then w0), 2: clear (w0 only) */
	__u64 w0;
	__u64 w1;
};

#define EXP4_BATCH 256
struct exp4_batch {
	__u32 count;
	__u32 pad;
	struct exp4_write w[EXP4_BATCH];
};

/* exp6_slots: the same for IPv6 exact matches, 32-byte slots of four 8-byte
 * words: the address's first and last 8 bytes, then the decision (dmac and
 * VLAN; port and id). exp6_write stores w3, w2, w1, then w0 (the address's
 * first half) last; w0 = 0 is empty, all ones deleted, so an address whose
 * first 8 bytes are 0 or all ones (::/64, ffff:ffff:ffff:ffff::/64) is never
 * slotted (it lives in exp_v6 with DP_CFG_EXP6_SPILL). */
#define EXP6_PROBES 16
#define EXP6_EMPTY 0x0000000000000000ull
#define EXP6_DELETED 0xffffffffffffffffull

struct exp6_slot {
	__u8 addr[16];
	__u8 dmac[6];
	__u16 vlan;
	__u8 port;
	__u8 id[3];   /* exposure id, 24 bits little-endian */
	__u32 pad;
};

struct exp6_write {
	__u32 index;
	__u32 op;     /* 1: publish (w3, w2, w1, then w0), 2: clear (w0 only) */
	__u64 w[4];
};

#define EXP6_BATCH 128
struct exp6_batch {
	__u32 count;
	__u32 pad;
	struct exp6_write w[EXP6_BATCH];
};

/* per tx port: the target interface's MAC (the exposure's source MAC) and
 * MTU (0: not checked) */
struct port_info {
	__u8 smac[6];
	__u16 mtu;
};

/* l2_local: which link-layer destinations are this host's, per ingress
 * interface and VLAN: vid 0 for untagged (and priority-tagged, VID 0) frames,
 * 0x1000 | VID for one 802.1Q tag; 802.1ad and double-tagged frames never
 * match. Checked when DP_CFG_L2_CHECK is set. An open-addressing table in an
 * array map (inlined lookups; a hash map's lookup cost ~8 ns per forwarded
 * packet): an entry lives in one of the L2_PROBES slots from
 * l2_home(ifindex, vid); ifindex 0 is an empty slot (the probe stops there),
 * L2_DELETED a removed one (the probe goes on). Written by user space with
 * the MAC first and the ifindex last, so a packet sees a slot empty or whole. */
#define L2_SLOTS 1024
#define L2_PROBES 4
#define L2_DELETED 0xffffffffu
#define l2_home(ifindex, vid) (((ifindex) * 0x9e3779b1u ^ (__u32)(vid) * 0x85ebca6bu) >> 22)

struct l2_local {
	__u8 mac[6];
	__u16 vid;
	__u32 ifindex;
	__u32 pad;
};

#define DP_CFG_LPM_V4 (1u << 0)
#define DP_CFG_LPM_V6 (1u << 1)
#define DP_CFG_BLOCK_V4 (1u << 2)
#define DP_CFG_BLOCK_V6 (1u << 3)
#define DP_CFG_EXP4_SPILL (1u << 4)
#define DP_CFG_EXP4_UPDATING (1u << 5)
#define DP_CFG_EXP6_SPILL (1u << 6)
#define DP_CFG_EXP6_UPDATING (1u << 7)
#define DP_CFG_L2_CHECK (1u << 8)

#endif
