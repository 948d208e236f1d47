import assert from 'node:assert/strict';
import type { BpfObject, StructCodec } from '../../src/ebpf/index.js';

/** A struct codec must match the C struct in the object's BTF: size, members, offsets, sizes. */
export function assertMirrorsBtf(obj: BpfObject, cName: string, codec: StructCodec<any>): void {
  const s = obj.types.struct(cName);
  assert.ok(s, `struct ${cName} is in the BTF of ${obj.name}`);
  assert.equal(codec.size, s.size, `sizeof(struct ${cName})`);
  assert.deepEqual(
    Object.keys(codec.fields),
    s.members.map((m) => m.name),
    `members of struct ${cName}`,
  );
  for (const m of s.members) {
    assert.equal(m.bitfieldSize, 0, `${cName}.${m.name} is not a bit-field`);
    assert.equal(codec.offsets[m.name], m.offset, `offsetof(${cName}, ${m.name})`);
    assert.equal((codec.fields as Record<string, { size: number }>)[m.name]?.size, m.size, `sizeof(${cName}.${m.name})`);
  }
}
