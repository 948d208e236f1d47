// `stackbpf doctor`: what this machine's kernel allows, and what stackbpf
// can therefore do here.
import { ensureMounted, type FeatureReport, type KernelFsName, type MountResult, probeFeatures, summarize } from '../ebpf/index.js';

export interface DoctorResult {
  report: FeatureReport;
  mounts: (MountResult | { name: KernelFsName; error: string })[];
  /** What stackbpf itself needs and this machine lacks. */
  blockers: string[];
  works: string[];
  fails: string[];
}

/** Hooks and maps the agent's own programs need. */
const REQUIRED_HOOKS = ['xdp', 'tc', 'tracepoint', 'raw_tp'] as const;
const REQUIRED_MAPS = ['hash', 'array', 'percpu_array', 'lpm_trie', 'ringbuf', 'devmap'] as const;

export function runDoctor(opts: { mount: boolean }): DoctorResult {
  const mounts: DoctorResult['mounts'] = [];
  if (opts.mount && process.getuid?.() === 0) {
    for (const name of ['bpf', 'tracefs', 'securityfs'] as const) {
      try {
        mounts.push(ensureMounted(name));
      } catch (err) {
        mounts.push({ name, error: (err as Error).message.split('\n')[0] ?? '' });
      }
    }
  }
  const report = probeFeatures(true);
  const blockers: string[] = [];
  if (!report.kernel.btf) blockers.push('no kernel BTF (/sys/kernel/btf/vmlinux): CO-RE programs cannot load');
  if (report.capabilities.missing.length > 0) blockers.push(`missing capabilities: ${report.capabilities.missing.join(', ')}`);
  for (const h of REQUIRED_HOOKS) if (!report.hooks[h].supported) blockers.push(`${h}: ${report.hooks[h].detail}`);
  for (const m of REQUIRED_MAPS) if (!report.maps[m]?.supported) blockers.push(`${m} maps: ${report.maps[m]?.detail}`);
  const { works, fails } = summarize(report);
  return { report, mounts, blockers, works, fails };
}

const yesNo = (b: boolean | undefined): string => (b === undefined ? 'unknown' : b ? 'yes' : 'no');

export function formatDoctor(r: DoctorResult): string {
  const k = r.report.kernel;
  const out: string[] = [];
  const row = (label: string, text: string): void => {
    out.push(`${label.padEnd(12)}${text}`);
  };
  row(
    'kernel',
    `${k.release}, BTF ${yesNo(k.btf)}, lockdown ${k.lockdown ?? 'unknown (securityfs not mounted)'}, JIT ${k.jitEnabled === '1' ? 'on' : (k.jitEnabled ?? 'unknown')}`,
  );
  row('libbpf', `${r.report.libbpf} (system libbpf.so.1)`);
  row('cpus', `${r.report.possibleCpus} possible`);
  const caps = r.report.capabilities;
  row('caps', `${caps.effective.join(' ') || 'none'}${caps.missing.length ? `; missing ${caps.missing.join(' ')}` : ''}`);
  for (const m of r.mounts) {
    if ('error' in m) row(m.name, `NOT mounted: ${m.error}`);
    else row(m.name, m.mountedNow ? `was not mounted: mounted now at ${m.path}` : `mounted at ${m.path}`);
  }
  const fs = r.report.filesystems;
  if (r.mounts.length === 0) {
    row('bpffs', fs.bpffs ? 'mounted' : 'not mounted (run doctor as root to mount it)');
    row('tracefs', fs.tracefs ? 'mounted' : 'not mounted (run doctor as root to mount it)');
  }
  row('cgroup2', fs.cgroup2 ?? 'not mounted');
  row('bpf stats', k.bpfStatsEnabled ? 'on' : 'off (the agent enables them while it runs)');
  out.push('hooks');
  for (const [name, p] of Object.entries(r.report.hooks)) out.push(`  ${name.padEnd(17)}${p.supported ? 'yes' : 'NO '}  ${p.detail}`);
  const maps = Object.entries(r.report.maps);
  const mapNo = maps.filter(([, p]) => !p.supported);
  out.push(
    `maps        ${maps
      .filter(([, p]) => p.supported)
      .map(([n]) => n)
      .join(' ')}${mapNo.length ? `; NOT: ${mapNo.map(([n, p]) => `${n} (${p.detail})`).join(', ')}` : ''}`,
  );
  const helpers = Object.entries(r.report.helpers);
  const helperNo = helpers.filter(([, p]) => !p.supported);
  out.push(`helpers     ${helperNo.length ? `missing: ${helperNo.map(([n]) => n).join(', ')}` : `all ${helpers.length} probed helpers available`}`);
  out.push('');
  out.push(`will work: ${r.works.join(', ')}; will not: ${r.fails.join(', ') || 'nothing'}`);
  out.push(r.blockers.length ? `stackbpf cannot run here: ${r.blockers.join('; ')}` : 'stackbpf can run here.');
  return out.join('\n');
}
