// The undo-journal record: a 48-byte little-endian header and an optional payload
// (a before-image or a marker tag). Pure encode/decode; see docs/formats.md,
// "Undo journal (master target)".
import { crc32c } from '@node-rs/crc32';

export const JOURNAL_MAGIC = 0x4a554252; // "RBUJ" read as little-endian
export const JOURNAL_HEADER_SIZE = 48;
/** Upper bound on one payload: a change carries at most one NBD write (32 MiB). */
export const MAX_JOURNAL_PAYLOAD = 64 * 1024 * 1024;
/** Upper bound on a marker tag, in UTF-8 bytes (as for change-log bookmarks). */
export const MAX_MARKER_TAG = 4096;

export enum JournalRecordType {
  /** What a change's range held just before the change was applied. */
  BeforeImage = 1,
  /** A recovery point: a flush (crash-consistent) or a bookmark (app-consistent). */
  Marker = 2,
}

/** BeforeImage flag: the range read as zeroes; no payload is stored. */
export const FLAG_ZERO = 1;
/**
 * BeforeImage flag: another record of the same change follows (same seq and disk, at
 * offset + length). A change longer than one chunk gets one record per chunk.
 */
export const FLAG_MORE = 2;
/** Marker flag: application-consistent (otherwise crash-consistent). */
export const FLAG_APP = 1;

export interface BeforeImageRecord {
  type: JournalRecordType.BeforeImage;
  seq: number;
  disk: number;
  /** Source time of the change, milliseconds since the epoch. */
  time: number;
  offset: number;
  length: number;
  /** The range's bytes before the change; null when they were all zeroes. */
  beforeImage: Buffer | null;
  /** Another chunk of this change follows (FLAG_MORE). */
  more?: boolean;
}

export interface MarkerRecord {
  type: JournalRecordType.Marker;
  seq: number;
  time: number;
  kind: 'crash' | 'app';
  tag: string;
}

export type JournalRecord = BeforeImageRecord | MarkerRecord;

export interface JournalHeader {
  type: JournalRecordType;
  flags: number;
  disk: number;
  seq: number;
  time: number;
  offset: number;
  length: number;
  payloadLength: number;
  /** CRC32C of header bytes 0..39 and the payload. */
  crc: number;
}

/** Header and payload buffers of one record, ready for a writev. */
export function encodeRecord(r: JournalRecord): { header: Buffer; payload: Buffer } {
  let flags: number;
  let payload: Buffer;
  let disk = 0;
  let offset = 0;
  let length = 0;
  if (r.type === JournalRecordType.BeforeImage) {
    if (r.beforeImage && r.beforeImage.length !== r.length) {
      throw new Error(`before-image of seq ${r.seq} is ${r.beforeImage.length} bytes, expected ${r.length}`);
    }
    flags = (r.beforeImage ? 0 : FLAG_ZERO) | (r.more ? FLAG_MORE : 0);
    payload = r.beforeImage ?? Buffer.alloc(0);
    ({ disk, offset, length } = r);
  } else {
    flags = r.kind === 'app' ? FLAG_APP : 0;
    payload = Buffer.from(r.tag, 'utf8');
    if (payload.length > MAX_MARKER_TAG) throw new Error(`marker tag of seq ${r.seq} is too long`);
  }
  if (payload.length > MAX_JOURNAL_PAYLOAD) throw new Error(`payload of seq ${r.seq} is too large`);
  const h = Buffer.allocUnsafe(JOURNAL_HEADER_SIZE);
  h.writeUInt32LE(JOURNAL_MAGIC, 0);
  h.writeUInt8(r.type, 4);
  h.writeUInt8(flags, 5);
  h.writeUInt16LE(disk, 6);
  h.writeBigUInt64LE(BigInt(r.seq), 8);
  h.writeBigUInt64LE(BigInt(r.time), 16);
  h.writeBigUInt64LE(BigInt(offset), 24);
  h.writeUInt32LE(length, 32);
  h.writeUInt32LE(payload.length, 36);
  const headerCrc = crc32c(h.subarray(0, 40));
  // The record CRC continues from the header CRC, so it covers header and payload.
  h.writeUInt32LE(crc32c(payload, headerCrc), 40);
  h.writeUInt32LE(headerCrc, 44);
  return { header: h, payload };
}

