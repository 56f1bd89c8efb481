import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import {
  type BeforeImageRecord,
  checkRecordCrc,
  decodeHeader,
  decodeRecord,
  encodeRecord,
  FLAG_APP,
  FLAG_MORE,
  FLAG_ZERO,
  JOURNAL_HEADER_SIZE,
  JOURNAL_MAGIC,
  type JournalHeader,
  JournalRecordType,
  MAX_MARKER_TAG,
} from '../../src/master-target/journal-record.js';

const image = Buffer.from('before image bytes');
const bi: BeforeImageRecord = {
  type: JournalRecordType.BeforeImage,
  seq: 2 ** 40 + 7,
  disk: 513,
  time: 1_700_000_000_123,
  offset: 2 ** 42 + 4096,
  length: image.length,
  beforeImage: image,
};

function header(b: Buffer): JournalHeader {
  const r = decodeHeader(b);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.header;
}

/** Rewrites the header CRC after an edit, so the checks behind it are reached. */
function reseal(h: Buffer): Buffer {
  h.writeUInt32LE(crc32c(h.subarray(0, 40)), 44);
  return h;
}

function reason(b: Buffer): string {
  const r = decodeHeader(b);
  assert.ok(!r.ok, 'expected an invalid header');
  return r.reason;
}

describe('journal record', () => {
  it('uses the Castagnoli CRC (check value of "123456789")', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  });

  it('lays out the 48-byte header as documented', () => {
    const { header: h, payload } = encodeRecord(bi);
    assert.equal(h.length, JOURNAL_HEADER_SIZE);
    assert.equal(h.subarray(0, 4).toString('latin1'), 'RBUJ');
    assert.equal(h.readUInt32LE(0), JOURNAL_MAGIC);
    assert.equal(h.readUInt8(4), 1);
    assert.equal(h.readUInt8(5), 0);
    assert.equal(h.readUInt16LE(6), 513);
    assert.equal(h.readBigUInt64LE(8), BigInt(bi.seq));
    assert.equal(h.readBigUInt64LE(16), BigInt(bi.time));
    assert.equal(h.readBigUInt64LE(24), BigInt(bi.offset));
    assert.equal(h.readUInt32LE(32), image.length);
    assert.equal(h.readUInt32LE(36), image.length);
    assert.equal(h.readUInt32LE(44), crc32c(h.subarray(0, 40)), 'header CRC over bytes 0..39');
    assert.equal(
      h.readUInt32LE(40),
      crc32c(Buffer.concat([h.subarray(0, 40), payload])),
      'record CRC over bytes 0..39 then the payload',
    );
    assert.equal(payload, image);
  });

  it('round-trips a before-image', () => {
    const { header: h, payload } = encodeRecord(bi);
    const x = header(h);
    assert.deepEqual(
      [x.type, x.flags, x.disk, x.seq, x.time, x.offset, x.length, x.payloadLength],
      [1, 0, 513, bi.seq, bi.time, bi.offset, image.length, image.length],
    );
    assert.ok(checkRecordCrc(h, payload, x.crc));
    assert.deepEqual(decodeRecord(x, payload), { ...bi, more: false });
  });

  it('stores an all-zero before-image as a flag and no payload', () => {
    const { header: h, payload } = encodeRecord({ ...bi, length: 1 << 20, beforeImage: null });
    const x = header(h);
    assert.equal(payload.length, 0);
    assert.equal(x.flags, FLAG_ZERO);
    assert.equal(x.length, 1 << 20);
    assert.equal(x.payloadLength, 0);
    assert.equal(x.crc, h.readUInt32LE(44), 'with no payload the record CRC is the header CRC');
    assert.equal(decodeRecord(x, payload).type, JournalRecordType.BeforeImage);
    assert.equal((decodeRecord(x, payload) as BeforeImageRecord).beforeImage, null);
  });

  it('marks chunks of a longer change with FLAG_MORE', () => {
    const { header: h, payload } = encodeRecord({ ...bi, more: true });
    const x = header(h);
    assert.equal(x.flags, FLAG_MORE);
    assert.equal((decodeRecord(x, payload) as BeforeImageRecord).more, true);
    const z = header(encodeRecord({ ...bi, beforeImage: null, more: true }).header);
    assert.equal(z.flags, FLAG_ZERO | FLAG_MORE);
  });

  it('round-trips markers: kind in flag bit 0, tag as UTF-8 payload', () => {
    const app = encodeRecord({
      type: JournalRecordType.Marker,
      seq: 9,
      time: 5,
      kind: 'app',
      tag: 'nightly ✓',
    });
    const x = header(app.header);
    assert.deepEqual(
      [x.type, x.flags, x.disk, x.offset, x.length, x.payloadLength],
      [2, FLAG_APP, 0, 0, 0, Buffer.byteLength('nightly ✓')],
    );
    assert.deepEqual(decodeRecord(x, app.payload), {
      type: JournalRecordType.Marker,
      seq: 9,
      time: 5,
      kind: 'app',
      tag: 'nightly ✓',
    });
    const crash = encodeRecord({ type: JournalRecordType.Marker, seq: 10, time: 6, kind: 'crash', tag: '' });
    const y = header(crash.header);
    assert.equal(y.flags, 0);
    assert.equal(y.payloadLength, 0);
    assert.equal((decodeRecord(y, crash.payload) as { kind: string }).kind, 'crash');
  });

  it('refuses to encode a before-image of the wrong size or a tag that is too long', () => {
    assert.throws(
      () => encodeRecord({ ...bi, length: 3 }),
      /before-image of seq \d+ is 18 bytes, expected 3/,
    );
    assert.throws(
      () =>
        encodeRecord({
          type: JournalRecordType.Marker,
          seq: 1,
          time: 0,
          kind: 'app',
          tag: 'x'.repeat(MAX_MARKER_TAG + 1),
        }),
      /marker tag of seq 1 is too long/,
    );
  });

  it('detects a flipped payload byte with the record CRC', () => {
    const { header: h, payload } = encodeRecord(bi);
    const bad = Buffer.from(payload);
    bad[3] ^= 0x10;
    assert.ok(!checkRecordCrc(h, bad, header(h).crc));
  });

  it('rejects invalid headers with a reason', () => {
    const h = () => Buffer.from(encodeRecord(bi).header);
    assert.equal(reason(h().subarray(0, 47)), 'truncated record header');
    const magic = h();
    magic.writeUInt32LE(0x12345678, 0);
    assert.equal(reason(magic), 'bad record magic 0x12345678');
    const flipped = h();
    flipped[9] ^= 1;
    assert.equal(reason(flipped), 'header crc mismatch');
    const type = h();
    type.writeUInt8(3, 4);
    assert.equal(reason(reseal(type)), 'unknown record type 3');
    const flags = h();
    flags.writeUInt8(4, 5);
    assert.equal(reason(reseal(flags)), 'unknown flags 0x4');
    const len = h();
    len.writeUInt32LE(5, 36);
    assert.equal(reason(reseal(len)), `payload length 5 does not match length ${image.length}`);
    const zero = h();
    zero.writeUInt8(FLAG_ZERO, 5);
    assert.equal(reason(reseal(zero)), `payload length ${image.length} with a zero before-image`);
    const big = h();
    big.writeUInt32LE(0xffffffff, 32);
    big.writeUInt32LE(0xffffffff, 36);
    assert.equal(reason(reseal(big)), 'payload length 4294967295 too large');
    const marker = Buffer.from(
      encodeRecord({ type: JournalRecordType.Marker, seq: 1, time: 0, kind: 'crash', tag: '' }).header,
    );
    marker.writeUInt16LE(1, 6);
    assert.equal(reason(reseal(marker)), 'marker with a disk range');
  });
});
