// Generated from the BTF of bpf/build/trace.o by `npm run gen:abi`: do not edit.
// The C declarations are the source of truth (bpf/include); test/ebpf/abigen.test.ts fails when this file is stale.

/** enum trace_kind */
export const TRACE_KIND = {
  TK_EXEC: 1,
  TK_FORK: 2,
  TK_EXIT: 3,
  TK_OPEN: 4,
  TK_FILE: 5,
  TK_CONNECT: 6,
  TK_ACCEPT: 7,
  TK_CLOSE: 8,
  TK_DATA: 9,
} as const;

/** enum trace_file_op */
export const TRACE_FILE_OP = {
  TF_OPEN_WRITE: 1,
  TF_UNLINK: 2,
  TF_RENAME: 3,
} as const;

/** enum trace_hdr_flag */
export const TRACE_HDR_FLAG = {
  TH_MONITORED: 1,
  TH_SENSITIVE: 2,
  TH_KILLED: 4,
} as const;

/** enum trace_mon_flag */
export const TRACE_MON_FLAG = {
  MON_CAPTURE: 1,
} as const;

/** enum trace_role */
export const TRACE_ROLE = {
  ROLE_SERVER: 1,
  ROLE_CLIENT: 2,
} as const;

/** enum trace_conn_flag */
export const TRACE_CONN_FLAG = {
  CONN_FRAMED: 1,
} as const;

/** enum trace_enforce */
export const TRACE_ENFORCE = {
  ENFORCE_EXEC: 1,
  ENFORCE_FILES: 2,
  ENFORCE_PEERS: 4,
} as const;

/** enum trace_counter */
export const TRACE_COUNTER = {
  TC_INFLIGHT_FULL: 0,
  TC_CONNS_FULL: 1,
  TC_MONITORED_FULL: 2,
  TC_READ_FAULT: 3,
  TC_KEY_SCANS: 4,
  TC_KEY_MISSES: 5,
  TC_NR: 8,
} as const;

/** struct trace_hdr */
export const TRACE_HDR = {
  size: 48,
  off: {
    ts: 0,
    kind: 8,
    flags: 10,
    tgid: 12,
    tid: 16,
    ppid: 20,
    uid: 24,
    service: 28,
    comm: 32,
  },
  sizes: {
    ts: 8,
    kind: 2,
    flags: 2,
    tgid: 4,
    tid: 4,
    ppid: 4,
    uid: 4,
    service: 4,
    comm: 16,
  },
} as const;

/** struct trace_exec */
export const TRACE_EXEC = {
  size: 1344,
  off: {
    h: 0,
    cgroup: 48,
    filename_len: 56,
    args_len: 60,
    filename: 64,
    args: 320,
  },
  sizes: {
    h: 48,
    cgroup: 8,
    filename_len: 4,
    args_len: 4,
    filename: 256,
    args: 1024,
  },
} as const;

/** struct trace_fork */
export const TRACE_FORK = {
  size: 56,
  off: {
    h: 0,
    child: 48,
    pad: 52,
  },
  sizes: {
    h: 48,
    child: 4,
    pad: 4,
  },
} as const;

/** struct trace_exit */
export const TRACE_EXIT = {
  size: 56,
  off: {
    h: 0,
    code: 48,
    pad: 52,
  },
  sizes: {
    h: 48,
    code: 4,
    pad: 4,
  },
} as const;

/** struct trace_open */
export const TRACE_OPEN = {
  size: 328,
  off: {
    h: 0,
    ret: 48,
    dfd: 56,
    flags: 60,
    mode: 64,
    path_len: 68,
    path: 72,
  },
  sizes: {
    h: 48,
    ret: 8,
    dfd: 4,
    flags: 4,
    mode: 4,
    path_len: 4,
    path: 256,
  },
} as const;

/** struct trace_file */
export const TRACE_FILE = {
  size: 576,
  off: {
    h: 0,
    ret: 48,
    op: 56,
    flags: 60,
    path: 64,
    path2: 320,
  },
  sizes: {
    h: 48,
    ret: 8,
    op: 4,
    flags: 4,
    path: 256,
    path2: 256,
  },
} as const;

/** struct trace_conn */
export const TRACE_CONN = {
  size: 224,
  off: {
    h: 0,
    conn_id: 48,
    ret: 56,
    fd: 64,
    family: 68,
    role: 70,
    proto: 71,
    lport: 72,
    rport: 74,
    pad: 76,
    laddr: 80,
    raddr: 96,
    unix_path: 112,
    pad2: 220,
  },
  sizes: {
    h: 48,
    conn_id: 8,
    ret: 8,
    fd: 4,
    family: 2,
    role: 1,
    proto: 1,
    lport: 2,
    rport: 2,
    pad: 4,
    laddr: 16,
    raddr: 16,
    unix_path: 108,
    pad2: 4,
  },
} as const;

