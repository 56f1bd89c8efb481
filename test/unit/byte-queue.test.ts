import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteQueue } from '../../src/nbd/byte-queue.js';

function seq(from: number, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff));
}

describe('ByteQueue', () => {
  it('starts empty and counts pushed bytes', () => {
    const q = new ByteQueue();
    assert.equal(q.length, 0);
    q.push(seq(0, 3));
    q.push(seq(3, 5));
    assert.equal(q.length, 8);
  });

  it('ignores empty pushes', () => {
    const q = new ByteQueue();
    q.push(Buffer.alloc(0));
    q.push(seq(0, 2));
    q.push(Buffer.alloc(0));
    assert.equal(q.length, 2);
    assert.deepEqual(q.take(2), seq(0, 2));
    assert.equal(q.length, 0);
  });

  it('takes within one chunk without copying', () => {
    const q = new ByteQueue();
    const chunk = seq(0, 10);
    q.push(chunk);
    const a = q.take(4);
    assert.deepEqual(a, seq(0, 4));
    assert.equal(a.buffer, chunk.buffer, 'a view of the pushed buffer');
    assert.equal(a.byteOffset, chunk.byteOffset);
    const b = q.take(6);
    assert.deepEqual(b, seq(4, 6));
    assert.equal(b.buffer, chunk.buffer);
    assert.equal(q.length, 0);
  });

  it('takes across chunk boundaries in order', () => {
    const q = new ByteQueue();
    q.push(seq(0, 3));
    q.push(seq(3, 1));
    q.push(seq(4, 4));
    q.push(seq(8, 2));
    assert.deepEqual(q.take(2), seq(0, 2));
    assert.deepEqual(q.take(5), seq(2, 5)); // spans three chunks
    assert.equal(q.length, 3);
    assert.deepEqual(q.take(3), seq(7, 3));
    assert.equal(q.length, 0);
  });

  it('take(0) returns an empty buffer and changes nothing', () => {
    const q = new ByteQueue();
    assert.equal(q.take(0).length, 0);
    q.push(seq(0, 2));
    assert.equal(q.take(0).length, 0);
    assert.equal(q.length, 2);
    assert.deepEqual(q.take(2), seq(0, 2));
  });

  it('refuses to take more than is queued, leaving the queue intact', () => {
    const q = new ByteQueue();
    q.push(seq(0, 3));
    assert.throws(() => q.take(4), { name: 'RangeError', message: 'take(4) with only 3 bytes queued' });
    assert.equal(q.length, 3);
    assert.deepEqual(q.take(3), seq(0, 3));
    assert.throws(() => q.take(1), { message: 'take(1) with only 0 bytes queued' });
  });

  it('returns every byte exactly once for any split of pushes and takes', () => {
    const total = 5000;
    const data = seq(0, total);
    let rnd = 12345;
    const next = (max: number) => {
      rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
      return rnd % max;
    };
    const q = new ByteQueue();
    let pushed = 0;
    const out: Buffer[] = [];
    let taken = 0;
    while (taken < total) {
      if (pushed < total && (q.length === 0 || next(2) === 0)) {
        const n = Math.min(total - pushed, 1 + next(300));
        q.push(data.subarray(pushed, pushed + n));
        pushed += n;
      } else {
        const n = Math.min(q.length, next(400));
        out.push(Buffer.from(q.take(n)));
        taken += n;
      }
      assert.equal(q.length, pushed - taken);
    }
    assert.deepEqual(Buffer.concat(out), data);
  });
});
