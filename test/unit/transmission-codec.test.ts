import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CMD,
  CMD_FLAG,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_MAGIC,
} from '../../src/nbd/constants.js';
import {
  encodeBlockStatus,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeRequest,
  encodeSimpleReply,
  encodeStructuredDone,
  encodeStructuredError,
  parseRequest,
  type Request,
} from '../../src/nbd/transmission-codec.js';

const cookie = Buffer.from('0123456789abcdef', 'hex');

function checkChunkHeader(b: Buffer, flags: number, type: number, length: number): void {
  assert.equal(b.readUInt32BE(0), STRUCTURED_REPLY_MAGIC);
  assert.equal(b.readUInt16BE(4), flags);
  assert.equal(b.readUInt16BE(6), type);
  assert.deepEqual(b.subarray(8, 16), cookie);
  assert.equal(b.readUInt32BE(16), length);
}

describe('parseRequest / encodeRequest', () => {
  it('round-trips a request', () => {
    const req: Request = {
      flags: CMD_FLAG.FUA | CMD_FLAG.NO_HOLE,
      type: CMD.WRITE_ZEROES,
      cookie,
      offset: 2 ** 40 + 512,
      length: 0xfffffff0,
    };
    const wire = encodeRequest(req);
    assert.equal(wire.length, REQUEST_HEADER_SIZE);
    assert.equal(wire.readUInt32BE(0), REQUEST_MAGIC);
    assert.deepEqual(parseRequest(wire), req);
  });

  it('lays the fields out as the protocol says', () => {
    const wire = encodeRequest({
      flags: 0x0102,
      type: CMD.READ,
      cookie,
      offset: 0x0a0b0c0d,
      length: 0x11223344,
    });
    assert.equal(
      wire.toString('hex'),
      '25609513' + '0102' + '0000' + '0123456789abcdef' + '000000000a0b0c0d' + '11223344',
    );
  });

  it('copies the cookie so it survives reuse of the input buffer', () => {
    const wire = encodeRequest({ flags: 0, type: CMD.READ, cookie, offset: 0, length: 1 });
    const r = parseRequest(wire);
    assert.ok(typeof r !== 'string');
    wire.fill(0xee);
    assert.deepEqual(r.cookie, cookie);
  });

  it('ignores bytes after the 28-byte header', () => {
    const wire = Buffer.concat([
      encodeRequest({ flags: 0, type: CMD.FLUSH, cookie, offset: 0, length: 0 }),
      cookie,
    ]);
    assert.deepEqual(parseRequest(wire), { flags: 0, type: CMD.FLUSH, cookie, offset: 0, length: 0 });
  });

  it('rejects a short header', () => {
    assert.equal(parseRequest(Buffer.alloc(27)), 'short request header');
    assert.equal(parseRequest(Buffer.alloc(0)), 'short request header');
  });

  it('rejects a bad magic with its value in hex', () => {
    const wire = encodeRequest({ flags: 0, type: CMD.READ, cookie, offset: 0, length: 1 });
    wire.writeUInt32BE(0xdeadbeef, 0);
    assert.equal(parseRequest(wire), 'bad request magic 0xdeadbeef');
    wire.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    assert.equal(parseRequest(wire), 'bad request magic 0x67446698');
  });

  it('keeps the largest safe offset exact', () => {
    const wire = encodeRequest({
      flags: 0,
      type: CMD.READ,
      cookie,
      offset: Number.MAX_SAFE_INTEGER,
      length: 1,
    });
    const r = parseRequest(wire);
    assert.ok(typeof r !== 'string');
    assert.equal(r.offset, Number.MAX_SAFE_INTEGER);
  });

  it('clamps offsets beyond 2^53 to MAX_SAFE_INTEGER instead of rounding them', () => {
    for (const big of [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n]) {
      const wire = encodeRequest({ flags: 0, type: CMD.READ, cookie, offset: 0, length: 4096 });
      wire.writeBigUInt64BE(big, 16);
      const r = parseRequest(wire);
      assert.ok(typeof r !== 'string');
      assert.equal(r.offset, Number.MAX_SAFE_INTEGER, `offset ${big}`);
      assert.equal(r.length, 4096);
    }
  });
});

