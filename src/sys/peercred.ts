// Who is at the other end of a unix socket: SO_PEERCRED, the credentials the
// kernel recorded when the peer connected. A peer cannot forge them (unlike
// anything it sends), so the API decides a local caller's rights from them.
// A small OS library beside src/ebpf: domain code never calls koffi itself.
import type { Socket } from 'node:net';
import koffi from 'koffi';

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

let getsockopt: ((fd: number, level: number, name: number, value: Buffer, len: number[]) => number) | undefined;

function bind(): NonNullable<typeof getsockopt> {
  if (!getsockopt) {
    const libc = koffi.load('libc.so.6');
    getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ uint32_t *len)') as NonNullable<typeof getsockopt>;
  }
  return getsockopt;
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** The peer of a connected unix-socket, or undefined when the socket has no file descriptor (not a unix socket, or closed). */
export function peerCredentials(socket: Socket): PeerCredentials | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const buf = Buffer.alloc(12);
  const len = [12];
  if (bind()(fd, SOL_SOCKET, SO_PEERCRED, buf, len) !== 0 || len[0] !== 12) return undefined;
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}
