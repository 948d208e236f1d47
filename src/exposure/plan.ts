// The exposure controller's decisions, apart from the maps and FRR they
// drive: whether a reconcile may apply OVN's changes alone, and what those
// changes mean for the applied set. Pure, so they are tested without a kernel.
import { type Exposure, ExposureError, type NormalizedExposure, normalizeExposure } from '../dataplane/exposure.js';

export interface ReconcileState {
  /** every source has its full set (OVN has synced once) */
  complete: boolean;
  /** a source other than OVN changed, the safety net asked, or the last attempt failed */
  fullNeeded: boolean;
  /** a fully applied set exists to apply changes to */
  haveApplied: boolean;
  /** OVN is a source (only its changes can be applied alone) */
  hasOvn: boolean;
  /** BGP's state: undefined without BGP; false after FRR lost our configuration */
  bgpConfigured: boolean | undefined;
}

/** Incremental (OVN's changes only) or a full recompute and diff. */
export function reconcileMode(s: ReconcileState): 'incremental' | 'full' {
  return s.complete && !s.fullNeeded && s.haveApplied && s.hasOvn && s.bgpConfigured !== false ? 'incremental' : 'full';
}

export interface DeltaPlan {
  /** entries to write (new or changed) */
  upsert: NormalizedExposure[];
  /** keys to withdraw and then remove */
  gone: string[];
  /** keys to announce (not announced before) */
  announce: string[];
}

/**
 * What OVN's changes since the last reconcile do to a fully applied set.
 * Throws, having decided nothing, when they need a full reconcile: a prefix
 * claimed by two owners, or one added twice.
 */
export function planDelta(applied: ReadonlyMap<string, NormalizedExposure>, added: Exposure[], removed: Exposure[]): DeltaPlan {
  const upsert: NormalizedExposure[] = [];
  const addedKeys = new Set<string>();
  const gone0 = removed.map((e) => normalizeExposure(e));
  const removedKeys = new Set(gone0.map((n) => n.key));
  for (const e of added) {
    const n = normalizeExposure(e);
    const prev = applied.get(n.key);
    if (prev && prev.owner !== n.owner && !removedKeys.has(n.key)) {
      throw new ExposureError(undefined, 'prefix', `${n.key} is claimed by both "${prev.owner}" and "${n.owner}"`);
    }
    if (addedKeys.has(n.key)) throw new ExposureError(undefined, 'prefix', `${n.key} added twice`);
    addedKeys.add(n.key);
    upsert.push(n);
  }
  // a removed exposure whose key comes back in `added` is an update, not a removal;
  // one removed by another owner than the applied one's is not ours to remove
  const gone = gone0.filter((n) => !addedKeys.has(n.key) && applied.get(n.key)?.owner === n.owner).map((n) => n.key);
  const announce = upsert.filter((n) => !applied.has(n.key)).map((n) => n.key);
  return { upsert, gone, announce };
}
