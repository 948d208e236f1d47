// `npm run gen:abi`: regenerate the TypeScript mirrors of the kernel ABI from
// the BTF of the committed objects (run after npm run build:bpf).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BpfObject, generateAbi } from '../src/ebpf/index.js';
import { objectPath, packageRoot } from '../src/paths.js';
import { TRACE_ABI } from '../src/trace/abi.spec.js';

const targets = [{ object: 'trace', spec: TRACE_ABI, file: 'src/trace/abi.generated.ts' }];
for (const t of targets) {
  const obj = BpfObject.open(objectPath(t.object));
  try {
    writeFileSync(join(packageRoot, t.file), generateAbi(obj.types, t.spec));
    process.stdout.write(`gen-abi: wrote ${t.file}\n`);
  } finally {
    obj.close();
  }
}
