// dp_config[0].flags is one word that several writers share: the slot
// tables (spill, updating), the reconciler (LPM lookups), the blocklist and
// the link-layer check. Each changes only its own bits, reading the word
// right before writing it.
import type { BpfMap } from '../ebpf/index.js';

export type ConfigMap = BpfMap<number, { flags: number; pad: number }>;

/** Replace the bits in `mask` with `bits(their current value)`; writes only on a change. */
export function updateConfigFlags(config: ConfigMap, mask: number, bits: (current: number) => number): void {
  const flags = config.lookup(0)?.flags ?? 0;
  const next = (flags & ~mask) | (bits(flags & mask) & mask);
  if (next !== flags) config.update(0, { flags: next, pad: 0 });
}

/** Set or clear one flag. */
export function setConfigFlag(config: ConfigMap, flag: number, on: boolean): void {
  updateConfigFlags(config, flag, () => (on ? flag : 0));
}
