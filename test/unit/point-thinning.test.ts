import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeThinning, thinPoints } from '../../src/master-target/point-thinning.js';
import type { RecoveryPoint } from '../../src/master-target/replica.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
// An hour boundary, so that bucket edges are easy to reason about.
const NOW = Date.parse('2026-11-23T12:00:00Z');

/** A crash point every `everyMs` from `fromAgo` to `toAgo` before NOW (seq increasing). */
function points(fromAgo: number, toAgo: number, everyMs: number, firstSeq = 1): RecoveryPoint[] {
  const out: RecoveryPoint[] = [];
  let seq = firstSeq;
  if (everyMs <= 0) throw new Error('everyMs must be positive');
  for (let t = NOW - fromAgo; t <= NOW - toAgo; t += everyMs) {
    out.push({ seq: seq++, time: t, kind: 'crash', tag: '' });
  }
  return out;
}

describe('thinPoints', () => {
  it('keeps every point of the last two hours', () => {
    const all = points(2 * HOUR - MIN, 0, MIN);
    assert.deepEqual(thinPoints(all, NOW), all);
  });

  it('keeps one per 15 minutes up to a day, one per hour up to a week, one per day after', () => {
    const all = points(10 * DAY, 0, MIN);
    const kept = thinPoints(all, NOW);
    const inAge = (lo: number, hi: number) =>
      kept.filter((p) => NOW - p.time >= lo && NOW - p.time < hi).length;
    assert.equal(inAge(0, 2 * HOUR), 120, 'every minute of the last two hours');
    // Buckets are aligned to the clock, so each tier's oldest edge adds a bucket of one
    // point (the point exactly 2 h, 24 h old; the others of its bucket are younger).
    assert.equal(inAge(2 * HOUR, DAY), 22 * 4 + 1, 'one per quarter hour');
    assert.equal(inAge(DAY, 7 * DAY), 6 * 24 + 1, 'one per hour');
    assert.equal(inAge(7 * DAY, 11 * DAY), 3 + 1, 'one per calendar day (the oldest day is partial)');
    // Within a bucket, the newest point is the one kept; the order stays seq order.
    const quarter = kept.filter((p) => NOW - p.time > 2 * HOUR && NOW - p.time < DAY);
    for (const p of quarter) assert.equal(new Date(p.time).getUTCMinutes() % 15, 14);
    assert.deepEqual(
      kept.map((p) => p.seq),
      [...kept.map((p) => p.seq)].sort((a, b) => a - b),
    );
  });

  it('prefers an app-consistent point in a bucket, and always keeps the newest of each kind', () => {
    const all = points(3 * DAY, 2 * DAY, 5 * MIN);
    const app = all[3]!; // an older point of its hour
    app.kind = 'app';
    app.tag = 'nightly';
    const kept = thinPoints(all, NOW);
    assert.ok(kept.includes(app), 'the bookmark wins its bucket');
    const sameHour = kept.filter((p) => Math.floor(p.time / HOUR) === Math.floor(app.time / HOUR));
    assert.deepEqual(sameHour, [app]);
    assert.equal(kept.at(-1), all.at(-1), 'the newest point is listed even when old');
    // The newest bookmark is listed even when a newer bookmark-less bucket would hide it.
    const b = points(3 * DAY, 2 * DAY, MIN);
    b[1]!.kind = 'app';
    b[2]!.kind = 'app';
    assert.ok(thinPoints(b, NOW).includes(b[2]!));
  });

  it('keeps points whose time is ahead of now (a source clock ahead of ours)', () => {
    const future = points(-HOUR, -3 * HOUR, MIN);
    assert.equal(thinPoints(future, NOW).length, future.length);
    assert.deepEqual(thinPoints([], NOW), []);
  });

  it('describes itself', () => {
    assert.equal(
      describeThinning(),
      'all up to 2 h old, one per 15 min up to 1 day old, one per hour up to 7 days old, one per day',
    );
  });
});
