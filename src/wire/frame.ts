// The replication wire protocol's frames: a 16-byte big-endian header and a payload, covered by
// one CRC32C. Pure encode/decode, no I/O; the layout is documented in docs/protocol.md.
//
//   offset size  field
//   0      4     magic 0x52425746 ("RBWF")
//   4      1     version (1)
//   5      1     type (FrameType)
//   6      2     flags (bit 0: payload lz4-compressed, see lz4-payload.ts; others must be 0)
//   8      4     payload length in bytes
//   12     4     CRC32C of header bytes 0..11 followed by the payload
//   16     n     payload
import { crc32c } from '@node-rs/crc32';
import { ByteQueue } from '../nbd/byte-queue.js';
import { isRole, ROLES, type Role } from '../pki/roles.js';
import { markHeadroom, takeHeadroom } from '../util/headroom.js';
import { lz4DecompressPayload } from './lz4-payload.js';

export const FRAME_MAGIC = 0x52425746; // "RBWF"
export const FRAME_VERSION = 1;
export const FRAME_HEADER_SIZE = 16;
/** Largest payload accepted: a change carries at most one NBD write (32 MiB) plus its header. */
export const MAX_FRAME_PAYLOAD = 64 * 1024 * 1024;
/** Header flag bit 0: the payload on the wire is in its lz4 form (lz4-payload.ts). */
export const FRAME_FLAG_LZ4 = 0x0001;
const KNOWN_FLAGS = FRAME_FLAG_LZ4;

export enum FrameType {
  /** First frame in each direction: who is speaking and where the stream resumes. */
  Hello = 1,
  /** One write, write-zeroes or trim of one disk, with its sequence number. */
  Change = 2,
  /** A flush (crash-consistent point) or a named bookmark, with its sequence number. */
  Marker = 3,
  /** Everything up to and including seq is durable at the receiver. */
  Ack = 4,
  /** The sender is closing the connection for this reason. */
  Error = 5,
  /** Keeps an idle connection visibly alive; carries the sender's clock. */
  Heartbeat = 6,
  /** The protected machine's disks (id, size, name): sent before the first change of a stream. */
  Disks = 7,
  /** Resync: the block hashes of a range of a replica disk, please (agent -> process server -> master target). */
  HashRequest = 8,
  /** Resync: the answer to a hash request, as of the replica's applied seq. */
  BlockHashes = 9,
  /** Agent -> process server: relay the master target's acks to me; the reverse: durable there through seq. */
  Replicated = 10,
}

const FRAME_TYPE_NAMES: Record<FrameType, string> = {
  [FrameType.Hello]: 'hello',
  [FrameType.Change]: 'change',
  [FrameType.Marker]: 'marker',
  [FrameType.Ack]: 'ack',
  [FrameType.Error]: 'error',
  [FrameType.Heartbeat]: 'heartbeat',
  [FrameType.Disks]: 'disks',
  [FrameType.HashRequest]: 'hash request',
  [FrameType.BlockHashes]: 'block hashes',
  [FrameType.Replicated]: 'replicated',
};

export function frameTypeName(type: number): string {
  return FRAME_TYPE_NAMES[type as FrameType] ?? `type ${type}`;
}

export function isFrameType(type: number): type is FrameType {
  return type in FRAME_TYPE_NAMES;
}

export interface Frame {
  type: FrameType;
  /** As on the wire (FRAME_FLAG_LZ4 says the payload arrived compressed). */
  flags: number;
  /** The payload, decompressed when it arrived compressed. */
  payload: Buffer;
}

/** A malformed frame or payload; `message` names what is wrong. */
export class FrameError extends Error {
  override name = 'FrameError';
}

function checkFlags(flags: number, type?: number): void {
  if ((flags & ~KNOWN_FLAGS) !== 0 || !Number.isInteger(flags)) {
    const hex = `0x${flags.toString(16).padStart(4, '0')}`;
    throw new FrameError(`unknown frame flags ${hex}${type === undefined ? '' : ` (type ${type})`}`);
  }
}

/**
 * A payload buffer of n bytes with room for a frame header in front of it: encodeFrame
 * then writes the header there instead of copying the payload into a new buffer.
 */
