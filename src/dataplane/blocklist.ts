// Source prefixes dropped at XDP, with per-rule counters. The security half
// writes here (a detection becomes a drop rule); operators can too.
import { numPossibleCpus } from '../ebpf/index.js';
import { DpConfigFlag } from './abi.js';
import type { Dataplane } from './dataplane.js';
import { canonicalPrefix, ExposureError } from './exposure.js';
import { setConfigFlag } from './config-flags.js';

export interface BlockRule {
  prefix: string;
  /** Why: e.g. "brute force against keystone (detector)". */
  reason: string;
}

export interface BlockRuleState extends BlockRule {
  id: number;
  packets: bigint;
  bytes: bigint;
}

function canonical(prefix: string): { family: 4 | 6; key: { prefixlen: number; addr: string }; text: string } {
  const p = canonicalPrefix(prefix);
  return { family: p.family, key: { prefixlen: p.prefixlen, addr: p.addr }, text: p.key };
}

export class Blocklist {
  private readonly reasons = new Map<string, string>();

  constructor(private readonly dp: Dataplane) {}

  private maps(family: 4 | 6) {
    const t = this.dp.tables;
    return family === 4 ? t.blockV4 : t.blockV6;
  }

  /** Drop traffic from `prefix` at XDP. Returns the rule id (its counter). */
  add(rule: BlockRule): number {
    const c = canonical(rule.prefix);
    const map = this.maps(c.family);
    const existing = map.lookup(c.key);
    if (existing !== undefined) {
      this.reasons.set(c.text, rule.reason);
      return existing;
    }
    const used = new Set([...this.dp.tables.blockV4.dump(), ...this.dp.tables.blockV6.dump()].map(([, id]) => id));
    let id = 0;
    while (used.has(id)) id++;
    if (id >= this.dp.capacity.blockRules * 2) throw new ExposureError(undefined, 'blocklist', 'full: raise maxBlockRules');
    this.dp.tables.blockStats.update(
      id,
      Array.from({ length: numPossibleCpus() }, () => ({ packets: 0n, bytes: 0n })),
    );
    map.update(c.key, id);
    this.setFlag(c.family, true);
    this.reasons.set(c.text, rule.reason);
    return id;
  }

  remove(prefix: string): boolean {
    const c = canonical(prefix);
    const map = this.maps(c.family);
    const had = map.delete(c.key);
    if (had && map.dump().length === 0) this.setFlag(c.family, false);
    this.reasons.delete(c.text);
    return had;
  }

  list(): BlockRuleState[] {
    const out: BlockRuleState[] = [];
    for (const [key, id] of [...this.dp.tables.blockV4.dump(), ...this.dp.tables.blockV6.dump()]) {
      const text = `${key.addr}/${key.prefixlen}`;
      const per = this.dp.tables.blockStats.lookup(id) ?? [];
      out.push({
        prefix: text,
        reason: this.reasons.get(text) ?? '',
        id,
        packets: per.reduce((a, v) => a + v.packets, 0n),
        bytes: per.reduce((a, v) => a + v.bytes, 0n),
      });
    }
    return out;
  }

  private setFlag(family: 4 | 6, on: boolean): void {
    const flag = family === 4 ? DpConfigFlag.blockV4 : DpConfigFlag.blockV6;
    setConfigFlag(this.dp.tables.config, flag, on);
  }
}
