import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool } from '../../src/nbd/buffer-pool.js';

describe('BufferPool', () => {
  it('hands out buffers of exactly the asked size', () => {
    const pool = new BufferPool(1 << 20);
    for (const n of [1, 4096, 4097, 65536, 100_000]) assert.equal(pool.acquire(n).length, n);
  });

  it('reuses a released buffer of the same size class', () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.acquire(5000);
    a.fill(7);
    pool.release(a);
    assert.equal(pool.retainedBytes, 8192);
    const b = pool.acquire(6000);
    assert.equal(b.buffer, a.buffer);
    assert.equal(pool.retainedBytes, 0);
    assert.notEqual(pool.acquire(6000).buffer, a.buffer); // the free list is empty again
  });

  it('never retains more than its cap', () => {
    const pool = new BufferPool(16384);
    const bufs = [pool.acquire(8192), pool.acquire(8192), pool.acquire(8192)];
    for (const b of bufs) pool.release(b);
    assert.equal(pool.retainedBytes, 16384);
  });

  it('ignores buffers it did not make', () => {
    const pool = new BufferPool(1 << 20);
    pool.release(Buffer.alloc(5000));
    pool.release(Buffer.allocUnsafeSlow(8192).subarray(10));
    assert.equal(pool.retainedBytes, 0);
  });
});
