// TypeScript mirror of bpf/include/dataplane.h (checked against the object's BTF).
import { bytes, ipv4, ipv6, mac, struct, u16, u32, u64, u8 } from '../ebpf/index.js';

export const ExposureValue = struct('exposure', {
  dmac: mac,
  smac: mac,
  vlan: u16,
  port: u16,
  id: u32,
  flags: u32,
});
export type ExposureValue = ReturnType<typeof ExposureValue.decode>;

export const LpmV4 = struct('lpm_v4', { prefixlen: u32, addr: ipv4 });
export const LpmV6 = struct('lpm_v6', { prefixlen: u32, addr: ipv6 });
export const Counter = struct('counter', { packets: u64, bytes: u64 });
export const DpConfig = struct('dp_config', { flags: u32, pad: u32 });
/** Raw 16-byte IPv6 key of exp_v6 (struct in6_addr). */
export const In6Addr = ipv6;
export const RawMac = bytes(6);

export const DP_MAX_PORTS = 256;

export const DpReason = {
  other: 0,
  malformed: 1,
  blocked: 2,
  ndp: 3,
  miss: 4,
  ttl: 5,
  no_port: 6,
  redirect: 7,
  error: 8,
  bad_header: 9,
  martian: 10,
  not_local: 11,
  options: 12,
  too_big: 13,
} as const;
export type DpReasonName = keyof typeof DpReason;
export const DP_REASONS = 14;

export const RtReason = { not_exposed: 0, other: 1, ttl: 2, no_route: 3, redirect: 4, neigh: 5, bad_header: 6, not_local: 7, options: 8 } as const;
export type RtReasonName = keyof typeof RtReason;
export const RT_REASONS = 9;

export const DpConfigFlag = {
  lpmV4: 1,
  lpmV6: 2,
  blockV4: 4,
  blockV6: 8,
  exp4Spill: 16,
  exp4Updating: 32,
  exp6Spill: 64,
  exp6Updating: 128,
  l2Check: 256,
} as const;

export const Exp4Slot = struct('exp4_slot', {
  addr: ipv4,
  dmac: mac,
  vlan: u16,
  port: u8,
  id: bytes(3),
});
export const Exp6Slot = struct('exp6_slot', {
  addr: ipv6,
  dmac: mac,
  vlan: u16,
  port: u8,
  id: bytes(3),
  pad: u32,
});
export const PortInfo = struct('port_info', { smac: mac, mtu: u16 });
export const L2Local = struct('l2_local', { mac, vid: u16, ifindex: u32, pad: u32 });
export const L2_SLOTS = 1024;
export const L2_PROBES = 4;
export const L2_DELETED = 0xffffffff;
/** l2_home() of bpf/include/dataplane.h: the first slot of (ifindex, vid). */
export const l2Home = (ifindex: number, vid: number): number => ((Math.imul(ifindex, 0x9e3779b1) ^ Math.imul(vid, 0x85ebca6b)) >>> 22) & (L2_SLOTS - 1);
/** l2_key.vid of a frame with one tag (VID 0, priority-tagged, counts as untagged). */
export const l2Vid = (vid: number): number => (vid & 0xfff ? 0x1000 | (vid & 0xfff) : 0);
export const EXP4_PROBES = 16;
export const EXP4_BATCH = 256;
export const EXP6_PROBES = 16;
export const EXP6_BATCH = 128;

export const XdpAction = { aborted: 0, drop: 1, pass: 2, tx: 3, redirect: 4 } as const;
