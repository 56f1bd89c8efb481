import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SyncCoalescer } from '../../src/util/sync-coalescer.js';

function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** A sync function whose runs finish only when the test says so. */
function controlledSync() {
  const runs: { resolve: () => void; reject: (e: Error) => void }[] = [];
  let active = 0;
  let maxActive = 0;
  const doSync = () =>
    new Promise<void>((resolve, reject) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push({
        resolve: () => {
          active--;
          resolve();
        },
        reject: (e) => {
          active--;
          reject(e);
        },
      });
    });
  return { doSync, runs, maxActive: () => maxActive };
}

function state(p: Promise<void>): { settled: boolean; error?: unknown } {
  const s: { settled: boolean; error?: unknown } = { settled: false };
  p.then(
    () => {
      s.settled = true;
    },
    (e) => {
      s.settled = true;
      s.error = e;
    },
  );
  return s;
}

describe('SyncCoalescer', () => {
  it('runs a sync at once when none is running', async () => {
    const c = controlledSync();
    const s = new SyncCoalescer(c.doSync);
    const p = state(s.request());
    assert.equal(c.runs.length, 1);
    await settle();
    assert.equal(p.settled, false);
    c.runs[0].resolve();
    await settle();
    assert.deepEqual(p, { settled: true });
  });

  it('callers arriving during a sync share one following sync', async () => {
    const c = controlledSync();
    const s = new SyncCoalescer(c.doSync);
    const first = state(s.request());
    const later = [s.request(), s.request(), s.request()].map(state);
    assert.equal(c.runs.length, 1, 'the next sync waits for the running one');
    c.runs[0].resolve();
    await settle();
    assert.equal(first.settled, true);
    assert.equal(c.runs.length, 2, 'one sync for all three waiting callers');
    assert.ok(
      later.every((l) => !l.settled),
      'not satisfied by the sync that was already running',
    );
    c.runs[1].resolve();
    await settle();
    assert.ok(later.every((l) => l.settled && l.error === undefined));
    assert.equal(c.runs.length, 2);
    assert.equal(c.maxActive(), 1, 'syncs never overlap');
  });

  it('a caller arriving during the follow-up sync gets a third one', async () => {
    const c = controlledSync();
    const s = new SyncCoalescer(c.doSync);
    s.request();
    const second = state(s.request());
    c.runs[0].resolve();
    await settle();
    assert.equal(c.runs.length, 2);
    const third = state(s.request());
    c.runs[1].resolve();
    await settle();
    assert.equal(second.settled, true);
    assert.equal(third.settled, false);
    assert.equal(c.runs.length, 3);
    c.runs[2].resolve();
    await settle();
    assert.equal(third.settled, true);
    assert.equal(c.maxActive(), 1);
  });

  it('a failed sync rejects its callers; waiting callers still get their own sync', async () => {
    const c = controlledSync();
    const s = new SyncCoalescer(c.doSync);
    const first = state(s.request());
    const second = state(s.request());
    c.runs[0].reject(new Error('EIO'));
    await settle();
    assert.equal((first.error as Error).message, 'EIO');
    assert.equal(second.settled, false);
    assert.equal(c.runs.length, 2);
    c.runs[1].resolve();
    await settle();
    assert.deepEqual(second, { settled: true });
  });

  it('a failed follow-up sync rejects the callers that shared it', async () => {
    const c = controlledSync();
    const s = new SyncCoalescer(c.doSync);
    s.request();
    const waiting = [s.request(), s.request()].map(state);
    c.runs[0].resolve();
    await settle();
    c.runs[1].reject(new Error('ENOSPC'));
    await settle();
    assert.ok(waiting.every((w) => (w.error as Error)?.message === 'ENOSPC'));
    // and the coalescer keeps working afterwards
    const after = state(s.request());
    assert.equal(c.runs.length, 3);
    c.runs[2].resolve();
    await settle();
    assert.deepEqual(after, { settled: true });
  });

  it('sequential requests each run their own sync', async () => {
    let calls = 0;
    const s = new SyncCoalescer(async () => {
      calls++;
    });
    await s.request();
    await s.request();
    await s.request();
    assert.equal(calls, 3);
  });
});
