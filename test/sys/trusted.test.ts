// Profiles (what the kernel kills on) and service rules (whose behaviour is
// learned and enforced) are read only from files nobody but root could write.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ProfileSet } from '../../src/analytics/drift.js';
import { assertRootOnlyWritable } from '../../src/sys/trusted.js';
import { ServiceIdentifier } from '../../src/trace/identity.js';

const skip = process.getuid?.() !== 0 ? 'needs root (files owned by root and by others)' : false;
const NOBODY = 65534;

describe('files that steer the agent', { skip }, () => {
  test('root-owned and written by root alone: read; otherwise refused with the path and the reason', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-trusted-'));
    try {
      const f = join(dir, 'rules.yaml');
      writeFileSync(f, 'rules: []\n', { mode: 0o644 });
      assertRootOnlyWritable(f, 'the file');
      chmodSync(f, 0o664);
      assert.throws(
        () => assertRootOnlyWritable(f, 'the file'),
        new RegExp(`^UntrustedFileError: ${f}: the file must not be writable by group or others \\(mode 0664`),
      );
      chmodSync(f, 0o644);
      chownSync(f, NOBODY, NOBODY);
      assert.throws(() => assertRootOnlyWritable(f, 'the file'), /must be owned by root \(owner uid 65534\)/);
      chownSync(f, 0, 0);
      chmodSync(dir, 0o777);
      assert.throws(() => assertRootOnlyWritable(f, 'the file'), new RegExp(`the directory ${dir} must not be writable by group or others`));
      chmodSync(dir, 0o700);
      // the service rules file
      chmodSync(f, 0o666);
      assert.throws(() => ServiceIdentifier.fromFile(f), new RegExp(`^RuleError: ${f}: the service rules file must not be writable by group or others`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a profile another user could have written is refused and named; the others load', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbt-profiles-'));
    try {
      mkdirSync(join(dir, 'p'));
      const yaml = (service: string) =>
        `service: ${service}\nmode: enforce\nexec: [/usr/bin/true]\nfiles_read: []\nfiles_write: []\npeers: []\napi: []\nsql: []\n`;
      writeFileSync(join(dir, 'p', 'keystone.yaml'), yaml('keystone'), { mode: 0o600 });
      writeFileSync(join(dir, 'p', 'neutron-server.yaml'), yaml('neutron-server'), { mode: 0o600 });
      chownSync(join(dir, 'p', 'neutron-server.yaml'), NOBODY, NOBODY);
      const set = new ProfileSet(join(dir, 'p'));
      const r = set.load();
      assert.deepEqual(r.loaded, ['keystone']);
      assert.equal(r.errors.length, 1);
      assert.match(r.errors[0] as string, /neutron-server\.yaml: a service profile must be owned by root \(owner uid 65534\): refused/);
      assert.equal(set.get('neutron-server'), undefined, 'nothing of it is enforced');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
