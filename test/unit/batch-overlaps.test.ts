// The batch's earlier changes over a range, as the master target lays them over a
// before-image: the same changes, in the same order, as a scan of the whole batch.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BatchOverlaps } from '../../src/master-target/batch-overlaps.js';
import type { Change } from '../../src/master-target/replica.js';
import { prng } from '../support/prng.js';

const MiB = 1024 * 1024;

function change(seq: number, disk: number, offset: number, length: number): Change {
  return { type: 'write', seq, disk, offset, length, time: seq };
}

function scan(added: Change[], disk: number, offset: number, length: number): Change[] {
  return added.filter((c) => c.disk === disk && c.offset < offset + length && c.offset + c.length > offset);
}

describe('BatchOverlaps', () => {
  test('finds exactly what a scan finds, in batch order, across buckets and disks', () => {
    const rnd = prng(7);
    const sizes = [512, 4096, 65536, MiB, 3 * MiB + 512, 17 * MiB];
    const o = new BatchOverlaps();
    const added: Change[] = [];
    for (let seq = 1; seq <= 3000; seq++) {
      const disk = 1 + Math.floor(rnd() * 2);
      const length = sizes[Math.floor(rnd() * sizes.length)]!;
      const offset = Math.floor(rnd() * 64 * 2048) * 512;
      const want = scan(added, disk, offset, length).map((c) => c.seq);
      assert.deepEqual(
        o.overlapping(disk, offset, length).map((c) => c.seq),
        want,
      );
      const c = change(seq, disk, offset, length);
      o.add(c);
      added.push(c);
    }
  });

  test('edges: touching ranges do not overlap, a byte of overlap does, empty ranges never', () => {
    const o = new BatchOverlaps();
    o.add(change(1, 1, MiB - 4096, 4096)); // ends at a bucket boundary
    o.add(change(2, 1, MiB, 4096)); // starts there
    o.add(change(3, 1, 0, 0));
    assert.deepEqual(
      o.overlapping(1, MiB - 4096, 4096).map((c) => c.seq),
      [1],
    );
    assert.deepEqual(
      o.overlapping(1, MiB - 1, 2).map((c) => c.seq),
      [1, 2],
    );
    assert.deepEqual(o.overlapping(1, MiB + 4096, 4096), []);
    assert.deepEqual(o.overlapping(1, MiB, 0), []);
    assert.deepEqual(o.overlapping(2, MiB, 4096), []);
  });

  test('a change spanning many buckets is found once', () => {
    const o = new BatchOverlaps();
    o.add(change(1, 1, 512, 40 * MiB));
    assert.deepEqual(
      o.overlapping(1, 0, 64 * MiB).map((c) => c.seq),
      [1],
    );
    assert.deepEqual(
      o.overlapping(1, 39 * MiB, 4096).map((c) => c.seq),
      [1],
    );
  });
});