function allocFramePayload(n: number): Buffer {
  // Never from Buffer's shared pool: the whole ArrayBuffer must be this payload's
  // (util/headroom.ts), so that it may move to a compression worker and back.
  const payload = Buffer.allocUnsafeSlow(FRAME_HEADER_SIZE + n).subarray(FRAME_HEADER_SIZE);
  markHeadroom(payload, FRAME_HEADER_SIZE);
  return payload;
}

/**
 * Encodes one frame: header and payload in one buffer (the payload's own, when it has room
 * for the header in front: util/headroom.ts). With FRAME_FLAG_LZ4 the payload given must
 * already be in its lz4 form (frame-pipeline.ts makes it).
 */
export function encodeFrame(type: FrameType, payload: Uint8Array = Buffer.alloc(0), flags = 0): Buffer {
  if (!isFrameType(type)) throw new FrameError(`unknown frame type ${type}`);
  if (payload.length > MAX_FRAME_PAYLOAD) {
    throw new FrameError(`frame payload ${payload.length} exceeds the maximum ${MAX_FRAME_PAYLOAD}`);
  }
  checkFlags(flags);
  let b = takeHeadroom(payload, FRAME_HEADER_SIZE);
  if (!b) {
    b = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payload.length);
    b.set(payload, FRAME_HEADER_SIZE);
  }
  b.writeUInt32BE(FRAME_MAGIC, 0);
  b.writeUInt8(FRAME_VERSION, 4);
  b.writeUInt8(type, 5);
  b.writeUInt16BE(flags, 6);
  b.writeUInt32BE(payload.length, 8);
  b.writeUInt32BE(frameCrc(b.subarray(0, 12), payload), 12);
  return b;
}

function frameCrc(header12: Uint8Array, payload: Uint8Array): number {
  return crc32c(payload, crc32c(header12));
}

interface PendingHeader {
  type: number;
  flags: number;
  length: number;
  crc: number;
  bytes: Buffer;
}

/**
 * Splits a byte stream into frames. Feed it chunks of any size with push(); it returns the
 * complete, checked frames. The first problem throws a FrameError naming it, and every later
 * call throws the same error: a stream is not resynchronised after a bad frame. A frame is
 * returned only after its CRC has been checked, so nothing of a corrupt frame is ever handed on.
 * A payload may share memory with the chunks pushed: do not reuse a chunk after pushing it.
 */
export class FrameDecoder {
  private readonly queue = new ByteQueue();
  private header: PendingHeader | undefined;
  private failed: FrameError | undefined;
  /** Frames decoded so far. */
  frames = 0;

  constructor(private readonly maxPayload = MAX_FRAME_PAYLOAD) {}

  /** Bytes held that do not yet form a whole frame. */
  get buffered(): number {
    return this.queue.length + (this.header ? FRAME_HEADER_SIZE : 0);
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    this.queue.push(
      Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length),
    );
    const out: Frame[] = [];
    try {
      for (;;) {
        if (!this.header) {
          if (this.queue.length < FRAME_HEADER_SIZE) break;
          this.header = this.parseHeader(Buffer.from(this.queue.take(FRAME_HEADER_SIZE)));
        }
        const h = this.header;
        if (this.queue.length < h.length) break;
        const payload = h.length === 0 ? Buffer.alloc(0) : this.queue.take(h.length);
        this.header = undefined;
        if (frameCrc(h.bytes.subarray(0, 12), payload) !== h.crc) {
          throw new FrameError(`frame CRC mismatch (type ${h.type}, length ${h.length})`);
        }
        if (!isFrameType(h.type)) throw new FrameError(`unknown frame type ${h.type}`);
        checkFlags(h.flags, h.type);
        this.frames++;
        out.push({ type: h.type, flags: h.flags, payload: this.plain(h, payload) });
      }
    } catch (e) {
      this.failed =
        e instanceof FrameError ? e : new FrameError(`internal decoder error: ${(e as Error).message}`);
      throw this.failed;
    }
    return out;
  }

  /** The stream ended: an error if it stopped inside a frame. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.header) {
      this.failed = new FrameError(
        `truncated frame: stream ended after ${this.queue.length} of ${this.header.length} payload bytes ` +
          `(type ${this.header.type})`,
      );
    } else if (this.queue.length > 0) {
      this.failed = new FrameError(
        `truncated frame: stream ended after ${this.queue.length} of ${FRAME_HEADER_SIZE} header bytes`,
      );
    }
    if (this.failed) throw this.failed;
  }

  /** Decompresses after the CRC check, never beyond maxPayload (a bigger claim is refused unread). */
  private plain(h: PendingHeader, payload: Buffer): Buffer {
    if ((h.flags & FRAME_FLAG_LZ4) === 0) return payload;
    try {
      return lz4DecompressPayload(payload, this.maxPayload);
    } catch (e) {
      throw new FrameError(`${(e as Error).message} (type ${h.type}, length ${h.length})`);
    }
  }

  /** Checks what can be checked before the payload arrives, so a bad length is never buffered. */
  private parseHeader(b: Buffer): PendingHeader {
    const magic = b.readUInt32BE(0);
    if (magic !== FRAME_MAGIC) {
      throw new FrameError(`bad frame magic 0x${magic.toString(16).padStart(8, '0')}`);
    }
    const version = b.readUInt8(4);
    if (version !== FRAME_VERSION) throw new FrameError(`unsupported frame version ${version}`);
    const length = b.readUInt32BE(8);
    if (length > this.maxPayload) {
      throw new FrameError(`frame payload ${length} exceeds the maximum ${this.maxPayload}`);
    }
    return { type: b.readUInt8(5), flags: b.readUInt16BE(6), length, crc: b.readUInt32BE(12), bytes: b };
  }
}

