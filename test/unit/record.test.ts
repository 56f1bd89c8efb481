import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkCrc,
  decodeHeader,
  encodeHeader,
  HEADER_SIZE,
  isMarker,
  MAX_RECORD_PAYLOAD,
  markerPayload,
  parseMarkerPayload,
  RECORD_MAGIC,
  type RecordHeader,
  RecordType,
} from '../../src/changelog/record.js';

const base = {
  type: RecordType.Write,
  flags: 1,
  disk: 513,
  seq: 2 ** 40 + 7,
  time: 1_700_000_000_123,
  offset: 2 ** 42 + 4096,
  length: 11,
};
const payload = Buffer.from('hello world');

function decoded(b: Buffer): { header: RecordHeader; crc: number } {
  const r = decodeHeader(b);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r;
}

describe('record header', () => {
  it('is 48 bytes starting with "RBCL"', () => {
    const h = encodeHeader(base, payload);
    assert.equal(h.length, HEADER_SIZE);
    assert.equal(h.subarray(0, 4).toString('latin1'), 'RBCL');
    assert.equal(h.readUInt32LE(0), RECORD_MAGIC);
  });

  it('round-trips every field and records the payload length', () => {
    const { header } = decoded(encodeHeader(base, payload));
    assert.deepEqual(header, { ...base, payloadLength: payload.length });
  });

  it('round-trips each record type, empty payloads and zero values', () => {
    for (const type of [
      RecordType.Write,
      RecordType.Zero,
      RecordType.Trim,
      RecordType.Flush,
      RecordType.Bookmark,
    ]) {
      const h = { type, flags: 0, disk: 0, seq: 1, time: 0, offset: 0, length: 0 };
      assert.deepEqual(decoded(encodeHeader(h, Buffer.alloc(0))).header, { ...h, payloadLength: 0 });
    }
  });

  it('stores fields little-endian at their documented offsets', () => {
    const h = encodeHeader(base, payload);
    assert.equal(h.readUInt8(4), RecordType.Write);
    assert.equal(h.readUInt8(5), 1);
    assert.equal(h.readUInt16LE(6), 513);
    assert.equal(h.readBigUInt64LE(8), BigInt(base.seq));
    assert.equal(h.readBigUInt64LE(16), BigInt(base.time));
    assert.equal(h.readBigUInt64LE(24), BigInt(base.offset));
    assert.equal(h.readUInt32LE(32), 11);
    assert.equal(h.readUInt32LE(36), 11);
    assert.equal(h.readUInt32LE(44), 0, 'reserved');
  });

  it('the CRC covers header and payload', () => {
    const h = encodeHeader(base, payload);
    const { crc } = decoded(h);
    assert.equal(crc, h.readUInt32LE(40));
    assert.ok(checkCrc(h, payload, crc));
    // the same header with another payload of the same length has another CRC
    assert.notEqual(encodeHeader(base, Buffer.from('hello World')).readUInt32LE(40), crc);
  });

  it('the CRC detects any single flipped bit in the checksummed header bytes', () => {
    const h = encodeHeader(base, payload);
    const crc = h.readUInt32LE(40);
    for (let byte = 0; byte < 40; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(h);
        bad[byte] ^= 1 << bit;
        assert.equal(checkCrc(bad, payload, crc), false, `byte ${byte} bit ${bit}`);
      }
    }
  });

  it('the CRC detects any single flipped bit in the payload', () => {
    const h = encodeHeader(base, payload);
    const crc = h.readUInt32LE(40);
    for (let byte = 0; byte < payload.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(payload);
        bad[byte] ^= 1 << bit;
        assert.equal(checkCrc(h, bad, crc), false, `byte ${byte} bit ${bit}`);
      }
    }
  });

  it('the CRC detects a truncated or extended payload', () => {
    const h = encodeHeader(base, payload);
    const crc = h.readUInt32LE(40);
    assert.equal(checkCrc(h, payload.subarray(0, 10), crc), false);
    assert.equal(checkCrc(h, Buffer.concat([payload, Buffer.alloc(1)]), crc), false);
  });

  it('a flipped bit in the stored CRC itself is detected', () => {
    const h = encodeHeader(base, payload);
    const bad = Buffer.from(h);
    bad[41] ^= 0x10;
    const { crc } = decoded(bad);
    assert.equal(checkCrc(bad, payload, crc), false);
  });

  it('rejects a short header', () => {
    assert.deepEqual(decodeHeader(Buffer.alloc(47)), { ok: false, reason: 'short header (47 bytes)' });
    assert.deepEqual(decodeHeader(Buffer.alloc(0)), { ok: false, reason: 'short header (0 bytes)' });
  });

  it('rejects a bad magic with its value in hex', () => {
    const h = encodeHeader(base, payload);
    h.writeUInt32LE(0xcafe, 0);
    assert.deepEqual(decodeHeader(h), { ok: false, reason: 'bad record magic 0xcafe' });
    assert.deepEqual(decodeHeader(Buffer.alloc(48)), { ok: false, reason: 'bad record magic 0x0' });
  });

  it('rejects unknown record types', () => {
    const h = encodeHeader(base, payload);
    h.writeUInt8(0, 4);
    assert.deepEqual(decodeHeader(h), { ok: false, reason: 'unknown record type 0' });
    h.writeUInt8(6, 4);
    assert.deepEqual(decodeHeader(h), { ok: false, reason: 'unknown record type 6' });
  });

  it('rejects payload lengths above MAX_RECORD_PAYLOAD', () => {
    const h = encodeHeader(base, payload);
    h.writeUInt32LE(MAX_RECORD_PAYLOAD + 1, 36);
    assert.deepEqual(decodeHeader(h), {
      ok: false,
      reason: `payload length ${MAX_RECORD_PAYLOAD + 1} too large`,
    });
    h.writeUInt32LE(MAX_RECORD_PAYLOAD, 36);
    assert.equal(decoded(h).header.payloadLength, MAX_RECORD_PAYLOAD);
  });
});

