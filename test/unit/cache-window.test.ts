import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CacheWindow } from '../../src/changelog/cache-window.js';

const MiB = 1024 * 1024;

describe('CacheWindow (which log bytes leave the page cache)', () => {
  it('gives no advice until a whole step was written', () => {
    const w = new CacheWindow(16 * MiB, 8 * MiB);
    w.wrote('a', 0, 8 * MiB - 1);
    assert.deepEqual(w.take(), []);
    w.wrote('a', 8 * MiB - 1, 8 * MiB);
    assert.deepEqual(w.take(), [{ path: 'a', writeback: { offset: 0, length: 8 * MiB } }]);
    assert.deepEqual(w.take(), [], 'the same bytes are not advised twice');
  });

  it('drops only what lies more than the window behind the newest byte', () => {
    const w = new CacheWindow(16 * MiB, 8 * MiB);
    w.wrote('a', 0, 24 * MiB);
    assert.deepEqual(w.take(), [
      { path: 'a', writeback: { offset: 0, length: 24 * MiB }, drop: { offset: 0, length: 8 * MiB } },
    ]);
    w.wrote('a', 24 * MiB, 32 * MiB);
    assert.deepEqual(w.take(), [
      {
        path: 'a',
        writeback: { offset: 24 * MiB, length: 8 * MiB },
        drop: { offset: 8 * MiB, length: 8 * MiB },
      },
    ]);
  });

  it('starts writeback on whole pages only (the next append may still fill the last one)', () => {
    const w = new CacheWindow(64 * MiB, 1 * MiB);
    w.wrote('a', 100, 100 + MiB + 10);
    assert.deepEqual(w.take(), [{ path: 'a', writeback: { offset: 100, length: MiB - 100 } }]);
  });

  it('follows the log across segments and forgets a segment once it is wholly dropped', () => {
    const w = new CacheWindow(4 * MiB, 4 * MiB);
    // The first segment was opened with 1 MiB already in it (written before this process).
    w.wrote('seg1', MiB, 5 * MiB);
    w.wrote('seg2', 0, 6 * MiB);
    assert.deepEqual(w.take(), [
      { path: 'seg1', writeback: { offset: MiB, length: 4 * MiB }, drop: { offset: MiB, length: 4 * MiB } },
      { path: 'seg2', writeback: { offset: 0, length: 6 * MiB }, drop: { offset: 0, length: 2 * MiB } },
    ]);
    w.wrote('seg2', 6 * MiB, 10 * MiB);
    assert.deepEqual(w.take(), [
      {
        path: 'seg2',
        writeback: { offset: 6 * MiB, length: 4 * MiB },
        drop: { offset: 2 * MiB, length: 4 * MiB },
      },
    ]);
  });
});