// ---- payloads ---------------------------------------------------------------------------------
// All integers big-endian. Sequence numbers, times and offsets are u64 on the wire and must be
// safe JavaScript integers (< 2^53); strings are a u16 byte length followed by UTF-8.

export interface HelloPayload {
  role: Role;
  name: string;
  /** The protected machine the stream belongs to (agents send it; others may omit it). */
  machineId?: string;
  /** The first sequence number the sender wants (receiver side) or will send next (sender side). */
  resumeFrom: number;
}

export type ChangeKind = 'write' | 'zero' | 'trim';
const CHANGE_KINDS: Record<ChangeKind, number> = { write: 1, zero: 2, trim: 3 };

export interface ChangePayload {
  seq: number;
  disk: number;
  kind: ChangeKind;
  /** The change-log record's flags, carried unchanged (bit 0 on `zero`: do not punch a hole). */
  flags: number;
  /** Source time, milliseconds since the epoch. */
  time: number;
  offset: number;
  length: number;
  /** The written bytes (`write` only: exactly `length` bytes); empty for `zero` and `trim`. */
  data: Buffer;
}

export type MarkerKind = 'flush' | 'bookmark';
const MARKER_KINDS: Record<MarkerKind, number> = { flush: 1, bookmark: 2 };

export interface MarkerPayload {
  seq: number;
  kind: MarkerKind;
  time: number;
  /** Bookmark name; empty for a flush. */
  tag: string;
}

export interface AckPayload {
  seq: number;
}

export interface ErrorPayload {
  code: number;
  message: string;
}

export interface DiskInfo {
  /** The agent's disk id, as in change frames (1..65535). */
  id: number;
  size: number;
  name: string;
}

export interface HeartbeatPayload {
  /** The sender's clock; for a position heartbeat, the source time it speaks for (ms). */
  time: number;
  /**
   * Position heartbeat: every change the protected machine made before `time` has a
   * sequence number <= throughSeq, and the sender has already sent all of them on this
   * connection. Absent: a plain clock heartbeat (8-byte payload, as version 1 peers send).
   */
  throughSeq?: number;
}

/** Codes carried by error frames. */
export enum WireErrorCode {
  /** A malformed frame or payload, or a frame out of place. */
  Protocol = 1,
  /** The peer's certificate or role is not accepted here. */
  Unauthorized = 2,
  /** The sender is shutting down. */
  Shutdown = 3,
  /** Something failed inside the sender. */
  Internal = 4,
  /**
   * The receiver no longer takes this machine's stream (its replica failed over): the
   * sender retries only rarely, until the replica is adopted again or the machine removed.
   */
  Retired = 5,
}

export const CHANGE_HEADER_SIZE = 32;
const MAX_STRING = 0xffff;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function u64(b: Buffer, at: number, what: string): number {
  const v = b.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`${what} ${v} exceeds 2^53 - 1`);
  return Number(v);
}

function checkU64(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new FrameError(`${what} ${v} is not an integer in 0..2^53-1`);
}

