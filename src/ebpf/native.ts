// The only module that touches koffi: bindings to the system libbpf.so.1 and
// the few libc calls the runtime needs. Everything else uses typed wrappers.
import koffi from 'koffi';
import type { LibraryHandle, TypeObject } from 'koffi';

/** An opaque native pointer as koffi hands it out (null for NULL). */
export type Ptr = unknown;

type Fn = ((...args: any[]) => any) & { async: (...args: any[]) => void };

function open(names: string[]): LibraryHandle {
  const errors: string[] = [];
  for (const name of names) {
    try {
      return koffi.load(name);
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot load ${names[0]}: ${errors.join('; ')}. Install the system libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1).`);
}

koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');
koffi.opaque('bpf_link');
koffi.opaque('btf');

export const ObjectOpenOpts = koffi.struct('bpf_object_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  _removed_attach_prog_fd: 'uint32_t',
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'void *',
  kernel_log_size: 'size_t',
  kernel_log_level: 'uint32_t',
});

export const UprobeOpts = koffi.struct('bpf_uprobe_opts', {
  sz: 'size_t',
  ref_ctr_offset: 'size_t',
  bpf_cookie: 'uint64_t',
  retprobe: 'bool',
  func_name: 'const char *',
});

export const TcHook = koffi.struct('bpf_tc_hook', {
  sz: 'size_t',
  ifindex: 'int',
  attach_point: 'int',
  parent: 'uint32_t',
});

export const TcOpts = koffi.struct('bpf_tc_opts', {
  sz: 'size_t',
  prog_fd: 'int',
  flags: 'uint32_t',
  prog_id: 'uint32_t',
  handle: 'uint32_t',
  priority: 'uint32_t',
});

export const XdpQueryOpts = koffi.struct('bpf_xdp_query_opts', {
  sz: 'size_t',
  prog_id: 'uint32_t',
  drv_prog_id: 'uint32_t',
  hw_prog_id: 'uint32_t',
  skb_prog_id: 'uint32_t',
  attach_mode: 'uint8_t',
});

export const ProgLoadOpts = koffi.struct('bpf_prog_load_opts', {
  sz: 'size_t',
  attempts: 'int',
  expected_attach_type: 'int',
  prog_btf_fd: 'uint32_t',
  prog_flags: 'uint32_t',
  prog_ifindex: 'uint32_t',
  kern_version: 'uint32_t',
  attach_btf_id: 'uint32_t',
  attach_prog_fd: 'uint32_t',
  attach_btf_obj_fd: 'uint32_t',
  fd_array: 'void *',
  func_info: 'void *',
  func_info_cnt: 'uint32_t',
  func_info_rec_size: 'uint32_t',
  line_info: 'void *',
  line_info_cnt: 'uint32_t',
  line_info_rec_size: 'uint32_t',
  log_level: 'uint32_t',
  log_size: 'uint32_t',
  log_buf: 'void *',
});

export const LinkCreateOpts = koffi.struct('bpf_link_create_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  iter_info: 'void *',
  iter_info_len: 'uint32_t',
  target_btf_id: 'uint32_t',
  // the union (largest arm: kprobe_multi, 40 bytes); unused by the runtime
  _union: koffi.array('uint64_t', 5),
});

export const LinkUpdateOpts = koffi.struct('bpf_link_update_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  old_prog_fd: 'uint32_t',
});

export const MapBatchOpts = koffi.struct('bpf_map_batch_opts', {
  sz: 'size_t',
  elem_flags: 'uint64_t',
  flags: 'uint64_t',
});

export const TestRunOpts = koffi.struct('bpf_test_run_opts', {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32_t',
  data_size_out: 'uint32_t',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32_t',
  ctx_size_out: 'uint32_t',
  retval: 'uint32_t',
  repeat: 'int',
  duration: 'uint32_t',
  flags: 'uint32_t',
  cpu: 'uint32_t',
  batch_size: 'uint32_t',
});

export const MapCreateOpts = koffi.struct('bpf_map_create_opts', {
  sz: 'size_t',
  btf_fd: 'uint32_t',
  btf_key_type_id: 'uint32_t',
  btf_value_type_id: 'uint32_t',
  btf_vmlinux_value_type_id: 'uint32_t',
  inner_map_fd: 'uint32_t',
  map_flags: 'uint32_t',
  map_extra: 'uint64_t',
  numa_node: 'uint32_t',
  map_ifindex: 'uint32_t',
});

export const PrintFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *args)');

const lib = open(['libbpf.so.1']);
const libc = open(['libc.so.6']);

function bind<T extends Record<string, string>>(handle: LibraryHandle, decls: T): { [K in keyof T]: Fn } {
  const out = {} as { [K in keyof T]: Fn };
  for (const key of Object.keys(decls) as (keyof T)[]) {
    out[key] = handle.func(decls[key] as string) as unknown as Fn;
  }
  return out;
}

/** libbpf 1.x: int functions return -errno; pointer functions return NULL and set errno. */
export const libbpf = bind(lib, {
  libbpf_major_version: 'uint32_t libbpf_major_version(void)',
  libbpf_minor_version: 'uint32_t libbpf_minor_version(void)',
  libbpf_version_string: 'const char *libbpf_version_string(void)',
  libbpf_set_print: 'void *libbpf_set_print(libbpf_print_fn *fn)',
  libbpf_num_possible_cpus: 'int libbpf_num_possible_cpus(void)',
  libbpf_probe_bpf_prog_type: 'int libbpf_probe_bpf_prog_type(int type, const void *opts)',
  libbpf_probe_bpf_map_type: 'int libbpf_probe_bpf_map_type(int type, const void *opts)',
  libbpf_probe_bpf_helper: 'int libbpf_probe_bpf_helper(int prog_type, int helper_id, const void *opts)',
  libbpf_find_vmlinux_btf_id: 'int libbpf_find_vmlinux_btf_id(const char *name, int attach_type)',

  bpf_object__open_file: 'bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)',
  bpf_object__open_mem: 'bpf_object *bpf_object__open_mem(const void *buf, size_t size, const bpf_object_open_opts *opts)',
  bpf_object__load: 'int bpf_object__load(bpf_object *obj)',
  bpf_object__close: 'void bpf_object__close(bpf_object *obj)',
  bpf_object__name: 'const char *bpf_object__name(const bpf_object *obj)',
  bpf_object__next_program: 'bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prog)',
  bpf_object__next_map: 'bpf_map *bpf_object__next_map(const bpf_object *obj, bpf_map *map)',
  bpf_object__btf: 'btf *bpf_object__btf(const bpf_object *obj)',

  bpf_program__name: 'const char *bpf_program__name(const bpf_program *prog)',
  bpf_program__section_name: 'const char *bpf_program__section_name(const bpf_program *prog)',
  bpf_program__autoload: 'bool bpf_program__autoload(const bpf_program *prog)',
  bpf_program__set_autoload: 'int bpf_program__set_autoload(bpf_program *prog, bool autoload)',
  bpf_program__fd: 'int bpf_program__fd(const bpf_program *prog)',
  bpf_program__type: 'int bpf_program__type(const bpf_program *prog)',
  bpf_program__expected_attach_type: 'int bpf_program__expected_attach_type(const bpf_program *prog)',
  bpf_program__set_log_buf: 'int bpf_program__set_log_buf(bpf_program *prog, void *buf, size_t size)',
  bpf_program__insn_cnt: 'size_t bpf_program__insn_cnt(const bpf_program *prog)',
  bpf_program__attach: 'bpf_link *bpf_program__attach(const bpf_program *prog)',
  bpf_program__attach_tracepoint: 'bpf_link *bpf_program__attach_tracepoint(const bpf_program *prog, const char *category, const char *name)',
  bpf_program__attach_raw_tracepoint: 'bpf_link *bpf_program__attach_raw_tracepoint(const bpf_program *prog, const char *name)',
  bpf_program__attach_trace: 'bpf_link *bpf_program__attach_trace(const bpf_program *prog)',
  bpf_program__attach_uprobe_opts:
    'bpf_link *bpf_program__attach_uprobe_opts(const bpf_program *prog, int pid, const char *binary, size_t offset, const bpf_uprobe_opts *opts)',
  bpf_program__attach_cgroup: 'bpf_link *bpf_program__attach_cgroup(const bpf_program *prog, int cgroup_fd)',
  bpf_program__attach_iter: 'bpf_link *bpf_program__attach_iter(const bpf_program *prog, const void *opts)',
  bpf_iter_create: 'int bpf_iter_create(int link_fd)',

  bpf_map__name: 'const char *bpf_map__name(const bpf_map *map)',
  bpf_map__type: 'int bpf_map__type(const bpf_map *map)',
  bpf_map__key_size: 'uint32_t bpf_map__key_size(const bpf_map *map)',
  bpf_map__value_size: 'uint32_t bpf_map__value_size(const bpf_map *map)',
  bpf_map__max_entries: 'uint32_t bpf_map__max_entries(const bpf_map *map)',
  bpf_map__set_max_entries: 'int bpf_map__set_max_entries(bpf_map *map, uint32_t max)',
  bpf_map__map_flags: 'uint32_t bpf_map__map_flags(const bpf_map *map)',
  bpf_map__fd: 'int bpf_map__fd(const bpf_map *map)',
  bpf_map__is_internal: 'bool bpf_map__is_internal(const bpf_map *map)',
  bpf_map__initial_value: 'void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *size)',
  bpf_map__set_pin_path: 'int bpf_map__set_pin_path(bpf_map *map, const char *path)',
  bpf_map__reuse_fd: 'int bpf_map__reuse_fd(bpf_map *map, int fd)',
  bpf_map__is_pinned: 'bool bpf_map__is_pinned(const bpf_map *map)',
  bpf_map__unpin: 'int bpf_map__unpin(bpf_map *map, const char *path)',

  bpf_link__fd: 'int bpf_link__fd(const bpf_link *link)',
  bpf_link__pin: 'int bpf_link__pin(bpf_link *link, const char *path)',
  bpf_link__unpin: 'int bpf_link__unpin(bpf_link *link)',
  bpf_link__open: 'bpf_link *bpf_link__open(const char *path)',
  bpf_link__destroy: 'int bpf_link__destroy(bpf_link *link)',
  bpf_link__disconnect: 'void bpf_link__disconnect(bpf_link *link)',

  bpf_map_create:
    'int bpf_map_create(int type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const bpf_map_create_opts *opts)',
  bpf_map_lookup_elem: 'int bpf_map_lookup_elem(int fd, const void *key, void *value)',
  bpf_map_lookup_elem_flags: 'int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, uint64_t flags)',
  bpf_map_update_elem: 'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)',
  bpf_map_delete_elem: 'int bpf_map_delete_elem(int fd, const void *key)',
  bpf_map_get_next_key: 'int bpf_map_get_next_key(int fd, const void *key, void *next_key)',
  bpf_map_lookup_batch:
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)',
  bpf_map_update_batch: 'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)',
  bpf_map_delete_batch: 'int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)',
  bpf_obj_pin: 'int bpf_obj_pin(int fd, const char *path)',
  bpf_obj_get: 'int bpf_obj_get(const char *path)',
  bpf_obj_get_info_by_fd: 'int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *len)',
  bpf_prog_test_run_opts: 'int bpf_prog_test_run_opts(int fd, _Inout_ bpf_test_run_opts *opts)',
  bpf_prog_load: 'int bpf_prog_load(int type, const char *name, const char *license, const void *insns, size_t cnt, const bpf_prog_load_opts *opts)',
  bpf_link_create: 'int bpf_link_create(int prog_fd, int target_fd, int attach_type, const bpf_link_create_opts *opts)',
  bpf_link_update: 'int bpf_link_update(int link_fd, int new_prog_fd, const bpf_link_update_opts *opts)',
  bpf_link_detach: 'int bpf_link_detach(int link_fd)',
  bpf_enable_stats: 'int bpf_enable_stats(int type)',
  bpf_prog_get_fd_by_id: 'int bpf_prog_get_fd_by_id(uint32_t id)',

  bpf_tc_hook_create: 'int bpf_tc_hook_create(bpf_tc_hook *hook)',
  bpf_tc_hook_destroy: 'int bpf_tc_hook_destroy(bpf_tc_hook *hook)',
  bpf_tc_attach: 'int bpf_tc_attach(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)',
  bpf_tc_detach: 'int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)',
  bpf_tc_query: 'int bpf_tc_query(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)',
  bpf_xdp_query: 'int bpf_xdp_query(int ifindex, int flags, _Inout_ bpf_xdp_query_opts *opts)',
  bpf_xdp_detach: 'int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)',

  btf__find_by_name_kind: 'int btf__find_by_name_kind(const btf *btf, const char *name, uint32_t kind)',
  btf__type_by_id: 'const void *btf__type_by_id(const btf *btf, uint32_t id)',
  btf__name_by_offset: 'const char *btf__name_by_offset(const btf *btf, uint32_t offset)',
  btf__resolve_size: 'int64_t btf__resolve_size(const btf *btf, uint32_t id)',
  btf__resolve_type: 'int btf__resolve_type(const btf *btf, uint32_t id)',
  btf__type_cnt: 'uint32_t btf__type_cnt(const btf *btf)',
  btf__load_vmlinux_btf: 'btf *btf__load_vmlinux_btf(void)',
  btf__free: 'void btf__free(btf *btf)',
});

export const c = bind(libc, {
  open: 'int open(const char *path, int flags, int mode)',
  close: 'int close(int fd)',
  setns: 'int setns(int fd, int nstype)',
  mmap: 'void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)',
  munmap: 'int munmap(void *addr, size_t len)',
  if_nametoindex: 'uint32_t if_nametoindex(const char *name)',
  mount: 'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
  vsnprintf: 'int vsnprintf(void *buf, size_t size, const char *fmt, void *args)',
  getpagesize: 'int getpagesize(void)',
  strerror: 'const char *strerror(int errnum)',
  socket: 'int socket(int domain, int type, int protocol)',
  ioctl: 'int ioctl(int fd, unsigned long request, void *arg)',
  getsockopt: 'int getsockopt(int fd, int level, int optname, void *optval, _Inout_ uint32_t *optlen)',
});

export const MAP_FAILED_ADDR = 0xffffffffffffffffn;

export function errno(): number {
  return koffi.errno();
}

export function address(ptr: Ptr): bigint {
  return ptr === null ? 0n : koffi.address(ptr);
}

/** Zero-copy ArrayBuffer over native memory (the caller keeps the memory alive). */
export function view(ptr: Ptr, len: number): ArrayBuffer {
  return koffi.view(ptr, len);
}

/** A C string from a pointer or from a `const char *` return koffi already decoded. */
export function cstring(ptr: Ptr): string {
  if (ptr === null || ptr === undefined) return '';
  if (typeof ptr === 'string') return ptr;
  return koffi.decode(ptr, 'char', -1) as string;
}

export function decodeU32(ptr: Ptr, offset: number): number {
  return koffi.decode(ptr, offset, 'uint32_t') as number;
}

export function register(fn: (...args: any[]) => any, type: TypeObject): bigint {
  return koffi.register(fn, koffi.pointer(type));
}

export interface FdWatch {
  /** Re-arm after stop(). */
  start(): void;
  stop(): void;
  close(): void;
  unref(): void;
  ref(): void;
}

/** Watch an fd for readability on the event loop (libuv poll), no threads. */
export function pollReadable(fd: number, onReadable: () => void): FdWatch {
  // koffi calls back with (status, events); its typings say (events)
  const cb = ((status: unknown, ev?: { readable: boolean }): void => {
    if (status === 0 && ev?.readable) onReadable();
  }) as unknown as (ev: { readable: boolean }) => void;
  const handle = koffi.node.poll(fd, { readable: true }, cb);
  return {
    start: () => handle.start({ readable: true }, cb),
    stop: () => handle.stop(),
    close: () => handle.close(),
    unref: () => handle.unref(),
    ref: () => handle.ref(),
  };
}

export function structSize(type: TypeObject): number {
  return koffi.sizeof(type);
}
