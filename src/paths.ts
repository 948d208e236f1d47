// Where the package's own files are, wherever it is installed.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bpf'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('cannot find the stackbpf package root (package.json next to bpf/)');
}

export const packageRoot = findRoot();

/** A compiled BPF object shipped with the package, e.g. objectPath('test/maps'). */
export function objectPath(name: string): string {
  return join(packageRoot, 'bpf', 'build', `${name}.o`);
}
