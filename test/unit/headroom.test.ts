// Header room in front of a buffer (util/headroom.ts): taken once, in parts, and kept across a
// new view of the same memory.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { headroom, markHeadroom, moveHeadroom, takeHeadroom } from '../../src/util/headroom.js';

describe('headroom', () => {
  test('room is taken in parts, front first, and never twice', () => {
    const whole = Buffer.allocUnsafeSlow(48 + 8).fill(0);
    const data = whole.subarray(48).fill(7);
    markHeadroom(data, 48);
    assert.equal(headroom(data), 48);
    const change = takeHeadroom(data, 32)!;
    assert.equal(change.byteOffset, 16);
    assert.equal(change.length, 40);
    assert.equal(headroom(data), 0, 'taken from the data view');
    assert.equal(headroom(change), 16, 'the rest moves to the wider view');
    assert.equal(takeHeadroom(data, 1), undefined);
    const frame = takeHeadroom(change, 16)!;
    assert.equal(frame.byteOffset, 0);
    assert.equal(frame.length, 56);
    assert.equal(headroom(frame), 0);
    assert.equal(takeHeadroom(change, 16), undefined);
  });

  test('more room than there are bytes in front is not marked; too little room is not taken', () => {
    const whole = Buffer.allocUnsafeSlow(24);
    const v = whole.subarray(8);
    markHeadroom(v, 16);
    assert.equal(headroom(v), 0);
    markHeadroom(v, 8);
    assert.equal(takeHeadroom(v, 16), undefined);
    assert.equal(headroom(v), 8, 'a refused take leaves the room');
  });

  test('a new view of the same memory keeps the room', () => {
    const whole = Buffer.allocUnsafeSlow(32);
    const v = whole.subarray(16);
    markHeadroom(v, 16);
    const again = Buffer.from(whole.buffer, 16, 16);
    moveHeadroom(v, again);
    assert.equal(headroom(v), 0);
    assert.equal(headroom(again), 16);
  });
});