describe('encodeSimpleReply', () => {
  it('is magic, error and cookie', () => {
    const r = encodeSimpleReply(cookie, 5);
    assert.equal(r.length, 16);
    assert.equal(r.readUInt32BE(0), SIMPLE_REPLY_MAGIC);
    assert.equal(r.readUInt32BE(4), 5);
    assert.deepEqual(r.subarray(8), cookie);
    assert.equal(encodeSimpleReply(cookie, 0).readUInt32BE(4), 0);
  });
});

describe('structured replies', () => {
  it('encodeOffsetDataHeader is a final OFFSET_DATA chunk whose length covers offset and data', () => {
    const h = encodeOffsetDataHeader(cookie, 2 ** 35, 65536);
    assert.equal(h.length, 28);
    checkChunkHeader(h, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, 8 + 65536);
    assert.equal(h.readBigUInt64BE(20), 2n ** 35n);
  });

  it('encodeStructuredDone is a bare final NONE chunk', () => {
    const d = encodeStructuredDone(cookie);
    assert.equal(d.length, 20);
    checkChunkHeader(d, REPLY_FLAG_DONE, REPLY_TYPE.NONE, 0);
  });

  it('encodeOffsetHole sets DONE only when asked', () => {
    const last = encodeOffsetHole(cookie, 4096, 8192, true);
    assert.equal(last.length, 32);
    checkChunkHeader(last, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_HOLE, 12);
    assert.equal(last.readBigUInt64BE(20), 4096n);
    assert.equal(last.readUInt32BE(28), 8192);
    const more = encodeOffsetHole(cookie, 4096, 8192, false);
    checkChunkHeader(more, 0, REPLY_TYPE.OFFSET_HOLE, 12);
  });

  it('encodeStructuredError carries the error and the message', () => {
    const e = encodeStructuredError(cookie, 28, 'no space');
    checkChunkHeader(e, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, 6 + 8);
    assert.equal(e.length, 20 + 6 + 8);
    assert.equal(e.readUInt32BE(20), 28);
    assert.equal(e.readUInt16BE(24), 8);
    assert.equal(e.subarray(26).toString(), 'no space');
  });

  it('encodeStructuredError truncates the message to 4096 bytes', () => {
    const e = encodeStructuredError(cookie, 5, 'm'.repeat(10000));
    assert.equal(e.readUInt16BE(24), 4096);
    assert.equal(e.readUInt32BE(16), 6 + 4096);
    assert.equal(e.length, 20 + 6 + 4096);
  });

  it('encodeStructuredError allows an empty message', () => {
    const e = encodeStructuredError(cookie, 22, '');
    assert.equal(e.length, 26);
    assert.equal(e.readUInt16BE(24), 0);
  });

  it('encodeBlockStatus lists the extents after the context id', () => {
    const extents = [
      { length: 65536, flags: 0 },
      { length: 4096, flags: STATE_HOLE | STATE_ZERO },
      { length: 0xffffffff, flags: STATE_ZERO },
    ];
    const b = encodeBlockStatus(cookie, 3, extents);
    assert.equal(b.length, 20 + 4 + 8 * 3);
    checkChunkHeader(b, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, 4 + 8 * 3);
    assert.equal(b.readUInt32BE(20), 3);
    const back = [0, 1, 2].map((i) => ({
      length: b.readUInt32BE(24 + 8 * i),
      flags: b.readUInt32BE(28 + 8 * i),
    }));
    assert.deepEqual(back, extents);
  });

  it('encodeBlockStatus with no extents is just the context id', () => {
    const b = encodeBlockStatus(cookie, 1, []);
    assert.equal(b.length, 24);
    checkChunkHeader(b, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, 4);
  });
});
