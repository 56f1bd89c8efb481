import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolvePoint } from '../../src/master-target/point-spec.js';

const replica = {
  appliedThrough: 90,
  oldestPoint: 10,
  recoveryPoints: () => [
    { seq: 20, time: 1000, kind: 'crash' as const, tag: '' },
    { seq: 40, time: 2000, kind: 'app' as const, tag: 'nightly' },
    { seq: 70, time: 3000, kind: 'crash' as const, tag: '' },
  ],
  pointAtTime: (ms: number) => (ms >= Date.parse('2026-11-23T00:00:00Z') ? 90 : ms >= 1500 ? 35 : undefined),
};

describe('resolvePoint', () => {
  it('latest, latest-app, a point id, a time', () => {
    assert.equal(resolvePoint('latest', replica), 90);
    assert.equal(resolvePoint('latest-app', replica), 40);
    assert.equal(resolvePoint('70', replica), 70);
    assert.equal(resolvePoint('2026-11-23T08:00:00Z', replica), 90);
  });
  it('names what is wrong', () => {
    assert.throws(() => resolvePoint('71', replica), {
      message: "no recovery point 71 (list them with 'rebound master-target points')",
    });
    assert.throws(() => resolvePoint('yesterday', replica), {
      message:
        "point 'yesterday' is not latest, latest-app, a recovery point id or an ISO time (2026-11-23T08:00:00Z)",
    });
    assert.throws(() => resolvePoint('1970-01-01T00:00:01Z', replica), {
      message: 'no point at or before 1970-01-01T00:00:01.000Z is retained',
    });
    assert.throws(() => resolvePoint('latest-app', { ...replica, recoveryPoints: () => [] }), {
      message: 'no app-consistent point yet',
    });
  });
});

it('a point inside a resync is refused with the reason', () => {
  const src = {
    appliedThrough: 50,
    oldestPoint: 0,
    recoveryPoints: () => [],
    pointAtTime: () => 50,
    pointProblem: (seq: number) =>
      seq >= 40 ? `point ${seq} is inside the resync in progress since seq 40` : undefined,
  };
  assert.throws(() => resolvePoint('latest', src), /point 50 is inside the resync in progress since seq 40/);
  assert.throws(() => resolvePoint('2026-11-23T08:00:00Z', src), /inside the resync/);
});
