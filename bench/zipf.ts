// Zipf-distributed destinations for the data plane benchmarks: real traffic
// is not uniform over every exposure, a few addresses take most packets.
// P(rank k) ∝ 1 / k^s over n ranks; ranks are mapped to destinations through
// a seeded random permutation, so the hot ones are not neighbours in any table.

/** `count` draws of destination indexes 0..n-1, Zipf(s) by rank (inverse CDF), in draw order. */
export function zipfIndexes(n: number, s: number, count: number, r: () => number): Uint32Array {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let k = 0; k < n; k++) {
    acc += 1 / (k + 1) ** s;
    cdf[k] = acc;
  }
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = perm[i] as number;
    perm[i] = perm[j] as number;
    perm[j] = t;
  }
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const u = r() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    out[i] = perm[lo] as number;
  }
  return out;
}

/** Share of draws that went to the `top` most frequent destinations (to describe a schedule). */
export function topShare(draws: Uint32Array, top: number): number {
  const counts = new Map<number, number>();
  for (const d of draws) counts.set(d, (counts.get(d) ?? 0) + 1);
  const sorted = [...counts.values()].sort((a, b) => b - a);
  return sorted.slice(0, top).reduce((a, b) => a + b, 0) / draws.length;
}
