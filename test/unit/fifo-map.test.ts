// FifoMap: bounded, oldest out first, O(1) eviction. Pure logic.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FifoMap } from '../../src/util/fifo-map.js';

describe('FifoMap', () => {
  test('evicts the oldest past its bound, telling onEvict', () => {
    const gone: string[] = [];
    const m = new FifoMap<string, number>(3, (k) => gone.push(k));
    for (const k of ['a', 'b', 'c', 'd', 'e']) m.set(k, k.charCodeAt(0));
    assert.deepEqual(gone, ['a', 'b']);
    assert.deepEqual(
      [...m],
      [
        ['c', 99],
        ['d', 100],
        ['e', 101],
      ],
    );
    assert.equal(m.size, 3);
  });

  test('an updated key keeps its place; a deleted and re-set key becomes the newest', () => {
    const m = new FifoMap<string, number>(3);
    m.set('a', 1).set('b', 2).set('c', 3);
    m.set('a', 10); // keeps its place
    m.delete('b');
    m.set('b', 20); // now newest
    m.set('d', 4); // evicts a (the oldest), not the re-set b
    assert.deepEqual(
      [...m],
      [
        ['c', 3],
        ['b', 20],
        ['d', 4],
      ],
    );
    assert.equal(m.get('a'), undefined);
    assert.deepEqual(m.shift(), ['c', 3]);
  });

  test('stays exact through many deletes, re-sets and evictions (against a plain Map)', () => {
    const m = new FifoMap<number, number>(500);
    const ref = new Map<number, number>();
    let x = 12345;
    const rnd = (n: number): number => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x % n;
    };
    for (let i = 0; i < 200_000; i++) {
      const k = rnd(2000);
      const op = rnd(3);
      if (op === 0) {
        m.delete(k);
        ref.delete(k);
      } else {
        if (op === 2) {
          m.delete(k);
          ref.delete(k);
        }
        m.set(k, i);
        if (ref.has(k)) ref.set(k, i);
        else {
          ref.set(k, i);
          if (ref.size > 500) ref.delete(ref.keys().next().value as number);
        }
      }
    }
    assert.deepEqual([...m], [...ref]);
  });

  test('eviction does not slow down as holes accumulate (a flood of new keys)', () => {
    // counted in operations, not time: the queue never holds more than about
    // twice the live entries plus a constant, whatever the churn
    const m = new FifoMap<string, number>(50_000);
    for (let i = 0; i < 300_000; i++) m.set(`k${i}`, i);
    assert.equal(m.size, 50_000);
    const q = (m as unknown as { keys: unknown[]; head: number }).keys.length - (m as unknown as { head: number }).head;
    assert.ok(q <= 2 * 50_000 + 1024, `queue of ${q}`);
    assert.equal(m.get('k249999'), undefined);
    assert.equal(m.get('k250000'), 250_000);
  });

  test('refuses a bound that is not a positive integer', () => {
    assert.throws(() => new FifoMap(0), /positive integer/);
  });
});
