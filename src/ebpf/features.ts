// Feature probes: what this kernel actually loads and attaches, found by
// trying (tiny programs, maps, link creation), never by a version string.
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { AttachType, MapType, ProgType } from './constants.js';
import { errnoName, NotSupportedError } from './errors.js';
import { isMounted, mountPointOf } from './fs.js';
import { c, cstring, libbpf, ProgLoadOpts, structSize } from './native.js';

export interface Probe {
  supported: boolean;
  /** Why not (errno name or a missing kernel facility), or what was found. */
  detail: string;
}

export interface FeatureReport {
  kernel: {
    release: string;
    btf: boolean;
    lockdown: string | undefined;
    unprivilegedBpfDisabled: string | undefined;
    bpfStatsEnabled: boolean | undefined;
    jitEnabled: string | undefined;
  };
  libbpf: string;
  possibleCpus: number;
  capabilities: { effective: string[]; missing: string[] };
  filesystems: { bpffs: boolean; tracefs: boolean; securityfs: boolean; cgroup2: string | undefined };
  /** Hook families: program type loads and the attach path exists. */
  hooks: Record<HookName, Probe>;
  maps: Record<string, Probe>;
  helpers: Record<string, Probe>;
}

export type HookName =
  | 'xdp'
  | 'tc'
  | 'tcx'
  | 'tracepoint'
  | 'raw_tp'
  | 'tp_btf'
  | 'fentry'
  | 'lsm'
  | 'kprobe'
  | 'uprobe'
  | 'cgroup_sock_addr'
  | 'cgroup_skb'
  | 'perf_event';

const insn = (code: number, dst: number, src: number, off: number, imm: number): Buffer => {
  const b = Buffer.alloc(8);
  b[0] = code;
  b[1] = (src << 4) | dst;
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
};
/** r0 = imm; exit */
const returnImm = (imm: number): Buffer => Buffer.concat([insn(0xb7, 0, 0, 0, imm), insn(0x95, 0, 0, 0, 0)]);

function loadOpts(expectedAttachType: number, attachBtfId: number): Record<string, unknown> {
  return {
    sz: structSize(ProgLoadOpts),
    attempts: 0,
    expected_attach_type: expectedAttachType,
    prog_btf_fd: 0,
    prog_flags: 0,
    prog_ifindex: 0,
    kern_version: 0,
    attach_btf_id: attachBtfId,
    attach_prog_fd: 0,
    attach_btf_obj_fd: 0,
    fd_array: null,
    func_info: null,
    func_info_cnt: 0,
    func_info_rec_size: 0,
    line_info: null,
    line_info_cnt: 0,
    line_info_rec_size: 0,
    log_level: 0,
    log_size: 0,
    log_buf: null,
  };
}

/** Load a two-instruction program of a type; returns its fd (caller closes) or -errno. */
export function loadTrivialProgram(type: number, o: { expectedAttachType?: number; btfTarget?: string; ret?: number } = {}): number {
  let btfId = 0;
  if (o.btfTarget) {
    btfId = libbpf.libbpf_find_vmlinux_btf_id(o.btfTarget, o.expectedAttachType ?? 0) as number;
    if (btfId < 0) return btfId;
  }
  const code = returnImm(o.ret ?? 0);
  return libbpf.bpf_prog_load(type, 'stackbpf_probe', 'GPL', code, code.length / 8, loadOpts(o.expectedAttachType ?? 0, btfId)) as number;
}

function probeLoad(type: number, o: Parameters<typeof loadTrivialProgram>[1] = {}): Probe {
  const fd = loadTrivialProgram(type, o);
  if (fd >= 0) {
    c.close(fd);
    return { supported: true, detail: 'loads' };
  }
  return { supported: false, detail: `load refused: ${errnoName(-fd)}` };
}

const pmu = (name: string): boolean => existsSync(`/sys/bus/event_source/devices/${name}/type`);