function checkUint(v: number, bits: 8 | 16 | 32, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits)
    throw new FrameError(`${what} ${v} does not fit in u${bits}`);
}

function stringBytes(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > MAX_STRING) throw new FrameError(`${what} is ${b.length} bytes, longer than ${MAX_STRING}`);
  return b;
}

/** Reads strings and integers from a payload, naming the payload in every error. */
class Reader {
  at = 0;
  constructor(
    private readonly b: Buffer,
    private readonly what: string,
  ) {}

  need(n: number, field: string): void {
    if (this.b.length - this.at < n) {
      throw new FrameError(`${this.what} payload is ${this.b.length} bytes: too short for its ${field}`);
    }
  }
  u8(field: string): number {
    this.need(1, field);
    return this.b.readUInt8(this.at++);
  }
  u16(field: string): number {
    this.need(2, field);
    const v = this.b.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  u64(field: string): number {
    this.need(8, field);
    const v = u64(this.b, this.at, `${this.what} ${field}`);
    this.at += 8;
    return v;
  }
  str(field: string): string {
    const n = this.u16(`${field} length`);
    this.need(n, field);
    const s = this.b.subarray(this.at, this.at + n);
    this.at += n;
    try {
      return UTF8.decode(s);
    } catch {
      throw new FrameError(`${this.what} ${field} is not valid UTF-8`);
    }
  }
  rest(): Buffer {
    const r = this.b.subarray(this.at);
    this.at = this.b.length;
    return r;
  }
  done(): void {
    if (this.at !== this.b.length) {
      throw new FrameError(`${this.what} payload has ${this.b.length - this.at} unexpected trailing bytes`);
    }
  }
}

// hello: resumeFrom u64, role str, name str, machineId str (empty = none)
export function encodeHello(h: HelloPayload): Buffer {
  checkU64(h.resumeFrom, 'hello resumeFrom');
  if (!isRole(h.role)) throw new FrameError(`hello role '${h.role}' is unknown`);
  const role = stringBytes(h.role, 'hello role');
  const name = stringBytes(h.name, 'hello name');
  const machine = stringBytes(h.machineId ?? '', 'hello machineId');
  const b = Buffer.alloc(8 + 2 + role.length + 2 + name.length + 2 + machine.length);
  let at = b.writeBigUInt64BE(BigInt(h.resumeFrom), 0);
  for (const s of [role, name, machine]) {
    at = b.writeUInt16BE(s.length, at);
    at += s.copy(b, at);
  }
  return b;
}

export function decodeHello(payload: Buffer): HelloPayload {
  const r = new Reader(payload, 'hello');
  const resumeFrom = r.u64('resumeFrom');
  const role = r.str('role');
  const name = r.str('name');
  const machineId = r.str('machineId');
  r.done();
  if (!isRole(role)) throw new FrameError(`hello role '${role}' is unknown (expected ${ROLES.join(', ')})`);
  if (name.length === 0) throw new FrameError('hello name is empty');
  const h: HelloPayload = { role, name, resumeFrom };
  if (machineId.length > 0) h.machineId = machineId;
  return h;
}

// change: seq u64, time u64, offset u64, length u32, disk u16, kind u8, flags u8, data
export function encodeChange(c: ChangePayload): Buffer {
  checkU64(c.seq, 'change seq');
  checkU64(c.time, 'change time');
  checkU64(c.offset, 'change offset');
  checkUint(c.length, 32, 'change length');
  checkUint(c.disk, 16, 'change disk');
  checkUint(c.flags, 8, 'change flags');
  const kind = CHANGE_KINDS[c.kind];
  if (kind === undefined) throw new FrameError(`change kind '${c.kind}' is unknown`);
  const dataLength = c.kind === 'write' ? c.length : 0;
  if (c.data.length !== dataLength) {
    throw new FrameError(`${c.kind} change of length ${c.length} carries ${c.data.length} data bytes`);
  }
  if (CHANGE_HEADER_SIZE + dataLength > MAX_FRAME_PAYLOAD) {
    throw new FrameError(`change of ${dataLength} data bytes exceeds the frame maximum ${MAX_FRAME_PAYLOAD}`);
  }
  // Data read whole from a log has its record header's 48 bytes free in front: the change
  // header goes there (and the frame header before it), so the data is not copied.
  const inPlace = dataLength > 0 ? takeHeadroom(c.data, CHANGE_HEADER_SIZE) : undefined;
  const b = inPlace ?? allocFramePayload(CHANGE_HEADER_SIZE + dataLength);
  b.writeBigUInt64BE(BigInt(c.seq), 0);
  b.writeBigUInt64BE(BigInt(c.time), 8);
  b.writeBigUInt64BE(BigInt(c.offset), 16);
  b.writeUInt32BE(c.length, 24);
  b.writeUInt16BE(c.disk, 28);
  b.writeUInt8(kind, 30);
  b.writeUInt8(c.flags, 31);
  if (!inPlace) c.data.copy(b, CHANGE_HEADER_SIZE);
  return b;
}

export function decodeChange(payload: Buffer): ChangePayload {
  const r = new Reader(payload, 'change');
  r.need(CHANGE_HEADER_SIZE, `${CHANGE_HEADER_SIZE}-byte header`);
  const seq = r.u64('seq');
  const time = r.u64('time');
  const offset = r.u64('offset');
  const length = r.u32('length');
  const disk = r.u16('disk');
  const kindCode = r.u8('kind');
  const flags = r.u8('flags');
  const kind = (Object.keys(CHANGE_KINDS) as ChangeKind[]).find((k) => CHANGE_KINDS[k] === kindCode);
  if (!kind) throw new FrameError(`change kind ${kindCode} is unknown`);
  const data = r.rest();
  const expected = kind === 'write' ? length : 0;
  if (data.length !== expected) {
    throw new FrameError(`${kind} change of length ${length} carries ${data.length} data bytes (seq ${seq})`);
  }
  if (offset + length > Number.MAX_SAFE_INTEGER) {
    throw new FrameError(`change range ${offset}+${length} exceeds 2^53 - 1 (seq ${seq})`);
  }
  return { seq, disk, kind, flags, time, offset, length, data };
}

// marker: seq u64, time u64, kind u8, reserved u8 (0), tag str
export function encodeMarker(m: MarkerPayload): Buffer {
  checkU64(m.seq, 'marker seq');
  checkU64(m.time, 'marker time');
  const kind = MARKER_KINDS[m.kind];
  if (kind === undefined) throw new FrameError(`marker kind '${m.kind}' is unknown`);
  const tag = stringBytes(m.tag, 'marker tag');
  const b = Buffer.alloc(20 + tag.length);
  b.writeBigUInt64BE(BigInt(m.seq), 0);
  b.writeBigUInt64BE(BigInt(m.time), 8);
  b.writeUInt8(kind, 16);
  b.writeUInt16BE(tag.length, 18);
  tag.copy(b, 20);
  return b;
}

export function decodeMarker(payload: Buffer): MarkerPayload {
  const r = new Reader(payload, 'marker');
  const seq = r.u64('seq');
  const time = r.u64('time');
  const kindCode = r.u8('kind');
  const reserved = r.u8('reserved byte');
  const tag = r.str('tag');
  r.done();
  const kind = (Object.keys(MARKER_KINDS) as MarkerKind[]).find((k) => MARKER_KINDS[k] === kindCode);
  if (!kind) throw new FrameError(`marker kind ${kindCode} is unknown`);
  if (reserved !== 0) throw new FrameError(`marker reserved byte is ${reserved}, not 0`);
  return { seq, kind, time, tag };
}

// ack: seq u64
export function encodeAck(a: AckPayload): Buffer {
  checkU64(a.seq, 'ack seq');
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(a.seq), 0);
  return b;
}

