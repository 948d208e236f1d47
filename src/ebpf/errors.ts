import { constants as osConstants } from 'node:os';

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

/** The symbolic name of an errno value (EPERM, ENOENT, ...), or `errno N`. */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

const advice: Record<string, string> = {
  EPERM: 'run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (and check lockdown and kernel.unprivileged_bpf_disabled)',
  EACCES: 'the verifier or the kernel refused access: read the verifier log, or run with more capabilities',
  ENOENT: 'the object, pin or kernel entity does not exist: check the name or path',
  EEXIST: 'it already exists: use another name, or update instead of create',
  E2BIG: 'too big for the kernel: reduce the size or the entry count',
  ENOSPC: 'the map is full or a buffer is too small: raise max_entries or the buffer size',
  EINVAL: 'the kernel rejected an argument: check sizes, flags and attach type',
  EOPNOTSUPP: 'this kernel or driver does not support the operation: run `stackbpf doctor`',
  ENOTSUPP: 'this kernel or driver does not support the operation: run `stackbpf doctor`',
  EBUSY: 'already attached or in use: detach the existing program first',
  ENODEV: 'no such device: check the interface name and the network namespace',
  ENOMEM: 'out of memory or locked-memory limit: raise RLIMIT_MEMLOCK or free memory',
};

/** Extra line of advice for an errno, so each error says what to do. */
export function adviceFor(errno: number): string | undefined {
  return advice[errnoName(errno)];
}

export interface BpfErrorDetails {
  /** What was being done: `load object`, `map update`, `attach xdp`... */
  op: string;
  /** Positive errno, when the kernel or libbpf gave one. */
  errno?: number;
  /** The program, map or interface involved. */
  subject?: string;
  /** The verifier log (only its last lines are kept in the message). */
  verifierLog?: string;
  /** libbpf's own diagnostics collected during the call. */
  libbpfLog?: string[];
  hint?: string;
}

/** Last `n` non-empty lines of a verifier log: the verifier's reason is at the end. */
export function logTail(log: string, n = 12): string {
  const lines = log.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-n).join('\n');
}

/** An operation on a BPF object, program, map or link failed. */
export class BpfError extends Error {
  readonly op: string;
  readonly errno: number | undefined;
  readonly code: string | undefined;
  readonly subject: string | undefined;
  readonly verifierLog: string | undefined;
  readonly libbpfLog: string[];

  constructor(message: string, details: BpfErrorDetails) {
    const parts = [message];
    if (details.errno !== undefined) parts[0] += ` (${errnoName(details.errno)})`;
    const hint = details.hint ?? (details.errno !== undefined ? adviceFor(details.errno) : undefined);
    if (hint) parts.push(`what to do: ${hint}`);
    if (details.verifierLog) parts.push(`verifier log (last lines):\n${logTail(details.verifierLog)}`);
    else if (details.libbpfLog && details.libbpfLog.length > 0) {
      parts.push(`libbpf said:\n${details.libbpfLog.slice(-8).join('\n')}`);
    }
    super(parts.join('\n'));
    this.name = 'BpfError';
    this.op = details.op;
    this.errno = details.errno;
    this.code = details.errno !== undefined ? errnoName(details.errno) : undefined;
    this.subject = details.subject;
    this.verifierLog = details.verifierLog;
    this.libbpfLog = details.libbpfLog ?? [];
  }
}

/** The running kernel lacks a feature; decided by a probe, never a version string. */
export class NotSupportedError extends Error {
  readonly feature: string;
  constructor(feature: string, why: string) {
    super(`${feature} is not supported here: ${why}. Run \`stackbpf doctor\` to see what this kernel allows.`);
    this.name = 'NotSupportedError';
    this.feature = feature;
  }
}

/** Throw a BpfError when a libbpf int return is negative (libbpf 1.x returns -errno). */
export function check(ret: number, message: string, details: Omit<BpfErrorDetails, 'errno'>): number {
  if (ret < 0) throw new BpfError(message, { ...details, errno: -ret });
  return ret;
}