describe('markers', () => {
  it('only Flush and Bookmark are markers', () => {
    assert.equal(isMarker(RecordType.Flush), true);
    assert.equal(isMarker(RecordType.Bookmark), true);
    assert.equal(isMarker(RecordType.Write), false);
    assert.equal(isMarker(RecordType.Zero), false);
    assert.equal(isMarker(RecordType.Trim), false);
  });

  it('a flush payload is the u64 little-endian watermark', () => {
    const p = markerPayload(2 ** 40 + 3);
    assert.equal(p.length, 8);
    assert.equal(p.readBigUInt64LE(0), 2n ** 40n + 3n);
    assert.deepEqual(parseMarkerPayload(p), { watermark: 2 ** 40 + 3, tag: '' });
  });

  it('a bookmark payload round-trips watermark and UTF-8 tag', () => {
    const p = markerPayload(99, 'before upgrade ✓');
    assert.equal(p.length, 8 + Buffer.byteLength('before upgrade ✓'));
    assert.deepEqual(parseMarkerPayload(p), { watermark: 99, tag: 'before upgrade ✓' });
  });

  it('an empty tag round-trips as the empty string', () => {
    assert.deepEqual(parseMarkerPayload(markerPayload(5, '')), { watermark: 5, tag: '' });
  });

  it('a payload shorter than the watermark reads as watermark 0', () => {
    assert.deepEqual(parseMarkerPayload(Buffer.alloc(0)), { watermark: 0, tag: '' });
    assert.deepEqual(parseMarkerPayload(Buffer.from([1, 2, 3])), { watermark: 0, tag: '' });
  });

  it('a marker record round-trips through header and payload', () => {
    const p = markerPayload(41, 'tag');
    const h = encodeHeader(
      { type: RecordType.Bookmark, flags: 0, disk: 0, seq: 42, time: 1, offset: 0, length: 0 },
      p,
    );
    const { header, crc } = decoded(h);
    assert.ok(checkCrc(h, p, crc));
    assert.equal(header.payloadLength, p.length);
    assert.deepEqual(parseMarkerPayload(p), { watermark: 41, tag: 'tag' });
  });
});
