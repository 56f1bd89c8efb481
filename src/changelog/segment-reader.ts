// Sequential, buffered reading of one segment file, validating every record.
import { type FileHandle, open } from 'node:fs/promises';
import { markHeadroom } from '../util/headroom.js';
import { checkCrc, decodeHeader, HEADER_SIZE, type LogRecord } from './record.js';

/** Each refill reads this much (or one whole record): small, as payloads pin their chunk. */
const CHUNK = 1024 * 1024;
/**
 * A record at least this large that is not all in the buffer is read whole into a buffer
 * of its own, so that its bytes are neither copied out of the old buffer nor read into one
 * mostly filled by the next record.
 */
const OWN_BUFFER_MIN = 256 * 1024;

export type ReadResult =
  | { kind: 'record'; record: LogRecord; offset: number; size: number }
  | { kind: 'end' }
  | { kind: 'invalid'; offset: number; reason: string };

export class SegmentReader {
  private buf = Buffer.alloc(0);
  private bufStart = 0; // file offset of buf[0]
  private pos = 0; // index into buf
  private eof = false;
  private lastSeq = -1;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** Bytes of the file that may be read (the writer's durable end); Infinity = to EOF. */
    private limit: number,
  ) {}

  /** Reads from `start` (a record boundary) up to `limit` bytes of the file. */
  static async open(path: string, limit = Number.POSITIVE_INFINITY, start = 0): Promise<SegmentReader> {
    const r = new SegmentReader(path, await open(path, 'r'), limit);
    r.bufStart = start;
    return r;
  }

  /** File offset of the next record. */
  get offset(): number {
    return this.bufStart + this.pos;
  }

  private async ensure(n: number): Promise<boolean> {
    while (this.buf.length - this.pos < n) {
      if (this.eof) return false;
      const keep = this.buf.subarray(this.pos);
      const fileOff = this.bufStart + this.buf.length;
      const room = Math.min(Math.max(CHUNK, n - keep.length), this.limit - fileOff);
      if (room <= 0) {
        this.eof = true;
        return false;
      }
      const next = Buffer.allocUnsafe(keep.length + room);
      keep.copy(next, 0);
      const { bytesRead } = await this.fh.read(next, keep.length, room, fileOff);
      if (bytesRead === 0) this.eof = true;
      this.bufStart += this.pos;
      this.buf = next.subarray(0, keep.length + bytesRead);
      this.pos = 0;
    }
    return true;
  }

  /**
   * The next `size` bytes of the file, from the current record on, in a new buffer that the
   * reader does not keep (the record's alone: it may even be moved to another thread).
   */
  private async readOwn(size: number): Promise<Buffer | undefined> {
    const fileOff = this.offset;
    if (fileOff + size > this.limit) return undefined;
    const own = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await this.fh.read(own, got, size - got, fileOff + got);
      if (bytesRead === 0) return undefined;
      got += bytesRead;
    }
    return own;
  }

  /**
   * The next record. Payloads are views into the reader's buffers, which it never reuses
   * or overwrites (each refill is a new buffer), so they stay valid after later calls;
   * holding one keeps its whole buffer (1 MiB, or one record) alive.
   */
  async next(): Promise<ReadResult> {
    const offset = this.offset;
    if (!(await this.ensure(1))) return { kind: 'end' };
    if (!(await this.ensure(HEADER_SIZE)))
      return { kind: 'invalid', offset, reason: 'truncated record header' };
    const headerBytes = this.buf.subarray(this.pos, this.pos + HEADER_SIZE);
    const h = decodeHeader(headerBytes);
    if (!h.ok) return { kind: 'invalid', offset, reason: h.reason };
    const size = HEADER_SIZE + h.header.payloadLength;
    const own =
      this.buf.length - this.pos < size && size >= OWN_BUFFER_MIN ? await this.readOwn(size) : undefined;
    if (!own && !(await this.ensure(size)))
      return { kind: 'invalid', offset, reason: 'truncated record payload' };
    const buf = own ?? this.buf;
    const at = own ? 0 : this.pos;
    const hb = buf.subarray(at, at + HEADER_SIZE);
    const payload = buf.subarray(at + HEADER_SIZE, at + size);
    if (!checkCrc(hb, payload, h.crc)) {
      return { kind: 'invalid', offset, reason: `CRC32C mismatch in record seq ${h.header.seq}` };
    }
    if (h.header.seq <= this.lastSeq) {
      return { kind: 'invalid', offset, reason: `sequence ${h.header.seq} does not follow ${this.lastSeq}` };
    }
    this.lastSeq = h.header.seq;
    if (own) {
      // The buffer is the record's alone, and its header is checked and never read again:
      // those bytes are free for the headers of a frame carrying the payload (headroom.ts).
      // The reader keeps no reference to it, and goes on after the record in a fresh one.
      markHeadroom(payload, HEADER_SIZE);
      this.bufStart = offset + size;
      this.buf = Buffer.alloc(0);
      this.pos = 0;
    } else {
      this.pos += size;
    }
    return { kind: 'record', record: { ...h.header, payload }, offset, size };
  }

  /** The writer made more of the file durable: reading may go on up to `limit`. */
  extend(limit: number): void {
    if (limit <= this.limit) return;
    this.limit = limit;
    this.eof = false;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
