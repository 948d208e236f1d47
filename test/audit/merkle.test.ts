// RFC 9162 / RFC 6962 Merkle hashing against the Certificate Transparency
// reference vectors (the leaves, roots and proofs of the CT test suites that
// transparency-dev/merkle and the original C++ log carry), then properties
// over every tree size up to 70.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  consistencyProof,
  EMPTY_ROOT,
  Frontier,
  inclusionProof,
  knownFromFrontier,
  leafHash,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.js';

const hex = (b: Buffer): string => b.toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s, 'hex');

const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map((h) => leafHash(unhex(h)));
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const INCLUSION = [
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];
const CONSISTENCY = [
  {
    first: 1,
    second: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    first: 6,
    second: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    first: 2,
    second: 5,
    proof: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'],
  },
];

describe('merkle: the Certificate Transparency reference vectors', () => {
  it('gives the reference root for every size 0..8, recursively and from the frontier', () => {
    assert.equal(hex(rootOf([])), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(hex(EMPTY_ROOT), hex(new Frontier().root()));
    const f = new Frontier();
    for (let n = 1; n <= 8; n++) {
      f.append(LEAVES[n - 1] as Buffer);
      assert.equal(hex(rootOf(LEAVES.slice(0, n))), ROOTS[n - 1], `size ${n}`);
      assert.equal(hex(f.root()), ROOTS[n - 1], `frontier size ${n}`);
    }
  });

  it('makes the reference inclusion and consistency proofs, and accepts them', () => {
    for (const v of INCLUSION) {
      assert.deepEqual(inclusionProof(LEAVES, v.index, v.size).map(hex), v.proof);
      assert.ok(verifyInclusion(LEAVES[v.index] as Buffer, v.index, v.size, v.proof.map(unhex), unhex(ROOTS[v.size - 1] as string)));
    }
    for (const v of CONSISTENCY) {
      assert.deepEqual(consistencyProof(LEAVES, v.first, v.second).map(hex), v.proof, `${v.first} → ${v.second}`);
      assert.ok(verifyConsistency(v.first, v.second, v.proof.map(unhex), unhex(ROOTS[v.first - 1] as string), unhex(ROOTS[v.second - 1] as string)));
    }
  });
});

describe('merkle: every tree size up to 70', () => {
  const leaves = Array.from({ length: 70 }, (_, i) => leafHash(Buffer.from(`record ${i}`)));
  const roots = Array.from({ length: 71 }, (_, n) => rootOf(leaves.slice(0, n)));

  it('the frontier saved and loaded gives the same root as the whole tree', () => {
    const f = new Frontier();
    for (let n = 1; n <= 70; n++) {
      f.append(leaves[n - 1] as Buffer);
      const g = Frontier.load(JSON.parse(JSON.stringify(f.save())));
      assert.ok(g.root().equals(roots[n] as Buffer), `size ${n}`);
    }
  });

  it('every inclusion proof verifies, and a flipped bit, a wrong index, a short or long proof do not', () => {
    for (let n = 1; n <= 70; n++)
      for (let i = 0; i < n; i++) {
        const p = inclusionProof(leaves, i, n);
        const root = roots[n] as Buffer;
        const leaf = leaves[i] as Buffer;
        assert.ok(verifyInclusion(leaf, i, n, p, root), `${i}/${n}`);
        if (n > 1) assert.ok(!verifyInclusion(leaf, (i + 1) % n, n, p, root) || (leaves[(i + 1) % n] as Buffer).equals(leaf), `index ${i}+1/${n}`);
        if (p.length) {
          const bad = p.map((h) => Buffer.from(h));
          (bad[0] as Buffer)[0] ^= 8;
          assert.ok(!verifyInclusion(leaf, i, n, bad, root), `flipped ${i}/${n}`);
          assert.ok(!verifyInclusion(leaf, i, n, p.slice(0, -1), root), `short ${i}/${n}`);
        }
        assert.ok(!verifyInclusion(leaf, i, n, [...p, root], root), `long ${i}/${n}`);
      }
  });

  it('every consistency proof verifies, and a tampered one does not', () => {
    for (let n = 0; n <= 70; n++)
      for (let m = 0; m <= n; m++) {
        const p = consistencyProof(leaves, m, n);
        assert.ok(verifyConsistency(m, n, p, roots[m] as Buffer, roots[n] as Buffer), `${m} → ${n}`);
        if (p.length) {
          const bad = p.map((h) => Buffer.from(h));
          (bad.at(-1) as Buffer)[3] ^= 16;
          assert.ok(!verifyConsistency(m, n, bad, roots[m] as Buffer, roots[n] as Buffer), `flipped ${m} → ${n}`);
          assert.ok(!verifyConsistency(m, n, p, roots[m] as Buffer, roots[Math.max(0, n - 1)] as Buffer) || n - 1 === m, `wrong root ${m} → ${n}`);
        }
      }
  });

  it('proofs over a prefix removed by retention come from the frontier kept for it', () => {
    const f = new Frontier();
    for (let i = 0; i < 37; i++) f.append(leaves[i] as Buffer);
    const known = knownFromFrontier(f.save());
    const partial: (Buffer | undefined)[] = [...new Array(37).fill(undefined), ...leaves.slice(37)];
    for (let i = 37; i < 70; i++) assert.deepEqual(inclusionProof(partial, i, 70, known), inclusionProof(leaves, i, 70), `leaf ${i}`);
    assert.throws(() => inclusionProof(partial, 3, 70, known), /removed by retention/);
  });
});
