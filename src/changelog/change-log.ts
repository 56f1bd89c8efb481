// The agent's change log: ordered, append-only segment files of checksummed
// records, one sequence space per machine. Appends are group-committed (one
// writev per batch, in sequence order); sync() makes everything appended so far
// durable; a torn tail is cut on open. See docs/formats.md.

import { mkdirSync, writevSync } from 'node:fs';
import { type FileHandle, open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { SYNC_WRITE_MAX } from '../storage/block-store.js';
import { CacheOp, space } from '../storage/native-fileops.js';
import { skipBytes } from '../util/buffers.js';
import { deferred } from '../util/deferred.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { readJsonFile, writeJsonFile } from '../util/json-file.js';
import { type CacheAdvice, CacheWindow } from './cache-window.js';
import { LogCorruptError } from './log-corrupt-error.js';
import { encodeHeader, HEADER_SIZE, type LogRecord, type RecordHeader } from './record.js';
import { SegmentReader } from './segment-reader.js';

export interface ChangeLogOptions {
  /** Log size limit in bytes; appends beyond it are refused (the caller overflows to a bitmap). */
  maxBytes: number;
  /** A new segment file is started once the current one reaches this size. */
  segmentBytes: number;
  logger?: Logger;
  /** Open for reading only: never truncate, create or write. */
  readOnly?: boolean;
  /**
   * Records with seq <= this were fsynced and acknowledged (a process server's cache):
   * a bad one among them on open is corruption, not a torn tail. It is not cut; it is
   * reported (`corruption`), and appends continue in a new segment after it.
   */
  durableThrough?: number;
  /** Called once when corruption is first found (on open, or by a reader). */
  onCorruption?: (e: LogCorruptError) => void;
  /**
   * The newest bytes kept in the page cache; older ones are written back and dropped
   * (cache-window.ts). 0 leaves the cache to the kernel. Default DEFAULT_CACHE_WINDOW.
   */
  cacheWindowBytes?: number;
}

/** Enough for a shipper that keeps up to read what it sends from memory. */
export const DEFAULT_CACHE_WINDOW = 64 * 1024 * 1024;
const CACHE_STEP = 8 * 1024 * 1024;

export type NewRecord = Omit<RecordHeader, 'seq' | 'payloadLength'> & { payload: Buffer };

interface Segment {
  firstSeq: number;
  path: string;
  bytes: number;
}

interface Pending {
  bufs: Buffer[];
  bytes: number;
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

const SEGMENT_RE = /^seg-(\d{20})\.rcl$/;
const STATE_FILE = 'log-state.json';
const MAX_BATCH_IOVECS = 1000;
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/** Markers may exceed maxBytes by this much, so flushes keep their markers while the log is full. */
const MARKER_RESERVE = 1024 * 1024;

export function segmentName(firstSeq: number): string {
  return `seg-${String(firstSeq).padStart(20, '0')}.rcl`;
}

export class ChangeLog {
  /** Rotated-out segments still being fsynced and closed; sync() waits for them. */
  private closing = new Set<Promise<void>>();
  /** A closing segment failed to sync: its records may not be durable. */
  private closeError: Error | undefined;
  /** A segment was created since the directory was last fsynced. */
  private dirDirty = false;
  private trims: Promise<void> = Promise.resolve();
  /** Closed segments, oldest first, then the current one last. */
  private segments: Segment[] = [];
  private fh: FileHandle | undefined; // the current (last) segment, open for appending
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private writing = false;
  private failed: Error | undefined;
  private _nextSeq = 1;
  private _lastWritten = 0;
  private _durableSeq = 0;
  /** Resolved (and replaced) whenever durableSeq advances: one promise, however many wait. */
  private durableAdvanced = deferred();
  /** The same for lastWritten. */
  private writtenAdvanced = deferred();
  private _trimmedThrough = 0;
  /** The watermark as log-state.json has it (trims that delete nothing stay in memory). */
  private persistedTrim = 0;
  /** Number of records present in the log (approximate after a trim inside a segment). */
  private _bytes = 0;
  private _corruption: LogCorruptError | undefined;
  /** The last segment holds bytes a reader cannot get past: append to a new one. */
  private sealLast = false;
  /** What of the appended bytes to drop from the page cache, and the advice running now. */
  private readonly cacheWindow: CacheWindow | undefined;
  private advising: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    private readonly opts: ChangeLogOptions,
  ) {
    const window = opts.cacheWindowBytes ?? DEFAULT_CACHE_WINDOW;
    if (window > 0 && !opts.readOnly) this.cacheWindow = new CacheWindow(window, CACHE_STEP);
  }

  static async open(dir: string, opts: ChangeLogOptions): Promise<ChangeLog> {
    const log = new ChangeLog(dir, opts);
    await log.load();
    return log;
  }

  get nextSeq(): number {
    return this._nextSeq;
  }
  /** Highest sequence whose record has been written to the segment file (not necessarily synced). */
  get lastWritten(): number {
    return this._lastWritten;
  }
  /**
   * Every record with seq <= this is durable (fsynced). Only durable records may leave
   * the machine: after a power loss the log is cut back to its durable end and those
   * sequence numbers are handed out again, for other changes.
   */
  get durableSeq(): number {
    return this._durableSeq;
  }

  /** Resolves once durableSeq > seq, or earlier when it advances at all (callers re-check). */
  waitDurableBeyond(seq: number): Promise<void> {
    if (this._durableSeq > seq) return Promise.resolve();
    return this.durableAdvanced.promise;
  }

  /** Resolves once lastWritten > seq, or earlier when it advances at all (callers re-check). */
  waitWrittenBeyond(seq: number): Promise<void> {
    if (this._lastWritten > seq) return Promise.resolve();
    return this.writtenAdvanced.promise;
  }

  private setDurable(seq: number): void {
    if (seq <= this._durableSeq) return;
    this._durableSeq = seq;
    const advanced = this.durableAdvanced;
    this.durableAdvanced = deferred();
    advanced.resolve();
  }

  /** The segment files now: first sequence, path and bytes written (oldest first). */
  segmentsSnapshot(): { firstSeq: number; path: string; bytes: number }[] {
    return this.segments.map((s) => ({ ...s }));
  }
  get trimmedThrough(): number {
    return this._trimmedThrough;
  }
  get bytes(): number {
    return this._bytes + this.queuedBytes;
  }
  get maxBytes(): number {
    return this.opts.maxBytes;
  }
  get segmentCount(): number {
    return this.segments.length;
  }

  private async load(): Promise<void> {
    if (!this.opts.readOnly) mkdirSync(this.dir, { recursive: true });
    const state = await readJsonFile<{ trimmedThrough: number }>(join(this.dir, STATE_FILE));
    this._trimmedThrough = state?.trimmedThrough ?? 0;
    this.persistedTrim = this._trimmedThrough;
    let names: string[] = [];
    try {
      names = (await readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const name of names) {
      const firstSeq = Number(SEGMENT_RE.exec(name)![1]);
      const path = join(this.dir, name);
      const fh = await open(path, 'r');
      const { size } = await fh.stat();
      await fh.close();
      this.segments.push({ firstSeq, path, bytes: size });
      this._bytes += size;
    }
    this._nextSeq = this._trimmedThrough + 1;
    const last = this.segments.at(-1);
    if (last) {
      this._nextSeq = Math.max(this._nextSeq, last.firstSeq);
      await this.recoverTail(last);
      // Never hand out a sequence number again that was trimmed (its records are gone).
      this._nextSeq = Math.max(this._nextSeq, this._trimmedThrough + 1);
    }
    this._lastWritten = this._nextSeq - 1;
    if (!this.opts.readOnly && last && !this.sealLast) {
      this.fh = await open(last.path, 'r+');
      // What survived a process crash may sit in the page cache only: make it durable now.
      await this.fh.datasync();
    }
    if (!this.opts.readOnly) this._durableSeq = this._lastWritten;
  }

  /** Scans the last segment; cuts a torn tail (only the last segment can be torn). */
  private async recoverTail(seg: Segment): Promise<void> {
    // Up to the size seen at open: a live log read by another process may grow meanwhile.
    const reader = await SegmentReader.open(seg.path, seg.bytes);
    let good = 0;
    let lastGood = seg.firstSeq - 1;
    let reason: string | undefined;
    try {
      for (;;) {
        const r = await reader.next();
        if (r.kind === 'end') break;
        if (r.kind === 'invalid') {
          reason = r.reason;
          break;
        }
        good = r.offset + r.size;
        lastGood = r.record.seq;
        this._nextSeq = r.record.seq + 1;
      }
    } finally {
      await reader.close();
    }
    if (reason === undefined) return;
    const durable = this.opts.durableThrough ?? 0;
    if (lastGood < durable && !this.opts.readOnly) {
      // Acknowledged records were fsynced: no torn write can be among them. Keep the bytes
      // (they are evidence), name them, and never hand out their seqs again.
      this.reportCorruption(new LogCorruptError(seg.path, good, reason, lastGood));
      this.sealLast = true;
      this._nextSeq = Math.max(this._nextSeq, durable + 1);
      return;
    }
    const cut = seg.bytes - good;
    this.opts.logger?.warn(
      { segment: seg.path, offset: good, bytesCut: cut, reason },
      'change log: cutting torn tail',
    );
    if (!this.opts.readOnly) {
      const fh = await open(seg.path, 'r+');
      await fh.truncate(good);
      await fh.sync();
      await fh.close();
      this._bytes -= cut;
      seg.bytes = good;
    } else {
      this._bytes -= cut;
      seg.bytes = good;
    }
  }

  /** Corruption found so far (the first), or undefined. */
  get corruption(): LogCorruptError | undefined {
    return this._corruption;
  }

  /** Records corruption a reader found (the first is kept) and tells the owner once. */
  reportCorruption(e: LogCorruptError): void {
    if (this._corruption) return;
    this._corruption = e;
    this.opts.onCorruption?.(e);
  }

  /** Whether a record with this payload size fits under the log's size limit. */
  hasRoom(payloadBytes: number, marker = false): boolean {
    const limit = this.opts.maxBytes + (marker ? MARKER_RESERVE : 0);
    return this.bytes + HEADER_SIZE + payloadBytes <= limit;
  }

  /**
   * Assigns the next sequence number and queues the record. The returned promise
   * resolves once the record (and every earlier one) is written to the segment file.
   */
  /**
   * Appends a record under a sequence number chosen by the caller (a process server's
   * cache keeps the agent's numbers): at least nextSeq; a gap is allowed.
   */
  appendAt(seq: number, rec: NewRecord): { seq: number; written: Promise<void> } {
    if (seq < this._nextSeq) {
      throw new Error(`sequence ${seq} is below the log's next sequence ${this._nextSeq}`);
    }
    this._nextSeq = seq;
    return this.append(rec);
  }

  append(rec: NewRecord): { seq: number; written: Promise<void> } {
    if (this.opts.readOnly) throw new Error('change log opened read-only');
    const seq = this._nextSeq++;
    const header = encodeHeader({ ...rec, seq }, rec.payload);
    const bytes = HEADER_SIZE + rec.payload.length;
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const written = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    if (this.failed) {
      reject(this.failed);
      return { seq, written };
    }
    this.queue.push({
      bufs: rec.payload.length ? [header, rec.payload] : [header],
      bytes,
      seq,
      resolve,
      reject,
    });
    this.queuedBytes += bytes;
    this.kick();
    return { seq, written };
  }

  private kick(): void {
    if (this.writing || this.queue.length === 0) return;
    this.writing = true;
    void this.writeBatch().finally(() => {
      this.writing = false;
      this.kick();
    });
  }

  private async writeBatch(): Promise<void> {
    const batch: Pending[] = [];
    let iovecs = 0;
    let bytes = 0;
    while (this.queue.length && iovecs < MAX_BATCH_IOVECS && bytes < MAX_BATCH_BYTES) {
      const p = this.queue.shift()!;
      batch.push(p);
      iovecs += p.bufs.length;
      bytes += p.bytes;
    }
    try {
      let seg = this.segments.at(-1);
      if (!seg || !this.fh || seg.bytes >= this.opts.segmentBytes) seg = await this.rotate(batch[0].seq);
      const bufs = batch.flatMap((p) => p.bufs);
      let done = 0;
      while (done < bytes) {
        const rest = done === 0 ? bufs : skipBytes(bufs, done);
        // A small batch is written on the event loop: cheaper than a thread-pool round trip.
        done +=
          bytes <= SYNC_WRITE_MAX
            ? writevSync(this.fh!.fd, rest, seg.bytes + done)
            : (await this.fh!.writev(rest, seg.bytes + done)).bytesWritten;
      }
      this.queuedBytes -= bytes;
      this.wrote(seg, bytes, batch.at(-1)!.seq);
      for (const p of batch) p.resolve();
    } catch (e) {
      this.fail(e as Error, batch);
    }
  }

  /**
   * Appends a small record and writes it at once, on the caller's thread, when nothing
   * is queued ahead of it; returns its seq, or undefined when it cannot (then nothing
   * happened: the caller uses append()). The NBD write fast path: no promise, no turn
   * of the event loop between the request and its record.
   */
  appendNow(rec: NewRecord): number | undefined {
    if (!this.canAppendNow(rec.payload.length)) return undefined;
    const seg = this.segments.at(-1)!;
    const fd = this.fh!.fd;
    const seq = this._nextSeq++;
    const header = encodeHeader({ ...rec, seq }, rec.payload);
    const bytes = HEADER_SIZE + rec.payload.length;
    const bufs = rec.payload.length ? [header, rec.payload] : [header];
    try {
      for (let done = 0; done < bytes; )
        done += writevSync(fd, done ? skipBytes(bufs, done) : bufs, seg.bytes + done);
    } catch (e) {
      this._nextSeq = seq; // nothing after it was handed out: the seq is not used
      this.fail(e as Error, []);
      return undefined;
    }
    this.wrote(seg, bytes, seq);
    return seq;
  }

  /**
   * Whether appendNow() of a record with this payload size would write it (it can still
   * fail, if the write itself fails).
   */
  canAppendNow(payloadLength: number): boolean {
    if (this.opts.readOnly || this.failed || this.writing || this.queue.length) return false;
    const seg = this.segments.at(-1);
    return !!seg && !!this.fh && seg.bytes < this.opts.segmentBytes && payloadLength <= SYNC_WRITE_MAX;
  }

  /** Bookkeeping after bytes through seq reached the current segment. */
  private wrote(seg: Segment, bytes: number, lastSeq: number): void {
    if (this.cacheWindow) {
      this.cacheWindow.wrote(seg.path, seg.bytes, seg.bytes + bytes);
      if (!this.advising) this.adviseCache();
    }
    seg.bytes += bytes;
    this._bytes += bytes;
    this._lastWritten = lastSeq;
    const advanced = this.writtenAdvanced;
    this.writtenAdvanced = deferred();
    advanced.resolve();
  }

  /** Runs the page-cache advice due now, one batch at a time, off the event loop. */
  private adviseCache(): void {
    const advice = this.cacheWindow!.take();
    if (advice.length === 0) return;
    this.advising = runCacheAdvice(advice)
      .catch((e) => this.opts.logger?.debug({ err: e }, 'change log: page-cache advice failed'))
      .finally(() => {
        this.advising = undefined;
        this.adviseCache(); // a step may have passed meanwhile
      });
  }

  /**
   * The log volume failed (e.g. ENOSPC): refuse these records and everything after them.
   * Callers fall back to the dirty bitmap; the partial tail is cut on the next open.
   */
  private fail(e: Error, batch: Pending[]): void {
    this.failed = e;
    this.opts.logger?.error({ err: e }, 'change log: append failed; further changes go to the dirty bitmap');
    for (const p of [...batch, ...this.queue]) p.reject(e);
    this.queuedBytes = 0;
    this.queue = [];
  }

  /**
   * Starts a new segment named for firstSeq. The old one is fsynced and closed in the
   * background (appends never wait for it); sync() waits for that, and fsyncs the
   * directory so the new file's name is durable too.
   */
  private async rotate(firstSeq: number): Promise<Segment> {
    if (this.fh) {
      const old = this.fh;
      this.fh = undefined;
      const closing: Promise<void> = old
        .sync()
        .catch((e) => {
          this.closeError ??= e as Error;
        })
        .finally(() => old.close())
        .catch(() => undefined)
        .finally(() => this.closing.delete(closing));
      this.closing.add(closing);
    }
    const seg: Segment = { firstSeq, path: join(this.dir, segmentName(firstSeq)), bytes: 0 };
    this.fh = await open(seg.path, 'wx');
    this.dirDirty = true;
    this.segments.push(seg);
    return seg;
  }

  /** Makes every record written so far durable, in every segment. */
  async sync(): Promise<void> {
    if (this.failed) throw this.failed;
    const covers = this._lastWritten;
    const dirDirty = this.dirDirty;
    this.dirDirty = false;
    try {
      // The current handle is taken now; a rotation during the datasync closes it only
      // after the datasync ends (FileHandle.close waits for pending operations).
      await Promise.all([...this.closing, this.fh?.datasync(), dirDirty ? fsyncDir(this.dir) : undefined]);
    } catch (e) {
      if (dirDirty) this.dirDirty = true;
      throw e;
    }
    if (this.closeError) throw this.closeError;
    this.setDurable(covers);
  }

  /** Reopens appends after a failure (e.g. once space returns). */
  resetFailure(): void {
    this.failed = undefined;
  }

  /**
   * Records with fromSeq <= seq <= toSeq in order. Payloads are views: copy to keep.
   * A corrupt record raises an error naming the segment file and offset.
   */
  async *records(fromSeq = 1, toSeq = Number.MAX_SAFE_INTEGER): AsyncGenerator<LogRecord> {
    fromSeq = Math.max(fromSeq, this._trimmedThrough + 1);
    const segs = this.segments.map((s) => ({ ...s }));
    let start = 0;
    for (let i = 0; i < segs.length; i++) if (segs[i].firstSeq <= fromSeq) start = i;
    for (let i = start; i < segs.length; i++) {
      if (segs[i].firstSeq > toSeq) return;
      const reader = await SegmentReader.open(segs[i].path, segs[i].bytes);
      let lastGood = segs[i].firstSeq - 1;
      try {
        for (;;) {
          const r = await reader.next();
          if (r.kind === 'end') break;
          if (r.kind === 'invalid') {
            const e = new LogCorruptError(segs[i].path, r.offset, r.reason, lastGood);
            if (!this.opts.readOnly) this.reportCorruption(e);
            throw e;
          }
          lastGood = r.record.seq;
          if (r.record.seq > toSeq) return;
          if (r.record.seq >= fromSeq) yield r.record;
        }
      } finally {
        await reader.close();
      }
    }
  }

  /**
   * Forgets records up to seq. Whole segments are deleted once every record in them is
   * trimmed, and the watermark is made durable just before, so a restart never looks for
   * deleted records. A trim that deletes nothing only moves the watermark in memory: after
   * a crash the older watermark comes back, whose records are all still there, so at worst
   * some are shipped or redone again (both idempotent). This keeps an fsync off every ack.
   */
  trimThrough(seq: number): Promise<void> {
    // One at a time: they share the state file's temporary name.
    const run = this.trims.then(() => this.trimNow(seq));
    this.trims = run.catch(() => undefined);
    return run;
  }

  private async trimNow(seq: number): Promise<void> {
    if (this.opts.readOnly) throw new Error('change log opened read-only');
    if (seq <= this._trimmedThrough) return;
    this._trimmedThrough = Math.min(seq, this._nextSeq - 1);
    // A closed segment can go once the next one starts after the watermark.
    const firstCanGo = () =>
      this.segments.length > 1 && this.segments[1].firstSeq <= this._trimmedThrough + 1;
    if (!firstCanGo()) return;
    await this.persistTrim();
    while (firstCanGo()) {
      const seg = this.segments.shift()!;
      await unlink(seg.path);
      this._bytes -= seg.bytes;
    }
  }

  private async persistTrim(): Promise<void> {
    const trimmedThrough = this._trimmedThrough;
    if (trimmedThrough === this.persistedTrim) return;
    await writeJsonFile(join(this.dir, STATE_FILE), { trimmedThrough }, { durable: true });
    this.persistedTrim = trimmedThrough;
  }

  async close(): Promise<void> {
    while (this.writing || this.queue.length) await new Promise((r) => setTimeout(r, 1));
    await Promise.all([...this.closing]);
    while (this.advising) await this.advising;
    await this.trims;
    if (!this.opts.readOnly) await this.persistTrim();
    if (this.dirDirty) {
      await fsyncDir(this.dir);
      this.dirDirty = false;
    }
    if (this.fh) {
      await this.fh.sync();
      await this.fh.close();
      this.fh = undefined;
    }
  }
}

/**
 * Advice only: a file of its own per segment (a segment's own handle may be closed by a
 * rotation meanwhile), and a segment trimmed away meanwhile needs none.
 */
async function runCacheAdvice(advice: CacheAdvice[]): Promise<void> {
  for (const a of advice) {
    let fh: FileHandle;
    try {
      fh = await open(a.path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    try {
      if (a.writeback) await space(fh.fd, CacheOp.WRITEBACK, a.writeback.offset, a.writeback.length);
      if (a.drop) await space(fh.fd, CacheOp.DROP, a.drop.offset, a.drop.length);
    } finally {
      await fh.close();
    }
  }
}
