// TypeScript mirror of bpf/include/accounting.h and the records of
// bpf/accounting.bpf.c (checked against the object's BTF by the tests).
import { array, bytes, cstring, struct, u32, u64n as u64 } from '../ebpf/index.js';

export const ACCT_CLASSES = 5;
export const ACCT_MAX_RULES = 32;
/** Where traffic goes, as the tap counters split it (index = enum acct_class). */
export const CLASS_NAMES = ['north_south', 'east_west', 'node', 'non_ip', 'before'] as const;
export type TrafficClass = (typeof CLASS_NAMES)[number];
export const AcctClass = { north_south: 0, east_west: 1, node: 2, non_ip: 3, before: 4 } as const;

export const AcctCount = struct('acct_count', { packets: u64, bytes: u64 });
/** A tap's slot: its namespace cookie and ifindex, then [dir][class], dir 0 = from the guest (outgoing), 1 = to the guest (incoming) */
export const AcctTap = struct('acct_tap', { netns: u64, ifindex: u32, pad: u32, c: array(array(AcctCount, ACCT_CLASSES), 2) });
export type AcctTap = ReturnType<typeof AcctTap.decode>;
export const ACCT_TOMBSTONE = 0xffffffff;
export const ACCT_PROBES = 4;
/** the kernel's tap_home(): where a tap's probing starts */
export const tapHome = (netns: number, ifindex: number): number => ((Math.imul(ifindex, 2654435761) >>> 0) ^ (Math.imul(netns >>> 0, 40503) >>> 0)) >>> 0;

export const AcctRule = struct('acct_rule', { addr: array(u32, 4), mask: array(u32, 4), klass: u32, family: u32 });
export type AcctRule = ReturnType<typeof AcctRule.decode>;
export const AcctRule4 = struct('acct_rule4', { addr: u32, mask: u32, klass: u32 });
export const AcctRules = struct('acct_rules', { count: u32, count4: u32, r: array(AcctRule, ACCT_MAX_RULES), r4: array(AcctRule4, ACCT_MAX_RULES) });

export const AcctTask = struct('acct_task', { kind: u32, parent: u32 });
export const WatchKind = { instance: 1, service: 2 } as const;

export const AcctTaskRec = struct('acct_task_rec', {
  tgid: u32,
  tid: u32,
  run_ns: u64,
  wait_ns: u64,
  slices: u64,
  dead_run_ns: u64,
  rss_pages: u64,
  comm: cstring(16),
});
export type AcctTaskRec = ReturnType<typeof AcctTaskRec.decode>;

export const DiskKey = struct('acct_disk_key', { tgid: u32, dev: u32, op: u32, pad: u32 });
export type DiskKey = ReturnType<typeof DiskKey.decode>;
export const DiskValue = struct('acct_disk', { requests: u64, bytes: u64, latency_ns: u64 });
export type DiskValue = ReturnType<typeof DiskValue.decode>;
export const RawBytes = bytes;
export const AcctCpu = struct('acct_cpu', { run_ns: u64, wait_ns: u64, slices: u64 });
export type AcctCpu = ReturnType<typeof AcctCpu.decode>;
