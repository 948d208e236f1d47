// Shared helpers for kernel tests: why to skip, unique names, namespaces,
// bpffs pin directories, and commands. Everything created is cleaned up by
// the caller's `after` / finally, even when the test fails.
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { ensureMounted } from '../../src/ebpf/index.js';
import { loadTrivialProgram } from '../../src/ebpf/features.js';
import { ProgType } from '../../src/ebpf/constants.js';
import { errnoName } from '../../src/ebpf/errors.js';
import { c } from '../../src/ebpf/native.js';

const run = promisify(execFile);

function reason(): string | false {
  if (process.platform !== 'linux') return 'kernel tests need Linux';
  if (process.getuid?.() !== 0) return 'kernel tests need root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)';
  const fd = loadTrivialProgram(ProgType.xdp, { ret: 2 });
  if (fd < 0) return `this process cannot load BPF programs (${errnoName(-fd)})`;
  c.close(fd);
  return false;
}

/** false when kernel tests can run; otherwise the reason, printed once. */
export const skipKernel: string | false = reason();
if (skipKernel) process.stdout.write(`# SKIP kernel tests: ${skipKernel}\n`);
else {
  ensureMounted('bpf');
  ensureMounted('tracefs');
}

let counter = 0;
/** A name unique to this process and call, at most `max` characters (interface names: 15). */
export function unique(prefix: string, max = 15): string {
  const id = `${process.pid.toString(36)}${(counter++).toString(36)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`;
  return `${prefix.slice(0, Math.max(1, max - id.length - 1))}-${id}`.slice(0, max);
}

export async function sh(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: opts.timeoutMs ?? 30_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** A network namespace this test owns. */
export class Netns {
  private constructor(readonly name: string) {}
  static async create(prefix = 'sbt'): Promise<Netns> {
    const name = unique(prefix, 24);
    await sh('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }
  exec(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }
  async delete(): Promise<void> {
    await sh('ip', ['netns', 'delete', this.name]).catch(() => undefined);
  }
}

/** Two namespaces joined by a veth pair with documentation-range addresses (RFC 5737). */
export async function vethPair(): Promise<{ a: Netns; b: Netns; ifA: string; ifB: string; ipA: string; ipB: string; cleanup(): Promise<void> }> {
  const a = await Netns.create('sba');
  const b = await Netns.create('sbb');
  const ifA = unique('va');
  const ifB = unique('vb');
  const cleanup = async (): Promise<void> => {
    await a.delete();
    await b.delete();
  };
  try {
    await sh('ip', ['link', 'add', ifA, 'netns', a.name, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
    const ipA = '192.0.2.1';
    const ipB = '192.0.2.2';
    await a.exec('ip', ['addr', 'add', `${ipA}/24`, 'dev', ifA]);
    await b.exec('ip', ['addr', 'add', `${ipB}/24`, 'dev', ifB]);
    await a.exec('ip', ['link', 'set', ifA, 'up']);
    await b.exec('ip', ['link', 'set', ifB, 'up']);
    return { a, b, ifA, ifB, ipA, ipB, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** A fresh directory on bpffs for this test's pins; remove() deletes it and all pins. */
export function pinDir(): { dir: string; remove(): void } {
  const dir = `/sys/fs/bpf/${unique('stackbpf-test', 40)}`;
  return {
    dir,
    remove() {
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One namespace holding veth pairs (both ends inside it), for tests that need real ifindexes. */
export async function nodeNamespace(pairs: [string, string][]): Promise<Netns> {
  const ns = await Netns.create('sbn');
  try {
    for (const [a, b] of pairs) {
      await ns.exec('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
      await ns.exec('ip', ['link', 'set', a, 'up']);
      await ns.exec('ip', ['link', 'set', b, 'up']);
    }
    return ns;
  } catch (err) {
    await ns.delete();
    throw err;
  }
}
