// The kernel's provenance of the process behind a record: its pid, account,
// executable (and that file's SHA-256), cgroup — from the exec the tracer saw
// or, for a process already running when the agent started, from /proc. Never
// from anything the process says about itself.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readlinkSync, readSync, statSync } from 'node:fs';
import { FifoMap } from '../util/fifo-map.js';
import type { Provenance } from './cadf.js';
import type { TraceEvent } from '../trace/event.js';

const MAX_HASH_BYTES = 512 << 20;

export class ProvenanceCache {
  private readonly procs = new FifoMap<number, { exe?: string; cgroup?: string; last?: Provenance }>(16_384);
  private readonly hashes = new FifoMap<string, string>(4096);
  /** the last hash of each path, looked at again (stat) at most once a second */
  private readonly recent = new FifoMap<string, { at: number; sha: string | undefined }>(4096);
  hashErrors = 0;

  constructor(private readonly node: string) {}

  /** SHA-256 of a file, cached by path, inode, size and mtime (checked at most once a second). */
  sha256(path: string): string | undefined {
    const now = Date.now();
    const r = this.recent.get(path);
    if (r && now - r.at < 1000) return r.sha;
    const sha = this.hashOf(path);
    this.recent.set(path, { at: now, sha });
    return sha;
  }

  private hashOf(path: string): string | undefined {
    let st: import('node:fs').Stats;
    try {
      st = statSync(path);
    } catch {
      this.hashErrors++;
      return undefined;
    }
    if (!st.isFile() || st.size > MAX_HASH_BYTES) return undefined;
    const key = `${path}\0${st.ino}\0${st.size}\0${st.mtimeMs}`;
    const hit = this.hashes.get(key);
    if (hit) return hit;
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    let fd: number | undefined;
    try {
      fd = openSync(path, 'r');
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n <= 0) break;
        h.update(buf.subarray(0, n));
      }
    } catch {
      this.hashErrors++;
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    const hex = h.digest('hex');
    this.hashes.set(key, hex);
    return hex;
  }

  /** Remember what an exec record says (before the process can exit). */
  onExec(pid: number, filename: string, cgroup: string): void {
    let exe = filename;
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      /* gone: the path it was run by */
    }
    this.procs.set(pid, { exe, cgroup });
    this.sha256(exe);
  }

  of(ev: TraceEvent): Provenance {
    let p = this.procs.get(ev.pid);
    if (!p) {
      p = {};
      try {
        p.exe = readlinkSync(`/proc/${ev.pid}/exe`);
      } catch {
        /* exited */
      }
      try {
        p.cgroup = readFileSync(`/proc/${ev.pid}/cgroup`, 'utf8').trim().split('\n').pop()?.replace(/^0::/, '');
      } catch {
        /* exited */
      }
      this.procs.set(ev.pid, p);
    }
    const sha = p.exe ? this.sha256(p.exe.replace(/ \(deleted\)$/, '')) : undefined;
    // the same object while nothing in it changed (records only read it): one per process, not per record
    const last = p.last;
    if (last && last.uid === ev.uid && last.comm === ev.comm && last.service === ev.service && last.exe_sha256 === sha) return last;
    const out: Provenance = { node: this.node, pid: ev.pid, uid: ev.uid, comm: ev.comm, service: ev.service };
    if (p.exe) out.exe = p.exe;
    if (sha) out.exe_sha256 = sha;
    if (p.cgroup) out.cgroup = p.cgroup;
    p.last = out;
    return out;
  }

  forget(pid: number): void {
    this.procs.delete(pid);
  }
}
