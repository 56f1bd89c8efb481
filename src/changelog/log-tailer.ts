// Follows a live change log: yields its durable records in sequence order, resuming
// where the last read stopped (a segment and a byte offset), so following a growing
// segment never rescans it from the start. The segment being followed stays open between
// reads: an open, a read and a close per read were three thread-pool round trips, each
// waiting for a busy event loop, and made a shipper lag behind what it could send.
import type { ChangeLog } from './change-log.js';
import { LogCorruptError } from './log-corrupt-error.js';
import type { LogRecord } from './record.js';
import { SegmentReader } from './segment-reader.js';

export class LogGapError extends Error {}

export class LogTailer {
  private segmentFirstSeq: number | undefined;
  private offset = 0;
  /** The open reader and the segment it reads; its offset says whether it can go on. */
  private reader: SegmentReader | undefined;
  private readerSegment: number | undefined;

  /** Where the next read starts: a segment (by first seq) and a byte offset; undefined before the first read. */
  get position(): { segment: number; offset: number } | undefined {
    return this.segmentFirstSeq === undefined
      ? undefined
      : { segment: this.segmentFirstSeq, offset: this.offset };
  }

  /** `next` is the first sequence wanted. */
  constructor(
    private readonly log: ChangeLog,
    public next: number,
  ) {}

  /**
   * Durable records with seq >= next that exist now, in order (at most `maxBytes` of
   * payload, at least one record). Payloads are views into the buffers this read filled,
   * which are never reused (so they stay valid, and keep those buffers alive while held:
   * encode and drop them). Empty when none is durable yet.
   * Throws LogGapError when `next` was trimmed away.
   */
  async read(maxBytes: number): Promise<LogRecord[]> {
    if (this.next <= this.log.trimmedThrough) {
      throw new LogGapError(
        `the change log no longer holds seq ${this.next} (trimmed through ${this.log.trimmedThrough})`,
      );
    }
    const durable = this.log.durableSeq;
    const out: LogRecord[] = [];
    let bytes = 0;
    while (this.next <= durable && bytes < maxBytes) {
      const segs = this.log.segmentsSnapshot();
      let i =
        this.segmentFirstSeq === undefined ? -1 : segs.findIndex((s) => s.firstSeq === this.segmentFirstSeq);
      if (i < 0) {
        // Start (or the segment went): the last segment starting at or before next.
        i = 0;
        for (let k = 0; k < segs.length; k++) if (segs[k]!.firstSeq <= this.next) i = k;
        if (!segs[i]) return out;
        this.segmentFirstSeq = segs[i]!.firstSeq;
        this.offset = 0;
      }
      const seg = segs[i]!;
      const reader = await this.readerAt(seg);
      let progressed = false;
      let corruptAhead = false;
      let lastGood = this.next - 1;
      try {
        for (;;) {
          if (bytes >= maxBytes) break;
          const r = await reader.next();
          if (r.kind === 'end') break;
          if (r.kind === 'invalid') {
            // Durable records only are read here: a bad one is corruption, never a torn tail.
            // The good records before it still go out; the next read fails on it.
            await this.closeReader();
            const e = new LogCorruptError(seg.path, r.offset, r.reason, lastGood);
            this.log.reportCorruption(e);
            if (out.length) {
              corruptAhead = true;
              break;
            }
            throw e;
          }
          lastGood = Math.max(lastGood, r.record.seq);
          if (r.record.seq > durable) break;
          this.offset = r.offset + r.size;
          progressed = true;
          if (r.record.seq < this.next) continue;
          out.push(r.record);
          bytes += r.record.payload.length;
          this.next = r.record.seq + 1;
        }
      } catch (e) {
        await this.closeReader();
        throw e;
      }
      if (corruptAhead || bytes >= maxBytes) break;
      // This segment is read to its written end: go on to the next one, if there is one.
      const following = segs[i + 1];
      if (this.offset >= seg.bytes && following) {
        this.segmentFirstSeq = following.firstSeq;
        this.offset = 0;
        continue;
      }
      if (!progressed) break;
    }
    return out;
  }

  /** Closes the segment file it follows (reading again reopens it). */
  close(): Promise<void> {
    return this.closeReader();
  }

  /** The open reader when it stands exactly where reading goes on, or a new one there. */
  private async readerAt(seg: { firstSeq: number; path: string; bytes: number }): Promise<SegmentReader> {
    if (this.reader && this.readerSegment === seg.firstSeq && this.reader.offset === this.offset) {
      this.reader.extend(seg.bytes);
      return this.reader;
    }
    await this.closeReader();
    this.reader = await SegmentReader.open(seg.path, seg.bytes, this.offset);
    this.readerSegment = seg.firstSeq;
    return this.reader;
  }

  private async closeReader(): Promise<void> {
    const r = this.reader;
    this.reader = undefined;
    this.readerSegment = undefined;
    await r?.close().catch(() => undefined);
  }
}
