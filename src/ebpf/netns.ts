// Run a synchronous function inside another network namespace. setns(2)
// changes only the calling thread, so the event loop's thread moves in and
// back out; nothing asynchronous may happen in between, hence sync-only.
import { readFileSync } from 'node:fs';
import { BpfError } from './errors.js';
import { c, errno } from './native.js';

const CLONE_NEWNET = 0x40000000;
const O_RDONLY_CLOEXEC = 0o2000000;

/** A namespace given by name (`ip netns` style, /run/netns/NAME) or by path. */
export function netnsPath(ns: string): string {
  return ns.includes('/') ? ns : `/run/netns/${ns}`;
}

export function withNetns<T>(ns: string | undefined, fn: () => T): T {
  if (!ns) return fn();
  const path = netnsPath(ns);
  const target = c.open(path, O_RDONLY_CLOEXEC, 0) as number;
  if (target < 0) {
    throw new BpfError(`network namespace ${ns} not found (${path})`, { op: 'setns', errno: errno(), subject: ns });
  }
  const home = c.open('/proc/thread-self/ns/net', O_RDONLY_CLOEXEC, 0) as number;
  try {
    if (home < 0) throw new BpfError('cannot open the current network namespace', { op: 'setns', errno: errno() });
    if ((c.setns(target, CLONE_NEWNET) as number) !== 0) {
      const e = errno();
      throw new BpfError(`cannot enter network namespace ${ns}`, {
        op: 'setns',
        errno: e,
        subject: ns,
        ...(e === 1 ? { hint: 'entering another network namespace needs CAP_SYS_ADMIN (run as root, or grant it)' } : {}),
      });
    }
    try {
      return fn();
    } finally {
      if ((c.setns(home, CLONE_NEWNET) as number) !== 0) {
        // Staying in the wrong namespace would silently misdirect every later call.
        process.stderr.write(`fatal: cannot return to the original network namespace (errno ${errno()})\n`);
        process.abort();
      }
    }
  } finally {
    c.close(target);
    if (home >= 0) c.close(home);
  }
}

/** ifindex of an interface (in the given namespace), or a clear error. */
export function ifindexOf(ifname: string, ns?: string): number {
  if (!ifname || ifname.length > 15) {
    throw new BpfError(`"${ifname}" is not a valid interface name`, { op: 'ifindex', subject: ifname, hint: 'interface names are 1-15 characters' });
  }
  const idx = withNetns(ns, () => c.if_nametoindex(ifname) as number);
  if (idx === 0) {
    throw new BpfError(`interface ${ifname} does not exist${ns ? ` in network namespace ${ns}` : ''}`, {
      op: 'ifindex',
      errno: 19,
      subject: ifname,
      hint: `check the name with \`ip link\`${ns ? ` inside \`ip netns exec ${ns}\`` : ''}`,
    });
  }
  return idx;
}

const AF_INET = 2;
const SOCK_DGRAM_CLOEXEC = 2 | 0o2000000;
const SIOCGIFHWADDR = 0x8927;

/** One SIOCGIF* ioctl on an interface (in the given namespace): the filled ifreq. */
function ifreq(ifname: string, ns: string | undefined, request: number, what: string): Buffer {
  ifindexOf(ifname, ns); // a clear error when it does not exist
  return withNetns(ns, () => {
    const fd = c.socket(AF_INET, SOCK_DGRAM_CLOEXEC, 0) as number;
    if (fd < 0) throw new BpfError(`cannot open a socket to read ${what}`, { op: 'ioctl', errno: errno() });
    try {
      const req = Buffer.alloc(40);
      req.write(ifname, 0, 15, 'utf8');
      if ((c.ioctl(fd, request, req) as number) < 0) throw new BpfError(`cannot read ${what} of ${ifname}`, { op: 'ioctl', errno: errno(), subject: ifname });
      return req;
    } finally {
      c.close(fd);
    }
  });
}

const SIOCGIFMTU = 0x8921;

/** MAC address of an interface (in the given namespace). */
export function macOf(ifname: string, ns?: string): string {
  const req = ifreq(ifname, ns, SIOCGIFHWADDR, 'the MAC address');
  return [...req.subarray(18, 24)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** MTU of an interface (in the given namespace). */
export function mtuOf(ifname: string, ns?: string): number {
  return ifreq(ifname, ns, SIOCGIFMTU, 'the MTU').readInt32LE(16);
}

const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71;

/**
 * The kernel's cookie of a network namespace (what bpf_get_netns_cookie
 * answers in a program run there): read from a socket opened in it.
 */
export function netnsCookie(ns?: string): bigint {
  return withNetns(ns, () => {
    const fd = c.socket(AF_INET, SOCK_DGRAM_CLOEXEC, 0) as number;
    if (fd < 0) throw new BpfError('cannot open a socket to read the network namespace cookie', { op: 'netns cookie', errno: errno() });
    try {
      const out = Buffer.alloc(8);
      const len = [8];
      if ((c.getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, out, len) as number) < 0)
        throw new BpfError('cannot read the network namespace cookie (SO_NETNS_COOKIE needs Linux 5.14)', { op: 'netns cookie', errno: errno() });
      return out.readBigUInt64LE(0);
    } finally {
      c.close(fd);
    }
  });
}

export interface NetnsDevices {
  /** the namespace's cookie (bpf_get_netns_cookie, SO_NETNS_COOKIE) */
  cookie: bigint;
  /** every device: its ifindex and its /proc/net/dev counters (rx bytes packets errs drop fifo frame compressed multicast, tx bytes packets errs drop ...) */
  devices: Map<string, { ifindex: number; stats: number[] }>;
}

/**
 * A namespace's devices, their ifindexes and counters, and its cookie, with
 * one setns round trip (instead of one per question).
 */
export function netnsDevices(ns?: string, filter: (name: string) => boolean = () => true): NetnsDevices {
  return withNetns(ns, () => {
    const cookie = netnsCookie();
    const text = readFileSync('/proc/thread-self/net/dev', 'utf8');
    const devices = new Map<string, { ifindex: number; stats: number[] }>();
    for (const line of text.split('\n').slice(2)) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const name = line.slice(0, i).trim();
      if (!filter(name)) continue;
      const ifindex = c.if_nametoindex(name) as number;
      if (!ifindex) continue; // gone meanwhile
      devices.set(name, {
        ifindex,
        stats: line
          .slice(i + 1)
          .trim()
          .split(/\s+/)
          .map(Number),
      });
    }
    return { cookie, devices };
  });
}