function readTrim(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const CAPS: Record<number, string> = { 12: 'CAP_NET_ADMIN', 21: 'CAP_SYS_ADMIN', 24: 'CAP_SYS_RESOURCE', 38: 'CAP_PERFMON', 39: 'CAP_BPF' };
const NEEDED_CAPS = ['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN'];

export function capabilities(): { effective: string[]; missing: string[] } {
  const status = readTrim('/proc/self/status') ?? '';
  const m = status.match(/^CapEff:\s*([0-9a-f]+)/m);
  const eff = m ? BigInt(`0x${m[1]}`) : 0n;
  const effective = Object.entries(CAPS)
    .filter(([bit]) => (eff >> BigInt(bit)) & 1n)
    .map(([, name]) => name);
  // CAP_SYS_ADMIN covers BPF and PERFMON on every kernel
  const missing = NEEDED_CAPS.filter((cap) => !effective.includes(cap) && !(cap !== 'CAP_NET_ADMIN' && effective.includes('CAP_SYS_ADMIN')));
  return { effective, missing };
}

let cached: FeatureReport | undefined;

/** Probe everything (cached for the process; `fresh` re-probes). */
export function probeFeatures(fresh = false): FeatureReport {
  if (cached && !fresh) return cached;
  const hooks = {} as Record<HookName, Probe>;
  hooks.xdp = probeLoad(ProgType.xdp, { ret: 2 });
  hooks.tc = probeLoad(ProgType.sched_cls);
  hooks.tcx = probeTcxLink();
  const tracefs = isMounted('tracefs') || existsSync('/sys/kernel/debug/tracing/events');
  const tp = probeLoad(ProgType.tracepoint);
  hooks.tracepoint = tp.supported
    ? { supported: true, detail: tracefs ? 'loads; tracefs mounted' : 'loads; tracefs must be mounted (done on demand as root)' }
    : tp;
  hooks.raw_tp = probeLoad(ProgType.raw_tracepoint);
  hooks.tp_btf = probeLoad(ProgType.tracing, { expectedAttachType: AttachType.trace_raw_tp, btfTarget: 'sched_process_exec' });
  hooks.fentry = probeLoad(ProgType.tracing, { expectedAttachType: AttachType.trace_fentry, btfTarget: 'bpf_fentry_test1' });
  const lsm = probeLoad(ProgType.lsm, { expectedAttachType: AttachType.lsm_mac, btfTarget: 'file_open' });
  const lsmList = readTrim('/sys/kernel/security/lsm');
  hooks.lsm =
    lsm.supported && lsmList !== undefined && !lsmList.split(',').includes('bpf')
      ? { supported: false, detail: `loads, but "bpf" is not in the active LSMs (${lsmList})` }
      : lsm;
  const kprobeLoad = probeLoad(ProgType.kprobe);
  hooks.kprobe = !pmu('kprobe') ? { supported: false, detail: 'no kprobe PMU (kernel built without CONFIG_KPROBES?)' } : kprobeLoad;
  hooks.uprobe = !pmu('uprobe') ? { supported: false, detail: 'no uprobe PMU (CONFIG_UPROBES off?)' } : kprobeLoad;
  hooks.cgroup_sock_addr = probeLoad(ProgType.cgroup_sock_addr, { expectedAttachType: AttachType.cgroup_inet4_connect, ret: 1 });
  hooks.cgroup_skb = probeLoad(ProgType.cgroup_skb, { ret: 1 });
  hooks.perf_event = probeLoad(ProgType.perf_event);

  const maps: Record<string, Probe> = {};
  for (const name of [
    'hash',
    'array',
    'percpu_hash',
    'percpu_array',
    'lru_hash',
    'lpm_trie',
    'ringbuf',
    'devmap',
    'devmap_hash',
    'cpumap',
    'xskmap',
    'prog_array',
    'perf_event_array',
    'bloom_filter',
  ] as const) {
    const r = libbpf.libbpf_probe_bpf_map_type(MapType[name], null) as number;
    maps[name] = r === 1 ? { supported: true, detail: 'creates' } : { supported: false, detail: r < 0 ? errnoName(-r) : 'refused' };
  }

  const helpers: Record<string, Probe> = {};
  const helper = (label: string, progType: number, id: number): void => {
    const r = libbpf.libbpf_probe_bpf_helper(progType, id, null) as number;
    helpers[label] = r === 1 ? { supported: true, detail: 'available' } : { supported: false, detail: r < 0 ? errnoName(-r) : 'not available' };
  };
  helper('xdp:bpf_redirect_map', ProgType.xdp, 51);
  helper('xdp:bpf_fib_lookup', ProgType.xdp, 69);
  helper('tc:bpf_redirect_neigh', ProgType.sched_cls, 152);
  helper('tc:bpf_fib_lookup', ProgType.sched_cls, 69);
  helper('tracepoint:bpf_send_signal', ProgType.tracepoint, 109);
  helper('tracepoint:bpf_ringbuf_output', ProgType.tracepoint, 130);
  helper('tracepoint:bpf_get_current_task_btf', ProgType.tracepoint, 158);

  const stats = readTrim('/proc/sys/kernel/bpf_stats_enabled');
  cached = {
    kernel: {
      release: release(),
      btf: existsSync('/sys/kernel/btf/vmlinux'),
      lockdown: readTrim('/sys/kernel/security/lockdown')?.match(/\[(\w+)\]/)?.[1],
      unprivilegedBpfDisabled: readTrim('/proc/sys/kernel/unprivileged_bpf_disabled'),
      bpfStatsEnabled: stats === undefined ? undefined : stats === '1',
      jitEnabled: readTrim('/proc/sys/net/core/bpf_jit_enable'),
    },
    libbpf: cstring(libbpf.libbpf_version_string()),
    possibleCpus: libbpf.libbpf_num_possible_cpus() as number,
    capabilities: capabilities(),
    filesystems: {
      bpffs: isMounted('bpf'),
      tracefs,
      securityfs: isMounted('securityfs'),
      cgroup2: cgroup2Path(),
    },
    hooks,
    maps,
    helpers,
  };
  return cached;
}

function probeTcxLink(): Probe {
  const fd = loadTrivialProgram(ProgType.sched_cls);
  if (fd < 0) return { supported: false, detail: `sched_cls load refused: ${errnoName(-fd)}` };
  try {
    // ifindex that cannot exist: ENODEV means the kernel knows tcx, EINVAL that it does not
    const r = libbpf.bpf_link_create(fd, 0x7fffffff, AttachType.tcx_ingress, null) as number;
    if (r >= 0) {
      c.close(r);
      return { supported: true, detail: 'links' };
    }
    return r === -19 ? { supported: true, detail: 'links (BPF_TCX_INGRESS known)' } : { supported: false, detail: `link create: ${errnoName(-r)}` };
  } finally {
    c.close(fd);
  }
}

/** Where cgroup v2 is mounted, if anywhere. */
export function cgroup2Path(): string | undefined {
  for (const candidate of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    if (mountPointOf(candidate, 'cgroup2') === candidate) return candidate;
  }
  const mounts = readTrim('/proc/self/mounts') ?? '';
  const line = mounts.split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  return line?.split(' ')[1];
}

/** Throw NotSupportedError unless the hook family works here. */
export function requireHook(name: HookName): void {
  const p = probeFeatures().hooks[name];
  if (!p.supported) throw new NotSupportedError(name, p.detail);
}

/** One-line verdicts for an operator: what will and will not work. */
export function summarize(r: FeatureReport): { works: string[]; fails: string[] } {
  const works: string[] = [];
  const fails: string[] = [];
  for (const [name, p] of Object.entries(r.hooks)) (p.supported ? works : fails).push(p.supported ? name : `${name} (${p.detail})`);
  return { works, fails };
}
