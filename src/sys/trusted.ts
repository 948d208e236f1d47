// Files that steer what the agent does as root (service profiles and their
// kernel enforcement, service rules, API tokens) are read only when nobody
// but root could have written them: the file and the directory it sits in
// owned by root and writable by no group or other user. Anything else is
// refused with the path and the reason, so a local user cannot plant rules.
import { statSync } from 'node:fs';
import { dirname } from 'node:path';

export class UntrustedFileError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'UntrustedFileError';
  }
}

const octal = (m: number): string => (m & 0o7777).toString(8).padStart(4, '0');

/** Throws UntrustedFileError unless `file` and its directory could only have been written by root. */
export function assertRootOnlyWritable(file: string, what: string): void {
  const st = statSync(file);
  if (!st.isFile()) throw new UntrustedFileError(file, `${what} is not a regular file`);
  if (st.uid !== 0) throw new UntrustedFileError(file, `${what} must be owned by root (owner uid ${st.uid}): refused`);
  if (st.mode & 0o022) throw new UntrustedFileError(file, `${what} must not be writable by group or others (mode ${octal(st.mode)}; chmod go-w): refused`);
  const dir = dirname(file);
  const d = statSync(dir);
  if (d.uid !== 0) throw new UntrustedFileError(file, `the directory ${dir} must be owned by root (owner uid ${d.uid}): refused`);
  if (d.mode & 0o022) throw new UntrustedFileError(file, `the directory ${dir} must not be writable by group or others (mode ${octal(d.mode)}): refused`);
}
