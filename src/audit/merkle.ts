// RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, §2.1:
//   leaf hash  = SHA-256(0x00 || leaf bytes)
//   node hash  = SHA-256(0x01 || left || right)
//   MTH({})    = SHA-256("")
//   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
// with inclusion proofs (§2.1.3) and consistency proofs (§2.1.4), and their
// verification algorithms as the RFC states them, so a third party holding
// only a signed root can check a record or an older root.
import { createHash } from 'node:crypto';

export type Hash = Buffer;

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);

export function leafHash(data: Uint8Array): Hash {
  return createHash('sha256').update(LEAF).update(data).digest();
}

export function nodeHash(left: Hash, right: Hash): Hash {
  return createHash('sha256').update(NODE).update(left).update(right).digest();
}

export const EMPTY_ROOT: Hash = createHash('sha256').digest();

/** The largest power of two smaller than n (n > 1). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The tree's right edge: the roots of its perfect subtrees, largest first
 * (the binary digits of the size). Appending is O(1) amortized, the root
 * O(log n); this is how the log grows and how `verify` recomputes roots as it
 * streams the records.
 */
export class Frontier {
  private readonly stack: { size: number; hash: Hash }[] = [];
  size = 0;

  append(leaf: Hash): void {
    let node = { size: 1, hash: leaf };
    for (let top = this.stack.at(-1); top && top.size === node.size; top = this.stack.at(-1)) {
      this.stack.pop();
      node = { size: top.size * 2, hash: nodeHash(top.hash, node.hash) };
    }
    this.stack.push(node);
    this.size++;
  }

  root(): Hash {
    if (this.stack.length === 0) return EMPTY_ROOT;
    let h = (this.stack.at(-1) as { hash: Hash }).hash;
    for (let i = this.stack.length - 2; i >= 0; i--) h = nodeHash((this.stack[i] as { hash: Hash }).hash, h);
    return h;
  }

  /** the state to resume from (the perfect subtrees' roots), to store beside a checkpoint */
  save(): { size: number; hashes: string[] } {
    return { size: this.size, hashes: this.stack.map((s) => `${s.size}:${s.hash.toString('base64')}`) };
  }

  static load(s: { size: number; hashes: string[] }): Frontier {
    const f = new Frontier();
    for (const h of s.hashes) {
      const [size, b64] = h.split(':');
      f.stack.push({ size: Number(size), hash: Buffer.from(b64 as string, 'base64') });
    }
    f.size = s.size;
    if (f.stack.reduce((a, b) => a + b.size, 0) !== s.size) throw new Error(`merkle frontier: subtree sizes do not add up to ${s.size}`);
    return f;
  }
}

/**
 * Subtree hashes known without their leaves, by "lo:hi" — the perfect subtrees
 * a checkpoint's frontier keeps for records removed by retention.
 */
export type KnownSubtrees = ReadonlyMap<string, Hash>;

/** The Merkle tree hash of leaf hashes [lo, hi). */
export function rootOf(leaves: readonly (Hash | undefined)[], lo = 0, hi = leaves.length, known?: KnownSubtrees): Hash {
  const n = hi - lo;
  if (n === 0) return EMPTY_ROOT;
  const k0 = known?.get(`${lo}:${hi}`);
  if (k0) return k0;
  if (n === 1) {
    const leaf = leaves[lo];
    if (!leaf) throw new RangeError(`merkle: leaf ${lo} is not available (removed by retention)`);
    return leaf;
  }
  const k = split(n);
  return nodeHash(rootOf(leaves, lo, lo + k, known), rootOf(leaves, lo + k, hi, known));
}

/** The perfect subtrees of a saved frontier, by their leaf ranges. */
export function knownFromFrontier(saved: { hashes: string[] }): Map<string, Hash> {
  const out = new Map<string, Hash>();
  let lo = 0;
  for (const h of saved.hashes) {
    const [size, b64] = h.split(':');
    const n = Number(size);
    out.set(`${lo}:${lo + n}`, Buffer.from(b64 as string, 'base64'));
    lo += n;
  }
  return out;
}

/** PATH(m, D[n]) of RFC 9162 §2.1.3.1: the inclusion proof of leaf m in the tree of the first n leaves. */
export function inclusionProof(leaves: readonly (Hash | undefined)[], m: number, n = leaves.length, known?: KnownSubtrees): Hash[] {
  if (!(m >= 0 && m < n && n <= leaves.length)) throw new RangeError(`inclusion proof: leaf ${m} is not in a tree of ${n}`);
  const path = (m: number, lo: number, hi: number): Hash[] => {
    const size = hi - lo;
    if (size === 1) return [];
    const k = split(size);
    if (m < k) return [...path(m, lo, lo + k), rootOf(leaves, lo + k, hi, known)];
    return [...path(m - k, lo + k, hi), rootOf(leaves, lo, lo + k, known)];
  };
  return path(m, 0, n);
}

/** PROOF(m, D[n]) of RFC 9162 §2.1.4.1: that the tree of m leaves is a prefix of the tree of n. */
export function consistencyProof(leaves: readonly (Hash | undefined)[], m: number, n = leaves.length, known?: KnownSubtrees): Hash[] {
  if (!(m >= 0 && m <= n && n <= leaves.length)) throw new RangeError(`consistency proof: ${m} and ${n} are not sizes 0 <= m <= n <= ${leaves.length}`);
  if (m === 0 || m === n) return [];
  const sub = (m: number, lo: number, hi: number, whole: boolean): Hash[] => {
    const size = hi - lo;
    if (m === size) return whole ? [] : [rootOf(leaves, lo, hi, known)];
    const k = split(size);
    if (m <= k) return [...sub(m, lo, lo + k, whole), rootOf(leaves, lo + k, hi, known)];
    return [...sub(m - k, lo + k, hi, false), rootOf(leaves, lo, lo + k, known)];
  };
  return sub(m, 0, n, true);
}

const eq = (a: Hash, b: Hash): boolean => a.length === b.length && a.equals(b);

/** RFC 9162 §2.1.3.2: does `proof` show the leaf with this hash at `index` in the tree of `size` with `root`? */
export function verifyInclusion(leaf: Hash, index: number, size: number, proof: readonly Hash[], root: Hash): boolean {
  if (!(index >= 0 && index < size)) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        // right-shift both until fn is odd or zero
        do {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        } while (fn % 2 === 0 && fn !== 0);
      }
    } else r = nodeHash(r, p);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(r, root);
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree (size1, root1) is a prefix of (size2, root2)? */
export function verifyConsistency(size1: number, size2: number, proof: readonly Hash[], root1: Hash, root2: Hash): boolean {
  if (!(size1 >= 0 && size1 <= size2)) return false;
  if (size1 === size2) return proof.length === 0 && eq(root1, root2);
  if (size1 === 0) return proof.length === 0; // the empty tree is a prefix of every tree
  if (proof.length === 0) return false;
  // a size1 that is a power of two: its root is the first node of the path
  const path = (size1 & (size1 - 1)) === 0 ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0] as Hash;
  let sr = path[0] as Hash;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        do {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        } while (fn % 2 === 0 && fn !== 0);
      }
    } else sr = nodeHash(sr, c);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(fr, root1) && eq(sr, root2);
}