export function decodeAck(payload: Buffer): AckPayload {
  const r = new Reader(payload, 'ack');
  const seq = r.u64('seq');
  r.done();
  return { seq };
}

// error: code u16, message str
export function encodeError(e: ErrorPayload): Buffer {
  checkUint(e.code, 16, 'error code');
  const msg = stringBytes(e.message, 'error message');
  const b = Buffer.alloc(4 + msg.length);
  b.writeUInt16BE(e.code, 0);
  b.writeUInt16BE(msg.length, 2);
  msg.copy(b, 4);
  return b;
}

export function decodeError(payload: Buffer): ErrorPayload {
  const r = new Reader(payload, 'error');
  const code = r.u16('code');
  const message = r.str('message');
  r.done();
  return { code, message };
}

// heartbeat: time u64, then throughSeq u64 for a position heartbeat (16 bytes in all)
export function encodeHeartbeat(h: HeartbeatPayload): Buffer {
  checkU64(h.time, 'heartbeat time');
  if (h.throughSeq !== undefined) checkU64(h.throughSeq, 'heartbeat throughSeq');
  const b = Buffer.alloc(h.throughSeq === undefined ? 8 : 16);
  b.writeBigUInt64BE(BigInt(h.time), 0);
  if (h.throughSeq !== undefined) b.writeBigUInt64BE(BigInt(h.throughSeq), 8);
  return b;
}

