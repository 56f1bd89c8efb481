import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteRanges } from '../../src/master-target/byte-ranges.js';

describe('ByteRanges', () => {
  it('reports the gaps of a range and merges what is added', () => {
    const r = new ByteRanges();
    assert.deepEqual(r.gaps(0, 10), [[0, 10]]);
    r.add(2, 4);
    r.add(6, 8);
    assert.deepEqual(r.gaps(0, 10), [
      [0, 2],
      [4, 6],
      [8, 10],
    ]);
    assert.deepEqual(r.gaps(2, 4), []);
    assert.deepEqual(r.gaps(3, 7), [[4, 6]]);
    r.add(4, 6); // touches both neighbours: one range [2, 8)
    assert.deepEqual(r.gaps(0, 10), [
      [0, 2],
      [8, 10],
    ]);
    r.add(0, 1);
    r.add(9, 12);
    assert.deepEqual(r.gaps(0, 12), [
      [1, 2],
      [8, 9],
    ]);
    r.add(0, 20);
    assert.deepEqual(r.gaps(0, 20), []);
    assert.deepEqual(r.gaps(15, 25), [[20, 25]]);
  });

  it('agrees with a byte map on random ranges', () => {
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let round = 0; round < 50; round++) {
      const r = new ByteRanges();
      const map = new Uint8Array(200);
      for (let k = 0; k < 20; k++) {
        const a = Math.floor(rnd() * 200);
        const b = Math.min(200, a + Math.floor(rnd() * 30));
        const want: [number, number][] = [];
        for (let x = a; x < b; x++) {
          if (map[x]) continue;
          const last = want.at(-1);
          if (last && last[1] === x) last[1] = x + 1;
          else want.push([x, x + 1]);
        }
        assert.deepEqual(r.gaps(a, b), want);
        r.add(a, b);
        map.fill(1, a, b);
      }
    }
  });
});
