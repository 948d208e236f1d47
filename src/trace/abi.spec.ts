// What src/trace/abi.generated.ts declares: every struct and enum of
// bpf/include/trace.h that user space reads or writes.
import type { AbiSpec } from '../ebpf/index.js';

export const TRACE_ABI: AbiSpec = {
  origin: 'bpf/build/trace.o',
  enums: ['trace_kind', 'trace_file_op', 'trace_hdr_flag', 'trace_mon_flag', 'trace_role', 'trace_conn_flag', 'trace_enforce', 'trace_counter'],
  structs: [
    'trace_hdr',
    'trace_exec',
    'trace_fork',
    'trace_exit',
    'trace_open',
    'trace_file',
    'trace_conn',
    'trace_close',
    'trace_data',
    'mon',
    'lpm_path',
    'conn_key',
    'conn',
    'exec_allow_key',
    'deny_path_key',
    'peer_key',
  ],
};
