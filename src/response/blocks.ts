// Sources dropped at XDP with an expiry: an operator's block, or a
// detector's response. The rules live in the data plane's maps (through the
// SourceBlocker the exposure module offers); the expiries are the response
// module's and survive restarts in state_dir/blocks.json.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { SourceBlocker } from '../capabilities.js';
import type { Logger } from '../log.js';
import type { BlockStatus } from '../status.js';

export class ExpiringBlocks {
  /** prefix → expiry (ms since the epoch) */
  private readonly expiry = new Map<string, { expires: number; reason: string }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly blocker: SourceBlocker,
    private readonly stateDir: string,
    private readonly log: Logger,
  ) {
    this.load();
    this.timer = setInterval(() => this.expire(), 1000);
    this.timer.unref();
  }

  private get file(): string {
    return `${this.stateDir}/blocks.json`;
  }

  private load(): void {
    try {
      const saved = JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, { expires: number; reason: string }>;
      for (const [prefix, b] of Object.entries(saved)) if (typeof b?.expires === 'number') this.expiry.set(prefix, b);
    } catch {
      /* none yet */
    }
    this.expire();
  }

  private save(): void {
    try {
      mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
      writeFileSync(`${this.file}.tmp`, JSON.stringify(Object.fromEntries(this.expiry)));
      renameSync(`${this.file}.tmp`, this.file);
    } catch (err) {
      this.log.warn('cannot save block expiries', { error: (err as Error).message });
    }
  }

  /** Drop traffic from `prefix` at XDP for `seconds` (0: until removed). Returns the canonical prefix. */
  block(prefix: string, reason: string, seconds: number): { prefix: string; id: number; expires: number | null } {
    const { id, prefix: canon } = this.blocker.add({ prefix, reason });
    const expires = seconds > 0 ? Date.now() + seconds * 1000 : null;
    if (expires) this.expiry.set(canon, { expires, reason });
    else this.expiry.delete(canon);
    this.save();
    this.log.warn('source blocked at XDP', { prefix: canon, reason, expires: expires ? new Date(expires).toISOString() : 'never' });
    return { prefix: canon, id, expires };
  }

  unblock(prefix: string): boolean {
    const had = this.blocker.remove(prefix);
    for (const k of [...this.expiry.keys()]) if (k === prefix || k === `${prefix}/32` || k === `${prefix}/128`) this.expiry.delete(k);
    this.save();
    return had;
  }

  expire(now = Date.now()): void {
    let changed = false;
    for (const [prefix, b] of this.expiry) {
      if (b.expires <= now) {
        this.blocker.remove(prefix);
        this.expiry.delete(prefix);
        this.log.info('block expired', { prefix, reason: b.reason });
        changed = true;
      }
    }
    if (changed) this.save();
  }

  list(): BlockStatus[] {
    return this.blocker.list().map((b) => {
      const e = this.expiry.get(b.prefix);
      return {
        prefix: b.prefix,
        reason: b.reason,
        id: b.id,
        packets: b.packets.toString(),
        bytes: b.bytes.toString(),
        expires: e ? new Date(e.expires).toISOString() : null,
      };
    });
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
