import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashBlock, hashBlocks, planResync, sameBlock } from '../../src/resync/block-hash.js';
import { isSystemTag, RESYNC_END_TAG, RESYNC_START_TAG } from '../../src/resync/markers.js';
import { isAllZero } from '../../src/util/buffers.js';

const B = 64 * 1024;
const data = (fill: number) => Buffer.alloc(B, fill);

describe('block hashes', () => {
  it('tells zero blocks from data and compares hashes', () => {
    assert.ok(isAllZero(Buffer.alloc(200_000)));
    const z = Buffer.alloc(200_000);
    z[199_999] = 1;
    assert.ok(!isAllZero(z));
    assert.deepEqual(hashBlock(Buffer.alloc(B)), { zero: true });
    assert.ok(sameBlock(hashBlock(data(1)), hashBlock(data(1))));
    assert.ok(!sameBlock(hashBlock(data(1)), hashBlock(data(2))));
    assert.ok(!sameBlock(hashBlock(data(1)), { zero: true }));
    assert.equal(hashBlocks(Buffer.alloc(B * 2 + 10), B).length, 3);
  });

  it('sends only differing blocks, runs coalesced, zeroes without data', () => {
    const local = [hashBlock(data(1)), hashBlock(data(2)), hashBlock(data(3)), { zero: true as const }];
    const remote = [hashBlock(data(1)), hashBlock(data(9)), hashBlock(data(9)), hashBlock(data(4))];
    assert.deepEqual(planResync(0, B, 10 * B, local, remote), [
      { kind: 'write', offset: B, length: 2 * B },
      { kind: 'zero', offset: 3 * B, length: B },
    ]);
    // Equal blocks (zero on both sides included) send nothing.
    assert.deepEqual(planResync(0, B, 10 * B, [{ zero: true }], [{ zero: true }]), []);
    // A block the replica did not describe is sent; the disk's end clips the last one.
    assert.deepEqual(planResync(8 * B, B, 8 * B + 100, [hashBlock(data(5))], []), [
      { kind: 'write', offset: 8 * B, length: 100 },
    ]);
    // Writes are cut at maxWrite.
    const many = Array.from({ length: 4 }, () => hashBlock(data(7)));
    assert.deepEqual(planResync(0, B, 10 * B, many, [], 2 * B), [
      { kind: 'write', offset: 0, length: 2 * B },
      { kind: 'write', offset: 2 * B, length: 2 * B },
    ]);
  });

  it('reserves the rebound: tags', () => {
    assert.ok(isSystemTag(RESYNC_START_TAG) && isSystemTag(RESYNC_END_TAG));
    assert.ok(!isSystemTag('nightly'));
  });
});
