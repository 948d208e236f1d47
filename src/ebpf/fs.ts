// Kernel file systems the runtime depends on: bpffs for pins, tracefs for
// classic tracepoints and securityfs (BPF LSM, lockdown). A fresh machine may
// have none mounted; as root we mount what is missing and say so.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { BpfError } from './errors.js';
import { c, errno } from './native.js';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/stackbpf';

export const KERNEL_FS = {
  bpf: { path: '/sys/fs/bpf', fstype: 'bpf' },
  tracefs: { path: '/sys/kernel/tracing', fstype: 'tracefs' },
  securityfs: { path: '/sys/kernel/security', fstype: 'securityfs' },
} as const;
export type KernelFsName = keyof typeof KERNEL_FS;

interface MountEntry {
  target: string;
  fstype: string;
}

function mounts(): MountEntry[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(' ');
      return { target: (f[1] ?? '').replace(/\\040/g, ' '), fstype: f[2] ?? '' };
    });
}

/** The mount point of a file system of `fstype` that contains `path`, if any. */
export function mountPointOf(path: string, fstype: string): string | undefined {
  let best: string | undefined;
  for (const m of mounts()) {
    if (m.fstype !== fstype) continue;
    if (path === m.target || path.startsWith(m.target.endsWith('/') ? m.target : `${m.target}/`)) {
      if (!best || m.target.length > best.length) best = m.target;
    }
  }
  return best;
}

export function isMounted(name: KernelFsName): boolean {
  const fs = KERNEL_FS[name];
  return mounts().some((m) => m.target === fs.path && m.fstype === fs.fstype);
}

export interface MountResult {
  name: KernelFsName;
  path: string;
  /** True when this call mounted it. */
  mountedNow: boolean;
}

/** Mount a kernel file system at its usual place when it is not there yet. */
export function ensureMounted(name: KernelFsName): MountResult {
  const fs = KERNEL_FS[name];
  if (isMounted(name)) return { name, path: fs.path, mountedNow: false };
  if (!existsSync(fs.path)) mkdirSync(fs.path, { recursive: true });
  const ret = c.mount(fs.fstype, fs.path, fs.fstype, 0, null) as number;
  if (ret !== 0) {
    const e = errno();
    throw new BpfError(`cannot mount ${fs.fstype} at ${fs.path}`, {
      op: 'mount',
      errno: e,
      subject: fs.path,
      hint: `mount it as root: mount -t ${fs.fstype} ${fs.fstype} ${fs.path}`,
    });
  }
  return { name, path: fs.path, mountedNow: true };
}

/**
 * Make sure `dir` exists on a bpffs (mounting /sys/fs/bpf if needed) so that
 * programs, links and maps can be pinned there.
 */
export function ensurePinDir(dir: string): MountResult | undefined {
  let mounted: MountResult | undefined;
  if (!mountPointOf(dir, 'bpf')) {
    if (!dir.startsWith(`${KERNEL_FS.bpf.path}/`) && dir !== KERNEL_FS.bpf.path) {
      throw new BpfError(`pin directory ${dir} is not on a BPF file system`, {
        op: 'pin',
        subject: dir,
        hint: `mount bpffs there (mount -t bpf bpf ${dirname(dir)}) or use a directory under /sys/fs/bpf`,
      });
    }
    mounted = ensureMounted('bpf');
  }
  mkdirSync(dir, { recursive: true });
  return mounted;
}
