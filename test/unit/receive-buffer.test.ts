import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ReceiveBuffer } from '../../src/nbd/receive-buffer.js';

/** Delivers `src` as a socket would: each read fills at most `max` bytes of the lent buffer. */
function deliver(rb: ReceiveBuffer, src: Buffer, max: number): void {
  let off = 0;
  while (off < src.length) {
    const dst = rb.nextBuffer();
    const n = src.copy(dst, 0, off, off + Math.min(max, dst.length, src.length - off));
    rb.received(dst, n);
    off += n;
  }
}

describe('ReceiveBuffer', () => {
  it('takes exact byte counts across chunk boundaries, as copies', () => {
    const rb = new ReceiveBuffer();
    const src = randomBytes(300_000);
    deliver(rb, src, 70_000);
    assert.equal(rb.length, src.length);
    const a = rb.take(28);
    const b = rb.take(200_000);
    const c = rb.take(src.length - 200_028);
    assert.equal(rb.length, 0);
    assert.ok(Buffer.concat([a, b, c]).equals(src));
    deliver(rb, Buffer.alloc(100_000, 7), 65536); // chunks are reused; earlier results stay intact
    assert.ok(Buffer.concat([a, b, c]).equals(src));
  });

  it('copies queued bytes into a direct target, then reads straight into it', () => {
    const rb = new ReceiveBuffer();
    const header = randomBytes(28);
    const payload = randomBytes(262_144);
    deliver(rb, Buffer.concat([header, payload.subarray(0, 1000)]), 65536);
    assert.ok(rb.take(28).equals(header));
    const into = Buffer.alloc(262_144);
    rb.startDirect(into, payload.length);
    assert.equal(rb.length, 0);
    assert.equal(rb.directDone(), undefined);
    const lent = rb.nextBuffer();
    assert.equal(lent.buffer, into.buffer, 'the next read goes into the target itself');
    assert.equal(lent.length, payload.length - 1000);
    deliver(rb, payload.subarray(1000), 65536);
    const done = rb.directDone();
    assert.ok(done?.equals(payload));
    assert.equal(rb.directDone(), undefined);
  });

  it('a read lent before a direct read started lands in a chunk and is moved over', () => {
    const rb = new ReceiveBuffer();
    const lent = rb.nextBuffer(); // e.g. lent right after the previous callback
    const into = Buffer.alloc(10);
    rb.startDirect(into, 10);
    const bytes = Buffer.from('0123456789abc');
    bytes.copy(lent);
    rb.received(lent, bytes.length);
    assert.equal(rb.directDone()?.toString(), '0123456789');
    assert.equal(rb.take(3).toString(), 'abc');
  });

  it('push() copies data from elsewhere in', () => {
    const rb = new ReceiveBuffer();
    const src = randomBytes(150_000);
    rb.push(src);
    assert.ok(rb.take(src.length).equals(src));
  });

  it('allocates no chunk per read in steady state', () => {
    const rb = new ReceiveBuffer();
    const orig = Buffer.allocUnsafeSlow;
    let allocs = 0;
    Buffer.allocUnsafeSlow = (n: number) => {
      allocs++;
      return orig(n);
    };
    try {
      for (let i = 0; i < 200; i++) {
        deliver(rb, randomBytes(28 + 131_072), 65536);
        rb.take(28);
        rb.take(131_072);
      }
    } finally {
      Buffer.allocUnsafeSlow = orig;
    }
    assert.ok(allocs <= 4, `${allocs} chunks allocated for 200 requests`);
  });

  it('refuses bytes in a buffer it did not lend, and over-long takes', () => {
    const rb = new ReceiveBuffer();
    rb.nextBuffer();
    assert.throws(() => rb.received(Buffer.alloc(10), 10), /did not lend/);
    assert.throws(() => rb.take(1), /take\(1\) with only 0 bytes queued/);
    assert.throws(() => rb.startDirect(Buffer.alloc(4), 8), /direct read of 8 bytes into 4/);
  });
});
