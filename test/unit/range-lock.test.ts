import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RangeLock } from '../../src/agent/range-lock.js';

/** Lets every pending promise callback run. */
function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Starts acquire() and records when it resolves. */
function track(lock: RangeLock, offset: number, length: number) {
  const t = { acquired: false, release: undefined as (() => void) | undefined };
  const done = lock.acquire(offset, length).then((release) => {
    t.acquired = true;
    t.release = release;
    return release;
  });
  return Object.assign(t, { done });
}

describe('RangeLock', () => {
  it('grants non-overlapping ranges at once', async () => {
    const lock = new RangeLock();
    const a = await lock.acquire(0, 4096);
    const b = await lock.acquire(4096, 4096); // adjacent, not overlapping
    const c = await lock.acquire(1 << 20, 1);
    assert.equal(lock.size, 3);
    a();
    b();
    c();
    assert.equal(lock.size, 0);
  });

  it('makes an overlapping range wait until the holder releases', async () => {
    const lock = new RangeLock();
    const first = await lock.acquire(0, 8192);
    const second = track(lock, 4096, 8192);
    await settle();
    assert.equal(second.acquired, false);
    assert.equal(lock.size, 1);
    first();
    await second.done;
    assert.equal(second.acquired, true);
    assert.equal(lock.size, 1);
    second.release!();
    assert.equal(lock.size, 0);
  });

  it('treats a zero-length range as one byte', async () => {
    const lock = new RangeLock();
    const held = await lock.acquire(100, 0);
    const same = track(lock, 100, 0);
    const inside = track(lock, 0, 101);
    const next = track(lock, 101, 0);
    await settle();
    assert.equal(same.acquired, false);
    assert.equal(inside.acquired, false);
    assert.equal(next.acquired, true, 'byte 101 does not overlap byte 100');
    next.release!();
    held();
    await same.done;
    same.release!();
    await inside.done;
    inside.release!();
    assert.equal(lock.size, 0);
  });

  it('waits for every overlapping holder', async () => {
    const lock = new RangeLock();
    const left = await lock.acquire(0, 100);
    const right = await lock.acquire(200, 100);
    const wide = track(lock, 50, 200);
    await settle();
    left();
    await settle();
    assert.equal(wide.acquired, false, 'still overlaps the right range');
    right();
    await wide.done;
    wide.release!();
    assert.equal(lock.size, 0);
  });

  it('serialises many overlapping writers one at a time, in arrival order', async () => {
    const lock = new RangeLock();
    const order: number[] = [];
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const release = await lock.acquire(i * 10, 4096);
        inside++;
        maxInside = Math.max(maxInside, inside);
        order.push(i);
        await settle();
        inside--;
        release();
      }),
    );
    assert.equal(maxInside, 1);
    assert.deepEqual(
      order,
      Array.from({ length: 20 }, (_, i) => i),
    );
    assert.equal(lock.size, 0);
  });

  it('lets non-overlapping writers run concurrently', async () => {
    const lock = new RangeLock();
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const release = await lock.acquire(i * 4096, 4096);
        inside++;
        maxInside = Math.max(maxInside, inside);
        await settle();
        inside--;
        release();
      }),
    );
    assert.equal(maxInside, 10);
  });

  it('a second call of a release function does not release another holder', async () => {
    const lock = new RangeLock();
    const a = await lock.acquire(0, 10);
    const b = await lock.acquire(100, 10);
    a();
    a();
    assert.equal(lock.size, 1, 'b is still held');
    const waiter = track(lock, 105, 1);
    await settle();
    assert.equal(waiter.acquired, false);
    b();
    await waiter.done;
    waiter.release!();
    assert.equal(lock.size, 0);
  });

  it('isFree tells whether a range overlaps a held one', async () => {
    const lock = new RangeLock();
    const a = await lock.acquire(4096, 4096);
    assert.equal(lock.isFree(0, 4096), true, 'adjacent below');
    assert.equal(lock.isFree(8192, 4096), true, 'adjacent above');
    assert.equal(lock.isFree(8191, 2), false);
    assert.equal(lock.isFree(4096, 0), false, 'an empty range at a held offset counts as one byte');
    a();
    assert.equal(lock.isFree(4096, 4096), true);
  });
});
