// Pure encoding and parsing of the transmission phase: requests, simple and
// structured replies.
import {
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './constants.js';

export interface Request {
  flags: number;
  type: number;
  /** The client's opaque cookie, echoed back verbatim. */
  cookie: Buffer;
  offset: number;
  length: number;
}

/** Parses a 28-byte request header; a string result names what is malformed. */
export function parseRequest(b: Buffer): Request | string {
  if (b.length < REQUEST_HEADER_SIZE) return 'short request header';
  const magic = b.readUInt32BE(0);
  if (magic !== REQUEST_MAGIC) return `bad request magic 0x${magic.toString(16)}`;
  const offset = b.readBigUInt64BE(16);
  // Offsets beyond 2^53 cannot address any real export; reject them as out of range later.
  const off = offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset);
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: Buffer.from(b.subarray(8, 16)),
    offset: off,
    length: b.readUInt32BE(24),
  };
}

export function encodeRequest(r: Request): Buffer {
  const b = Buffer.alloc(REQUEST_HEADER_SIZE);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  r.cookie.copy(b, 8, 0, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

export function encodeSimpleReply(cookie: Buffer, error: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  cookie.copy(b, 8, 0, 8);
  return b;
}

function chunkHeader(cookie: Buffer, flags: number, type: number, length: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  cookie.copy(b, 8, 0, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/** Header (chunk header + offset) of a final OFFSET_DATA chunk; the data follows it on the wire. */
export function encodeOffsetDataHeader(cookie: Buffer, offset: number, dataLength: number): Buffer {
  const h = chunkHeader(cookie, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, 8 + dataLength);
  const b = Buffer.alloc(28);
  h.copy(b, 0);
  b.writeBigUInt64BE(BigInt(offset), 20);
  return b;
}

/** A final NONE chunk: a structured success reply that carries no data. */
export function encodeStructuredDone(cookie: Buffer): Buffer {
  return chunkHeader(cookie, REPLY_FLAG_DONE, REPLY_TYPE.NONE, 0);
}

export function encodeOffsetHole(cookie: Buffer, offset: number, length: number, done: boolean): Buffer {
  const b = Buffer.alloc(32);
  chunkHeader(cookie, done ? REPLY_FLAG_DONE : 0, REPLY_TYPE.OFFSET_HOLE, 12).copy(b, 0);
  b.writeBigUInt64BE(BigInt(offset), 20);
  b.writeUInt32BE(length, 28);
  return b;
}

export function encodeStructuredError(cookie: Buffer, error: number, message: string): Buffer {
  const msg = Buffer.from(message, 'utf8').subarray(0, 4096);
  const b = Buffer.alloc(20 + 6 + msg.length);
  chunkHeader(cookie, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, 6 + msg.length).copy(b, 0);
  b.writeUInt32BE(error, 20);
  b.writeUInt16BE(msg.length, 24);
  msg.copy(b, 26);
  return b;
}

export interface StatusExtent {
  length: number;
  flags: number;
}

export function encodeBlockStatus(cookie: Buffer, contextId: number, extents: StatusExtent[]): Buffer {
  const len = 4 + 8 * extents.length;
  const b = Buffer.alloc(20 + len);
  chunkHeader(cookie, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, len).copy(b, 0);
  b.writeUInt32BE(contextId, 20);
  let p = 24;
  for (const e of extents) {
    b.writeUInt32BE(e.length, p);
    b.writeUInt32BE(e.flags, p + 4);
    p += 8;
  }
  return b;
}
