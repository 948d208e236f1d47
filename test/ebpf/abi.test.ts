// The TypeScript codecs that mirror C structs must match the BTF inside the
// compiled objects: sizes and every member's offset and size.
import { describe, test } from 'node:test';
import { BpfObject, type StructCodec } from '../../src/ebpf/index.js';
import { AcctCpu, AcctRules, AcctTap, AcctTaskRec, DiskKey, DiskValue } from '../../src/accounting/abi.js';
import { objectPath } from '../../src/paths.js';
import { LpmV4Key, ProcEvent, RouteValue, SeqEvent } from '../fixtures/selftest-abi.js';
import { assertMirrorsBtf } from '../helpers/btf.js';

describe('codecs mirror the kernel ABI (BTF of the objects)', () => {
  const cases: [string, string, StructCodec<any>][] = [
    ['test/maps', 'route_value', RouteValue],
    ['test/maps', 'lpm_v4_key', LpmV4Key],
    ['test/ringbuf', 'selftest_seq_event', SeqEvent],
    ['test/tracing', 'selftest_proc_event', ProcEvent],
    ['accounting', 'acct_tap', AcctTap],
    ['accounting', 'acct_rules', AcctRules],
    ['accounting', 'acct_task_rec', AcctTaskRec],
    ['accounting', 'acct_cpu', AcctCpu],
    ['accounting', 'acct_disk_key', DiskKey],
    ['accounting', 'acct_disk', DiskValue],
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