export function decodeHeartbeat(payload: Buffer): HeartbeatPayload {
  const r = new Reader(payload, 'heartbeat');
  const time = r.u64('time');
  if (payload.length === 8) return { time };
  const throughSeq = r.u64('throughSeq');
  r.done();
  return { time, throughSeq };
}

/** Error messages are cut to fit a u16 string without splitting a UTF-8 sequence. */
export function errorFrame(code: WireErrorCode | number, message: string): Buffer {
  let m = Buffer.from(message, 'utf8');
  if (m.length > 1024) m = m.subarray(0, 1024);
  return encodeFrame(
    FrameType.Error,
    encodeError({ code, message: m.toString('utf8').replace(/\uFFFD$/, '') }),
  );
}

// disks: count u16, then per disk: id u16, size u64, name str
export function encodeDisks(disks: DiskInfo[]): Buffer {
  checkUint(disks.length, 16, 'disks count');
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0]!.writeUInt16BE(disks.length, 0);
  for (const d of disks) {
    checkUint(d.id, 16, 'disk id');
    checkU64(d.size, 'disk size');
    const name = stringBytes(d.name, 'disk name');
    const b = Buffer.alloc(2 + 8 + 2 + name.length);
    b.writeUInt16BE(d.id, 0);
    b.writeBigUInt64BE(BigInt(d.size), 2);
    b.writeUInt16BE(name.length, 10);
    name.copy(b, 12);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

export function decodeDisks(payload: Buffer): DiskInfo[] {
  const r = new Reader(payload, 'disks');
  const n = r.u16('count');
  const out: DiskInfo[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const id = r.u16(`disk ${i} id`);
    const size = r.u64(`disk ${i} size`);
    const name = r.str(`disk ${i} name`);
    if (id === 0) throw new FrameError(`disks: disk ${i} has id 0`);
    if (seen.has(id)) throw new FrameError(`disks: disk id ${id} appears twice`);
    seen.add(id);
    out.push({ id, size, name });
  }
  r.done();
  return out;
}

/** A protected machine's id as streams carry it: also a directory name at the receivers. */
export function isValidMachineId(id: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id);
}

// ---- resync: block hashes --------------------------------------------------------------------

/** Resync hashes blocks of a power-of-two size in this range (64 KiB by default). */
export const MIN_HASH_BLOCK = 4096;
export const MAX_HASH_BLOCK = 1024 * 1024;
/** Most blocks in one request (a 16384-block answer is at most 147 KiB). */
export const MAX_HASH_COUNT = 16384;

export interface HashRange {
  /** Chosen by the requester; the answer carries it back. */
  requestId: number;
  disk: number;
  blockSize: number;
  /** A multiple of blockSize. */
  offset: number;
  count: number;
}

export interface HashRequestPayload extends HashRange {
  /** Answer only once the replica has applied every change through this seq. */
  afterSeq: number;
}

/** One block of a replica disk: all zeroes (or a hole), or data with its xxh64. */
export type BlockHash = { zero: true } | { zero: false; hash: bigint };

export interface BlockHashesPayload extends HashRange {
  /** The replica's applied seq when the blocks were read. */
  appliedThrough: number;
  /** One per block, in order; fewer than count when the range ends at the disk's end. */
  blocks: BlockHash[];
}

const HASH_RANGE_SIZE = 24;

