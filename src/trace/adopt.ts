// Connections opened before the tracer started (a service's pooled database
// connections, kept-alive API clients, an OVSDB client's unix socket) were
// never seen by the connect/accept hooks: find the established TCP sockets
// and the connected unix stream sockets a process connected itself (no bound
// path: the client side) of capture-enabled processes in /proc and add them
// to the kernel's connection table (struct conn, through the generated ABI),
// so their traffic is captured from now on. Byte counts of such a connection
// cover only what passed after adoption; an adopted unix socket's peer path
// is not known (the kernel gives it only through sock_diag). A connection
// to AMQP's ports (5672, 5671) is marked framed: its protocol header, which
// marks a new connection, was sent before we looked.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { type BpfMap, formatIPv6 } from '../ebpf/index.js';
import { CONN, CONN_KEY, TRACE_CONN_FLAG, TRACE_ROLE } from './abi.generated.js';
import type { ProcessTable } from './processes.js';
import type { SessionTracker } from './sessions.js';

const AMQP_PORTS = new Set([5672, 5671]);

/** Adopt the established TCP sockets of the capture-enabled processes; returns how many. */
export function adoptSockets(procs: ProcessTable, conns: BpfMap, sessions: SessionTracker): number {
  let adopted = 0;
  for (const p of procs.procs.values()) {
    if (!p.capture) continue;
    const inodes = new Map<string, number>();
    try {
      for (const fd of readdirSync(`/proc/${p.pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p.pid}/fd/${fd}`));
          if (m) inodes.set(m[1] as string, Number(fd));
        } catch {
          /* closed meanwhile */
        }
      }
    } catch {
      continue;
    }
    if (inodes.size === 0) continue;
    for (const sock of readTcpTable(p.pid)) {
      const fd = inodes.get(sock.inode);
      if (fd === undefined || sock.state !== 1) continue;
      const role = sock.listeningPorts.has(sock.localPort) ? TRACE_ROLE.ROLE_SERVER : TRACE_ROLE.ROLE_CLIENT;
      const key = Buffer.alloc(CONN_KEY.size);
      key.writeUInt32LE(p.pid, CONN_KEY.off.tgid);
      key.writeUInt32LE(fd, CONN_KEY.off.fd);
      const v = Buffer.alloc(CONN.size);
      const id = process.hrtime.bigint();
      v.writeBigUInt64LE(id, CONN.off.id);
      v.writeBigUInt64LE(id, CONN.off.opened);
      const connId = Number(id);
      v.writeUInt16LE(sock.family, CONN.off.family);
      v[CONN.off.role] = role;
      v[CONN.off.proto] = 6; // IPPROTO_TCP
      if (role === TRACE_ROLE.ROLE_CLIENT && AMQP_PORTS.has(sock.remotePort)) v[CONN.off.flags] = TRACE_CONN_FLAG.CONN_FRAMED;
      try {
        conns.update(key, v, 'noexist');
        adopted++;
        sessions.adopt(p.pid, fd, connId, role, sock.local, sock.remote);
      } catch {
        /* the kernel saw it already */
      }
    }
    for (const inode of readUnixClients(p.pid)) {
      const fd = inodes.get(inode);
      if (fd === undefined) continue;
      const key = Buffer.alloc(CONN_KEY.size);
      key.writeUInt32LE(p.pid, CONN_KEY.off.tgid);
      key.writeUInt32LE(fd, CONN_KEY.off.fd);
      const v = Buffer.alloc(CONN.size);
      const id = process.hrtime.bigint();
      v.writeBigUInt64LE(id, CONN.off.id);
      v.writeBigUInt64LE(id, CONN.off.opened);
      v.writeUInt16LE(1, CONN.off.family); // AF_UNIX
      v[CONN.off.role] = TRACE_ROLE.ROLE_CLIENT;
      try {
        conns.update(key, v, 'noexist');
        adopted++;
        sessions.adopt(p.pid, fd, Number(id), TRACE_ROLE.ROLE_CLIENT, '', 'unix');
      } catch {
        /* the kernel saw it already */
      }
    }
  }
  return adopted;
}

/** Inodes of connected unix stream sockets with no path (/proc/PID/net/unix): sockets the process connected. */
function readUnixClients(pid: number): string[] {
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/net/unix`, 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode [Path]
    const f = line.trim().split(/\s+/);
    if (f.length === 7 && f[4] === '0001' && f[5] === '03') out.push(f[6] as string);
  }
  return out;
}

interface TcpSocket {
  family: number;
  state: number;
  inode: string;
  local: string;
  remote: string;
  localPort: number;
  remotePort: number;
  listeningPorts: Set<number>;
}

function hexAddr(h: string): { addr: string; port: number } {
  const [a, p] = h.split(':') as [string, string];
  const port = parseInt(p, 16);
  if (a.length === 8) {
    const n = parseInt(a, 16);
    return { addr: `${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${n >>> 24}`, port };
  }
  const b = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) b.writeUInt32LE(parseInt(a.slice(i * 8, i * 8 + 8), 16), i * 4);
  return { addr: `[${formatIPv6(b)}]`, port };
}

/** TCP sockets in a process's network namespace (/proc/PID/net/tcp{,6}). */
function readTcpTable(pid: number): TcpSocket[] {
  const out: TcpSocket[] = [];
  const listening = new Set<number>();
  for (const [file, family] of [
    ['tcp', 2],
    ['tcp6', 10],
  ] as const) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const l = hexAddr(f[1] as string);
      const r = hexAddr(f[2] as string);
      const state = parseInt(f[3] as string, 16);
      if (state === 10) listening.add(l.port);
      out.push({
        family,
        state,
        inode: f[9] as string,
        local: `${l.addr}:${l.port}`,
        remote: `${r.addr}:${r.port}`,
        localPort: l.port,
        remotePort: r.port,
        listeningPorts: listening,
      });
    }
  }
  return out;
}
