// BPF_OBJ_GET_INFO_BY_FD for maps, programs and links, and the fixed-size
// name fields those info structs carry.
import { BpfError } from './errors.js';
import { libbpf } from './native.js';

/** The kernel's info struct for an fd, zero-filled to `size` bytes; `len` is what the kernel wrote. */
export function objectInfo(fd: number, size: number, kind: 'map' | 'program' | 'link'): { buf: Buffer; len: number } {
  const buf = Buffer.alloc(size);
  const len = [size];
  const ret = libbpf.bpf_obj_get_info_by_fd(fd, buf, len) as number;
  if (ret < 0) throw new BpfError(`cannot read ${kind} info`, { op: `${kind} info`, errno: -ret });
  return { buf, len: len[0] as number };
}

/** A NUL-padded name field (BPF_OBJ_NAME_LEN = 16). */
export function nameField(buf: Buffer, offset: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('utf8', offset, end < 0 || end > offset + 16 ? offset + 16 : end);
}
