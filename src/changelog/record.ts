// The change-log record: a 48-byte little-endian header and an optional payload,
// covered by one CRC32C. Pure encode/decode; see docs/formats.md.
import { crc32c } from '@node-rs/crc32';

export const RECORD_MAGIC = 0x4c434252; // "RBCL" read as little-endian
export const HEADER_SIZE = 48;
/** Upper bound on one record's payload: the NBD server never accepts larger writes. */
export const MAX_RECORD_PAYLOAD = 64 * 1024 * 1024;

export enum RecordType {
  /** Data written at offset; payload = the data. */
  Write = 1,
  /** Range made to read as zeroes (NBD WRITE_ZEROES); no payload. */
  Zero = 2,
  /** Range discarded (NBD TRIM); replayed as zeroes; no payload. */
  Trim = 3,
  /** Crash-consistent marker written for each FLUSH; payload = u64 disk-applied watermark. */
  Flush = 4,
  /** Named bookmark (app-consistent point later); payload = u64 watermark + UTF-8 tag. */
  Bookmark = 5,
}

export interface RecordHeader {
  type: RecordType;
  flags: number;
  disk: number;
  seq: number;
  /** Source time, milliseconds since the epoch. */
  time: number;
  offset: number;
  length: number;
  payloadLength: number;
}

export interface LogRecord extends RecordHeader {
  payload: Buffer;
}

export function isMarker(type: RecordType): boolean {
  return type === RecordType.Flush || type === RecordType.Bookmark;
}

export function encodeHeader(h: Omit<RecordHeader, 'payloadLength'>, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b.writeUInt32LE(RECORD_MAGIC, 0);
  b.writeUInt8(h.type, 4);
  b.writeUInt8(h.flags, 5);
  b.writeUInt16LE(h.disk, 6);
  writeU64(b, h.seq, 8);
  writeU64(b, h.time, 16);
  writeU64(b, h.offset, 24);
  b.writeUInt32LE(h.length, 32);
  b.writeUInt32LE(payload.length, 36);
  b.writeUInt32LE(0, 44);
  const crc = crc32c(payload, crc32c(b.subarray(0, 40)));
  b.writeUInt32LE(crc, 40);
  return b;
}

/** A u64 LE from a safe integer, without a BigInt (encodeHeader runs once per write). */
function writeU64(b: Buffer, value: number, at: number): void {
  b.writeUInt32LE(value % 0x100000000, at);
  b.writeUInt32LE(Math.floor(value / 0x100000000), at + 4);
}

export type HeaderResult = { ok: true; header: RecordHeader; crc: number } | { ok: false; reason: string };

/** Decodes a header without checking the CRC (which also covers the payload). */
export function decodeHeader(b: Buffer): HeaderResult {
  if (b.length < HEADER_SIZE) return { ok: false, reason: `short header (${b.length} bytes)` };
  const magic = b.readUInt32LE(0);
  if (magic !== RECORD_MAGIC) return { ok: false, reason: `bad record magic 0x${magic.toString(16)}` };
  const type = b.readUInt8(4);
  if (type < RecordType.Write || type > RecordType.Bookmark) {
    return { ok: false, reason: `unknown record type ${type}` };
  }
  const payloadLength = b.readUInt32LE(36);
  if (payloadLength > MAX_RECORD_PAYLOAD)
    return { ok: false, reason: `payload length ${payloadLength} too large` };
  return {
    ok: true,
    crc: b.readUInt32LE(40),
    header: {
      type,
      flags: b.readUInt8(5),
      disk: b.readUInt16LE(6),
      seq: Number(b.readBigUInt64LE(8)),
      time: Number(b.readBigUInt64LE(16)),
      offset: Number(b.readBigUInt64LE(24)),
      length: b.readUInt32LE(32),
      payloadLength,
    },
  };
}

export function checkCrc(headerBytes: Buffer, payload: Buffer, expected: number): boolean {
  return crc32c(payload, crc32c(headerBytes.subarray(0, 40))) === expected;
}

export function markerPayload(watermark: number, tag?: string): Buffer {
  const t = tag === undefined ? Buffer.alloc(0) : Buffer.from(tag, 'utf8');
  const b = Buffer.alloc(8 + t.length);
  b.writeBigUInt64LE(BigInt(watermark), 0);
  t.copy(b, 8);
  return b;
}

export function parseMarkerPayload(payload: Buffer): { watermark: number; tag: string } {
  if (payload.length < 8) return { watermark: 0, tag: '' };
  return { watermark: Number(payload.readBigUInt64LE(0)), tag: payload.subarray(8).toString('utf8') };
}
