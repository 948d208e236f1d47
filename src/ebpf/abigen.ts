// Generates TypeScript constants from an object's BTF: struct sizes and
// member offsets, enum values — the step cilium/ebpf's bpf2go takes for Go.
// User space then reads kernel records by name (`TRACE_CONN.off.fd`), never
// by a literal offset, and a test regenerates the file to catch drift.
import type { Btf } from './btf.js';
import { BpfError } from './errors.js';

export interface AbiSpec {
  /** where the BTF came from, for the header comment */
  origin: string;
  structs: string[];
  enums: string[];
}

const constName = (s: string): string => s.toUpperCase();

/** TypeScript source declaring every listed struct's layout and enum's values; throws naming what the BTF lacks. */
export function generateAbi(btf: Btf, spec: AbiSpec): string {
  const out: string[] = [
    `// Generated from the BTF of ${spec.origin} by \`npm run gen:abi\`: do not edit.`,
    '// The C declarations are the source of truth (bpf/include); test/ebpf/abigen.test.ts fails when this file is stale.',
    '',
  ];
  for (const name of spec.enums) {
    const e = btf.enum(name);
    if (!e) throw new BpfError(`enum ${name} is not in the BTF of ${spec.origin} (is it referenced by the program?)`, { op: 'abigen' });
    out.push(`/** enum ${name} */`, `export const ${constName(name)} = {`);
    for (const [k, v] of e) out.push(`  ${k}: ${v},`);
    out.push('} as const;', '');
  }
  for (const name of spec.structs) {
    const s = btf.struct(name);
    if (!s) throw new BpfError(`struct ${name} is not in the BTF of ${spec.origin}`, { op: 'abigen' });
    out.push(`/** struct ${name} */`, `export const ${constName(name)} = {`, `  size: ${s.size},`, '  off: {');
    for (const m of s.members) {
      if (m.bitfieldSize) throw new BpfError(`${name}.${m.name} is a bit-field: not supported`, { op: 'abigen' });
      out.push(`    ${m.name}: ${m.offset},`);
    }
    out.push('  },', '  sizes: {');
    for (const m of s.members) out.push(`    ${m.name}: ${m.size},`);
    out.push('  },', '} as const;', '');
  }
  out.push('/** every struct above, by its C name */', 'export const STRUCTS = {');
  for (const name of spec.structs) out.push(`  ${name}: ${constName(name)},`);
  out.push('} as const;', '');
  return out.join('\n');
}