export type HeaderResult = { ok: true; header: JournalHeader } | { ok: false; reason: string };

/**
 * Decodes and validates a header on its own (magic, header CRC, type, flags, field
 * consistency), so segments can be indexed without reading payloads.
 */
export function decodeHeader(b: Buffer): HeaderResult {
  if (b.length < JOURNAL_HEADER_SIZE) return { ok: false, reason: 'truncated record header' };
  const magic = b.readUInt32LE(0);
  if (magic !== JOURNAL_MAGIC) return { ok: false, reason: `bad record magic 0x${magic.toString(16)}` };
  if (crc32c(b.subarray(0, 40)) !== b.readUInt32LE(44)) return { ok: false, reason: 'header crc mismatch' };
  const type = b.readUInt8(4);
  const flags = b.readUInt8(5);
  const disk = b.readUInt16LE(6);
  const offset = Number(b.readBigUInt64LE(24));
  const length = b.readUInt32LE(32);
  const payloadLength = b.readUInt32LE(36);
  if (type === JournalRecordType.BeforeImage) {
    if (flags & ~(FLAG_ZERO | FLAG_MORE))
      return { ok: false, reason: `unknown flags 0x${flags.toString(16)}` };
    if (flags & FLAG_ZERO) {
      if (payloadLength !== 0)
        return { ok: false, reason: `payload length ${payloadLength} with a zero before-image` };
    } else if (payloadLength !== length) {
      return { ok: false, reason: `payload length ${payloadLength} does not match length ${length}` };
    }
  } else if (type === JournalRecordType.Marker) {
    if (flags & ~FLAG_APP) return { ok: false, reason: `unknown flags 0x${flags.toString(16)}` };
    if (disk !== 0 || offset !== 0 || length !== 0) return { ok: false, reason: 'marker with a disk range' };
    if (payloadLength > MAX_MARKER_TAG) return { ok: false, reason: `marker tag length ${payloadLength}` };
  } else {
    return { ok: false, reason: `unknown record type ${type}` };
  }
  if (payloadLength > MAX_JOURNAL_PAYLOAD) {
    return { ok: false, reason: `payload length ${payloadLength} too large` };
  }
  return {
    ok: true,
    header: {
      type,
      flags,
      disk,
      seq: Number(b.readBigUInt64LE(8)),
      time: Number(b.readBigUInt64LE(16)),
      offset,
      length,
      payloadLength,
      crc: b.readUInt32LE(40),
    },
  };
}

/** Whether the record CRC matches; `headerBytes` is the whole 48-byte header. */
export function checkRecordCrc(headerBytes: Buffer, payload: Buffer, expected: number): boolean {
  return crc32c(payload, crc32c(headerBytes.subarray(0, 40))) === expected;
}

/** Decodes a whole validated record (header + payload) back into a JournalRecord. */
export function decodeRecord(header: JournalHeader, payload: Buffer): JournalRecord {
  if (header.type === JournalRecordType.Marker) {
    return {
      type: JournalRecordType.Marker,
      seq: header.seq,
      time: header.time,
      kind: header.flags & FLAG_APP ? 'app' : 'crash',
      tag: payload.toString('utf8'),
    };
  }
  return {
    type: JournalRecordType.BeforeImage,
    seq: header.seq,
    disk: header.disk,
    time: header.time,
    offset: header.offset,
    length: header.length,
    beforeImage: header.flags & FLAG_ZERO ? null : payload,
    more: (header.flags & FLAG_MORE) !== 0,
  };
}