function checkHashRange(r: HashRange, what: string): void {
  checkUint(r.requestId, 32, `${what} requestId`);
  checkUint(r.disk, 16, `${what} disk`);
  checkU64(r.offset, `${what} offset`);
  const bs = r.blockSize;
  if (!Number.isInteger(bs) || bs < MIN_HASH_BLOCK || bs > MAX_HASH_BLOCK || (bs & (bs - 1)) !== 0) {
    throw new FrameError(
      `${what} block size ${bs} is not a power of two in ${MIN_HASH_BLOCK}..${MAX_HASH_BLOCK}`,
    );
  }
  if (!Number.isInteger(r.count) || r.count < 1 || r.count > MAX_HASH_COUNT) {
    throw new FrameError(`${what} block count ${r.count} is not in 1..${MAX_HASH_COUNT}`);
  }
  if (r.offset % bs !== 0) throw new FrameError(`${what} offset ${r.offset} is not a multiple of ${bs}`);
  if (r.offset + r.count * bs > Number.MAX_SAFE_INTEGER) {
    throw new FrameError(`${what} range exceeds 2^53 - 1`);
  }
}

function writeHashRange(b: Buffer, r: HashRange): void {
  b.writeUInt32BE(r.requestId, 0);
  b.writeUInt16BE(r.disk, 4);
  b.writeUInt16BE(0, 6);
  b.writeUInt32BE(r.blockSize, 8);
  b.writeUInt32BE(r.count, 12);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
}

function readHashRange(r: Reader, what: string): HashRange {
  const requestId = r.u32('requestId');
  const disk = r.u16('disk');
  const reserved = r.u16('reserved');
  const blockSize = r.u32('block size');
  const count = r.u32('count');
  const offset = r.u64('offset');
  if (reserved !== 0) throw new FrameError(`${what} reserved field is ${reserved}, not 0`);
  const req = { requestId, disk, blockSize, count, offset };
  checkHashRange(req, what);
  return req;
}

// hash request: requestId u32, disk u16, reserved u16, blockSize u32, count u32, offset u64,
// afterSeq u64
export function encodeHashRequest(r: HashRequestPayload): Buffer {
  checkHashRange(r, 'hash request');
  checkU64(r.afterSeq, 'hash request afterSeq');
  const b = Buffer.alloc(HASH_RANGE_SIZE + 8);
  writeHashRange(b, r);
  b.writeBigUInt64BE(BigInt(r.afterSeq), HASH_RANGE_SIZE);
  return b;
}

export function decodeHashRequest(payload: Buffer): HashRequestPayload {
  const r = new Reader(payload, 'hash request');
  const range = readHashRange(r, 'hash request');
  const afterSeq = r.u64('afterSeq');
  r.done();
  return { ...range, afterSeq };
}

// block hashes: the request's 24 bytes, appliedThrough u64, then per block a state u8
// (0 = zeroes, 1 = data) and, for data, its xxh64 as u64
export function encodeBlockHashes(h: BlockHashesPayload): Buffer {
  checkHashRange(h, 'block hashes');
  checkU64(h.appliedThrough, 'block hashes appliedThrough');
  if (h.blocks.length > h.count) {
    throw new FrameError(`block hashes carry ${h.blocks.length} blocks for a count of ${h.count}`);
  }
  const dataBlocks = h.blocks.reduce((n, x) => n + (x.zero ? 0 : 1), 0);
  const b = Buffer.alloc(HASH_RANGE_SIZE + 8 + h.blocks.length + dataBlocks * 8);
  writeHashRange(b, h);
  b.writeBigUInt64BE(BigInt(h.appliedThrough), HASH_RANGE_SIZE);
  let at = HASH_RANGE_SIZE + 8;
  for (const x of h.blocks) {
    if (x.zero) at = b.writeUInt8(0, at);
    else {
      at = b.writeUInt8(1, at);
      at = b.writeBigUInt64BE(x.hash, at);
    }
  }
  return b;
}

export function decodeBlockHashes(payload: Buffer): BlockHashesPayload {
  const r = new Reader(payload, 'block hashes');
  const range = readHashRange(r, 'block hashes');
  const appliedThrough = r.u64('appliedThrough');
  const blocks: BlockHash[] = [];
  while (r.at < payload.length) {
    if (blocks.length >= range.count) {
      throw new FrameError(`block hashes carry more than their count of ${range.count} blocks`);
    }
    const state = r.u8(`block ${blocks.length} state`);
    if (state === 0) blocks.push({ zero: true });
    else if (state === 1) {
      r.need(8, `block ${blocks.length} hash`);
      blocks.push({ zero: false, hash: payload.readBigUInt64BE(r.at) });
      r.at += 8;
    } else throw new FrameError(`block hashes: block ${blocks.length} has unknown state ${state}`);
  }
  return { ...range, appliedThrough, blocks };
}