/** struct trace_close */
export const TRACE_CLOSE = {
  size: 104,
  off: {
    h: 0,
    conn_id: 48,
    opened_ns: 56,
    bytes_in: 64,
    bytes_out: 72,
    last_msg_bytes: 80,
    last_msg_start: 88,
    fd: 96,
    role: 100,
    last_dir: 101,
    family: 102,
  },
  sizes: {
    h: 48,
    conn_id: 8,
    opened_ns: 8,
    bytes_in: 8,
    bytes_out: 8,
    last_msg_bytes: 8,
    last_msg_start: 8,
    fd: 4,
    role: 1,
    last_dir: 1,
    family: 2,
  },
} as const;

/** struct trace_data */
export const TRACE_DATA = {
  size: 2160,
  off: {
    h: 0,
    conn_id: 48,
    prev_bytes: 56,
    prev_start: 64,
    cpu_ns: 72,
    runq_ns: 80,
    greenlet: 88,
    fd: 96,
    seq: 100,
    offset: 104,
    len: 108,
    dir: 110,
    role: 111,
    data: 112,
  },
  sizes: {
    h: 48,
    conn_id: 8,
    prev_bytes: 8,
    prev_start: 8,
    cpu_ns: 8,
    runq_ns: 8,
    greenlet: 8,
    fd: 4,
    seq: 4,
    offset: 4,
    len: 2,
    dir: 1,
    role: 1,
    data: 2048,
  },
} as const;

/** struct mon */
export const MON = {
  size: 8,
  off: {
    service: 0,
    flags: 4,
  },
  sizes: {
    service: 4,
    flags: 4,
  },
} as const;

/** struct lpm_path */
export const LPM_PATH = {
  size: 132,
  off: {
    prefixlen: 0,
    path: 4,
  },
  sizes: {
    prefixlen: 4,
    path: 128,
  },
} as const;

/** struct conn_key */
export const CONN_KEY = {
  size: 8,
  off: {
    tgid: 0,
    fd: 4,
  },
  sizes: {
    tgid: 4,
    fd: 4,
  },
} as const;

/** struct conn */
export const CONN = {
  size: 72,
  off: {
    id: 0,
    sk: 8,
    opened: 16,
    msg_start: 24,
    msg_bytes: 32,
    bytes_in: 40,
    bytes_out: 48,
    captured: 56,
    seq: 60,
    family: 64,
    dir: 66,
    role: 67,
    proto: 68,
    flags: 69,
    pad: 70,
  },
  sizes: {
    id: 8,
    sk: 8,
    opened: 8,
    msg_start: 8,
    msg_bytes: 8,
    bytes_in: 8,
    bytes_out: 8,
    captured: 4,
    seq: 4,
    family: 2,
    dir: 1,
    role: 1,
    proto: 1,
    flags: 1,
    pad: 2,
  },
} as const;

/** struct exec_allow_key */
export const EXEC_ALLOW_KEY = {
  size: 132,
  off: {
    service: 0,
    path: 4,
  },
  sizes: {
    service: 4,
    path: 128,
  },
} as const;

/** struct deny_path_key */
export const DENY_PATH_KEY = {
  size: 136,
  off: {
    prefixlen: 0,
    service: 4,
    path: 8,
  },
  sizes: {
    prefixlen: 4,
    service: 4,
    path: 128,
  },
} as const;

/** struct peer_key */
export const PEER_KEY = {
  size: 28,
  off: {
    prefixlen: 0,
    service: 4,
    addr: 8,
    port: 24,
    pad: 26,
  },
  sizes: {
    prefixlen: 4,
    service: 4,
    addr: 16,
    port: 2,
    pad: 2,
  },
} as const;

/** every struct above, by its C name */
export const STRUCTS = {
  trace_hdr: TRACE_HDR,
  trace_exec: TRACE_EXEC,
  trace_fork: TRACE_FORK,
  trace_exit: TRACE_EXIT,
  trace_open: TRACE_OPEN,
  trace_file: TRACE_FILE,
  trace_conn: TRACE_CONN,
  trace_close: TRACE_CLOSE,
  trace_data: TRACE_DATA,
  mon: MON,
  lpm_path: LPM_PATH,
  conn_key: CONN_KEY,
  conn: CONN,
  exec_allow_key: EXEC_ALLOW_KEY,
  deny_path_key: DENY_PATH_KEY,
  peer_key: PEER_KEY,
} as const;
