// The TypeScript codecs that mirror C structs must match the BTF inside the
// compiled objects: sizes and every member's offset and size.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BpfObject, type StructCodec } from '../../src/ebpf/index.js';
import { objectPath } from '../../src/paths.js';
import { LpmV4Key, ProcEvent, RouteValue, SeqEvent } from '../fixtures/selftest-abi.js';

export function assertMirrorsBtf(obj: BpfObject, cName: string, codec: StructCodec<any>): void {
  const s = obj.types.struct(cName);
  assert.ok(s, `struct ${cName} is in the BTF of ${obj.name}`);
  assert.equal(codec.size, s.size, `sizeof(struct ${cName})`);
  const members = Object.keys(codec.fields);
  assert.deepEqual(members, s.members.map((m) => m.name), `members of struct ${cName}`);
  for (const m of s.members) {
    assert.equal(m.bitfieldSize, 0, `${cName}.${m.name} is not a bit-field`);
    assert.equal(codec.offsets[m.name], m.offset, `offsetof(${cName}, ${m.name})`);
    assert.equal((codec.fields as Record<string, { size: number }>)[m.name]?.size, m.size, `sizeof(${cName}.${m.name})`);
  }
}

describe('codecs mirror the kernel ABI (BTF of the objects)', () => {
  const cases: [string, string, StructCodec<any>][] = [
    ['test/maps', 'route_value', RouteValue],
    ['test/maps', 'lpm_v4_key', LpmV4Key],
    ['test/ringbuf', 'selftest_seq_event', SeqEvent],
    ['test/tracing', 'selftest_proc_event', ProcEvent],
  ];
  for (const [file, name, codec] of cases) {
    test(`struct ${name}`, () => {
      const obj = BpfObject.open(objectPath(file));
      try {
        assertMirrorsBtf(obj, name, codec);
      } finally {
        obj.close();
      }
    });
  }
});
