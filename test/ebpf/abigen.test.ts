// The kernel ABI's TypeScript mirror is generated from the objects' BTF
// (npm run gen:abi): this fails, naming the file, when a header changed and
// the generated file was not regenerated, and when the generator meets what it
// cannot express.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BpfObject, generateAbi } from '../../src/ebpf/index.js';
import { objectPath, packageRoot } from '../../src/paths.js';
import { TRACE_ABI } from '../../src/trace/abi.spec.js';
import { checkLayouts, LayoutError } from '../../src/trace/records.js';

describe('generated kernel ABI', () => {
  test('src/trace/abi.generated.ts is what bpf/build/trace.o says', () => {
    const obj = BpfObject.open(objectPath('trace'));
    try {
      const fresh = generateAbi(obj.types, TRACE_ABI);
      const norm = (s: string) => s.replace(/\s+/g, '');
      assert.equal(
        norm(readFileSync(join(packageRoot, 'src/trace/abi.generated.ts'), 'utf8')),
        norm(fresh),
        'src/trace/abi.generated.ts is stale: run npm run gen:abi',
      );
      checkLayouts(obj.types);
    } finally {
      obj.close();
    }
  });

  test('a struct or enum the object lacks is named', () => {
    const obj = BpfObject.open(objectPath('trace'));
    try {
      assert.throws(() => generateAbi(obj.types, { origin: 'x', structs: ['no_such_struct'], enums: [] }), /struct no_such_struct is not in the BTF of x/);
      assert.throws(() => generateAbi(obj.types, { origin: 'x', structs: [], enums: ['no_such_enum'] }), /enum no_such_enum is not in the BTF of x/);
    } finally {
      obj.close();
    }
  });

  test('an object whose layout differs from the decoder fails at load, naming the member', () => {
    // the dataplane object has none of the trace structs: the first one is named
    const obj = BpfObject.open(objectPath('dataplane'));
    try {
      assert.throws(
        () => checkLayouts(obj.types),
        (e: unknown) => e instanceof LayoutError && /struct trace_hdr is missing/.test((e as Error).message),
      );
    } finally {
      obj.close();
    }
  });
});
