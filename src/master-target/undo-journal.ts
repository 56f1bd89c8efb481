// The master target's undo journal: append-only segment files of before-images and
// markers on the retention volume, with an in-memory index by disk region so a
// point-in-time read touches only the records that overlap it. Appends are group
// committed (one writev and one fdatasync per batch); a torn tail of the last
// segment is cut on open; retention deletes whole segments. See docs/formats.md.
import { mkdirSync } from 'node:fs';
import { type FileHandle, open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { skipBytes } from '../util/buffers.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { damageFor, describeDamage, type JournalDamage } from './journal-damage.js';
import {
  checkRecordCrc,
  decodeHeader,
  encodeRecord,
  FLAG_APP,
  FLAG_MORE,
  FLAG_ZERO,
  JOURNAL_HEADER_SIZE,
  type JournalRecord,
  JournalRecordType,
} from './journal-record.js';
import { RetentionFullError } from './retention-space.js';

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
/** Index granularity: a read looks only at the records listed in the regions it touches. */
export const INDEX_REGION = 1024 * 1024;
/** Segment files kept open for before-image reads (least recently used are closed). */
const READ_HANDLES = 16;
/** Buffers per writev: stays below IOV_MAX (1024). */
const MAX_IOVECS = 512;
const SCAN_CHUNK = 4 * 1024 * 1024;
/** An append writes what it has gathered once this much is waiting (bounds its memory). */
const WRITE_BYTES = 16 * 1024 * 1024;
const SEGMENT_RE = /^undo-(\d{20})\.ruj$/;

export interface UndoJournalOptions {
  /** A new segment is started before a batch once the current one reaches this size. */
  segmentBytes?: number;
  /**
   * Records with seq <= this are known durable (the replica applied them): a tail
   * cut that would remove one is corruption, not a torn write: it is kept and named
   * as damage (see journal-damage.ts) instead of being cut.
   */
  durableThrough?: number;
  logger?: Logger;
}

export interface JournalSegment {
  readonly firstSeq: number;
  readonly path: string;
  bytes: number;
  /** Every record of the segment in seq order. */
  readonly entries: JournalEntry[];
  /** Every record's CRC was checked (payloads too), on open, append or verify(). */
  verified?: boolean;
  /** Damaged (unparseable) segments only: the highest seq it may hold. */
  lastSeqBound?: number;
}

/** What the index keeps of one record (the payload stays in the segment file). */
export interface JournalEntry {
  readonly type: JournalRecordType;
  readonly flags: number;
  readonly seq: number;
  readonly time: number;
  readonly disk: number;
  readonly offset: number;
  readonly length: number;
  readonly segment: JournalSegment;
  readonly fileOffset: number;
  /** Markers only. */
  readonly tag?: string;
}

export function segmentFileName(firstSeq: number): string {
  return `undo-${String(firstSeq).padStart(20, '0')}.ruj`;
}

export function isZeroBeforeImage(e: JournalEntry): boolean {
  return e.type === JournalRecordType.BeforeImage && (e.flags & FLAG_ZERO) !== 0;
}

function corrupt(path: string, offset: number, reason: string): Error {
  return new Error(`undo journal corrupt: ${path} at offset ${offset}: ${reason}`);
}

export class UndoJournal {
  private segments: JournalSegment[] = [];
  /** disk -> region number -> before-image entries touching that region, in seq order. */
  private index = new Map<number, Map<number, JournalEntry[]>>();
  private fh: FileHandle | undefined; // the last segment, open for appending
  private dirDirty = false;
  private ops: Promise<unknown> = Promise.resolve();
  private readonly handles = new ReadHandles(READ_HANDLES);
  private _lastSeq = 0;
  /** A failed append could not be rolled back: the file may hold a partial record. */
  private broken: Error | undefined;
  private damaged: JournalDamage[] = [];
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly segmentBytes: number,
    private readonly logger: Logger | undefined,
  ) {}

  static async open(dir: string, opts: UndoJournalOptions = {}): Promise<UndoJournal> {
    const j = new UndoJournal(dir, opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES, opts.logger);
    await j.load(opts.durableThrough ?? 0);
    return j;
  }

  /** Highest seq recorded, 0 when the journal is empty. */
  get lastSeq(): number {
    return this._lastSeq;
  }
  /** Seq of the oldest retained record, or undefined when there is none. */
  get firstSeq(): number | undefined {
    const first = this.segments[0];
    return first?.entries[0]?.seq ?? first?.firstSeq;
  }
  get segmentCount(): number {
    return this.segments.length;
  }
  get bytes(): number {
    return this.segments.reduce((n, s) => n + s.bytes, 0);
  }

  private async load(durableThrough: number): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    for (const name of names) {
      const path = join(this.dir, name);
      const firstSeq = Number(SEGMENT_RE.exec(name)![1]);
      this.segments.push({ firstSeq, path, bytes: (await stat(path)).size, entries: [] });
    }
    let prev: JournalEntry | undefined;
    let lastSeq = 0;
    let appendable = true;
    for (let i = 0; i < this.segments.length; i++) {
      const seg = this.segments[i];
      const next = this.segments[i + 1];
      const isLast = next === undefined;
      // Closed segments were synced when closed: their headers are enough to index them
      // (payloads are checked when read or verified). The last one may be torn: check
      // every byte. Records the replica applied are never cut: a bad one is damage.
      const scan = await scanSegment(seg, isLast, prev, durableThrough);
      for (const b of scan.badPayloads)
        this.addDamage({ ...b, afterSeq: b.entry!.seq - 1, throughSeq: b.entry!.seq });
      let invalid = scan.invalid;
      if (isLast) seg.verified = true;
      // A change whose last chunk is missing: never synced if it is the tail of the last segment.
      const tail = seg.entries.at(-1);
      if (tail && tail.type === JournalRecordType.BeforeImage && tail.flags & FLAG_MORE) {
        let offset = tail.fileOffset;
        while (seg.entries.at(-1)?.seq === tail.seq) offset = seg.entries.pop()!.fileOffset;
        const reason = `change seq ${tail.seq} is incomplete${invalid ? ` (${invalid.reason})` : ''}`;
        invalid = { offset, reason };
      }
      if (!invalid && !isLast && seg.entries.length === 0) invalid = { offset: 0, reason: 'empty segment' };
      const lastKept = seg.entries.at(-1)?.seq ?? seg.firstSeq - 1;
      if (invalid && isLast && lastKept >= durableThrough) {
        await this.cutTail(seg, invalid);
      } else if (invalid) {
        // What follows cannot be parsed: records up to the next segment (or, in the last
        // one, up to what the replica applied) may be missing from the index.
        const bound = next ? next.firstSeq - 1 : Math.max(durableThrough, lastKept);
        seg.lastSeqBound = bound;
        this.addDamage({
          path: seg.path,
          offset: invalid.offset,
          reason: invalid.reason,
          afterSeq: lastKept,
          throughSeq: bound,
        });
        // Never append after bytes a reader cannot get past: the next batch starts a segment.
        if (isLast) appendable = false;
      }
      lastSeq = Math.max(lastSeq, seg.lastSeqBound ?? 0, seg.entries.at(-1)?.seq ?? 0);
      prev = invalid ? undefined : (seg.entries.at(-1) ?? prev);
    }
    const last = this.segments.at(-1);
    if (last && last.bytes === 0) {
      // Created just before a crash (or cut to nothing): the next append starts afresh.
      await unlink(last.path);
      await fsyncDir(this.dir);
      this.segments.pop();
    }
    for (const seg of this.segments) this.addToIndex(seg.entries);
    this._lastSeq = lastSeq;
    const tail = this.segments.at(-1);
    if (tail && appendable) this.fh = await open(tail.path, 'r+');
  }

  /** Known damage: records never used; views that need them are refused. */
  get damage(): readonly JournalDamage[] {
    return this.damaged;
  }

  private addDamage(d: JournalDamage): void {
    if (this.damaged.some((x) => x.path === d.path && x.offset === d.offset)) return;
    this.damaged.push(d);
    this.logger?.error(
      {
        segment: d.path,
        offset: d.offset,
        reason: d.reason,
        seq: d.entry?.seq,
        afterSeq: d.afterSeq,
        throughSeq: d.throughSeq,
      },
      describeDamage(d),
    );
  }

  /** Why a view of point P cannot be exact with the damage known so far, or undefined. */
  damageFor(point: number): string | undefined {
    if (this.damaged.length === 0) return undefined;
    return damageFor(point, this.damaged, (d, o, l, a) => this.overlapping(d, o, l, a));
  }

  /**
   * Checks the CRC of every record a view of point P may read (the records with
   * seq > P) in segments not checked yet, so that damage is found before a view is
   * opened rather than in the middle of a read. Each segment is checked at most once
   * per process (closed segments never change); the last one was checked on open.
   */
  async verifyAfter(point: number): Promise<void> {
    for (const seg of [...this.segments]) {
      if (seg.verified || (seg.lastSeqBound ?? seg.entries.at(-1)?.seq ?? 0) <= point) continue;
      try {
        for (const bad of await verifySegment(seg)) {
          this.addDamage({ ...bad, afterSeq: bad.entry!.seq - 1, throughSeq: bad.entry!.seq });
        }
        seg.verified = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // pruned meanwhile
      }
    }
  }

  private async cutTail(seg: JournalSegment, invalid: { offset: number; reason: string }): Promise<void> {
    const bytesCut = seg.bytes - invalid.offset;
    this.logger?.warn(
      { segment: seg.path, offset: invalid.offset, bytesCut, reason: invalid.reason },
      'undo journal: cutting torn tail',
    );
    const fh = await open(seg.path, 'r+');
    try {
      await fh.truncate(invalid.offset);
      await fh.sync();
    } finally {
      await fh.close();
    }
    seg.bytes = invalid.offset;
  }

  /** Runs mutations (append, prune, close) one at a time, in call order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.ops.then(fn);
    this.ops = run.catch(() => undefined);
    return run;
  }

  /**
   * Appends a batch of records (seqs increasing above lastSeq; the chunks of one change
   * share its seq), makes them durable with one fdatasync, then adds them to the index.
   * Records may come from an async generator: they are written as they come, so the
   * batch never has to be in memory at once. On any failure nothing is appended: the
   * segment is cut back to where the batch began, and an I/O error says why
   * ("retention volume full: ..." for ENOSPC/EDQUOT).
   */
  append(records: Iterable<JournalRecord> | AsyncIterable<JournalRecord>): Promise<void> {
    return this.serial(() => this.appendNow(records));
  }

  private async appendNow(records: Iterable<JournalRecord> | AsyncIterable<JournalRecord>): Promise<void> {
    if (this.closed) throw new Error('undo journal is closed');
    if (this.broken) throw new Error(`undo journal unusable until reopened: ${this.broken.message}`);
    let seg: JournalSegment | undefined;
    let created = false;
    let start = 0;
    let pos = 0;
    let written = 0;
    let bufs: Buffer[] = [];
    let pending = 0;
    const entries: JournalEntry[] = [];
    const io = async (fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (e) {
        throw appendError(this.dir, e, Math.max(pos - start, JOURNAL_HEADER_SIZE));
      }
    };
    try {
      for await (const r of records) {
        const prev = entries.at(-1);
        const problem = sequenceProblem(prev, prev?.seq ?? this._lastSeq, r.type, r.seq, recordRange(r));
        if (problem) throw new Error(`undo journal: ${problem}`);
        if (!seg) {
          const last = this.segments.at(-1);
          if (!last || !this.fh || last.bytes >= this.segmentBytes) {
            await io(async () => {
              seg = await this.rotate(r.seq);
            });
            created = true;
          } else seg = last;
          start = pos = written = seg!.bytes;
        }
        const { header, payload } = encodeRecord(r);
        bufs.push(header);
        if (payload.length) bufs.push(payload);
        entries.push(entryOf(r, header.readUInt8(5), seg!, pos));
        pos += JOURNAL_HEADER_SIZE + payload.length;
        pending += JOURNAL_HEADER_SIZE + payload.length;
        if (pending >= WRITE_BYTES) {
          const out = bufs;
          await io(() => writeAll(this.fh!, out, written));
          written = pos;
          bufs = [];
          pending = 0;
        }
      }
      if (!seg) return;
      const tail = entries.at(-1)!;
      if (tail.flags & FLAG_MORE && tail.type === JournalRecordType.BeforeImage) {
        throw new Error(`undo journal: change seq ${tail.seq} ends with a chunk marked "more"`);
      }
      await io(async () => {
        await writeAll(this.fh!, bufs, written);
        await this.fh!.datasync();
        if (this.dirDirty) {
          await fsyncDir(this.dir);
          this.dirDirty = false;
        }
      });
    } catch (e) {
      if (seg) await this.rollback(seg, start, created);
      throw e;
    }
    const s = seg!;
    s.bytes = pos;
    for (const e of entries) s.entries.push(e);
    this._lastSeq = entries.at(-1)!.seq;
    // Indexed now, before the caller writes the replica: a view reading the replica
    // after that write must find these before-images (see point-view.ts).
    this.addToIndex(entries);
  }

  /** Starts a new segment. The old one needs no sync: every batch ended with one. */
  private async rotate(firstSeq: number): Promise<JournalSegment> {
    if (this.fh) {
      await this.fh.close();
      this.fh = undefined;
    }
    const seg: JournalSegment = {
      firstSeq,
      path: join(this.dir, segmentFileName(firstSeq)),
      bytes: 0,
      entries: [],
      verified: true, // written by us, synced before use
    };
    this.fh = await open(seg.path, 'wx');
    this.segments.push(seg);
    this.dirDirty = true;
    return seg;
  }

  /** Undoes a failed batch's bytes so the segment ends with a whole record again. */
  private async rollback(seg: JournalSegment, start: number, created: boolean): Promise<void> {
    try {
      if (created) {
        await this.fh!.close();
        this.fh = undefined;
        this.segments.pop();
        await unlink(seg.path);
      } else {
        await this.fh!.truncate(start);
        await this.fh!.datasync();
      }
    } catch (e) {
      this.broken = e as Error;
      this.logger?.error({ err: e, segment: seg.path }, 'undo journal: cannot roll back a failed append');
    }
  }

  private addToIndex(entries: JournalEntry[]): void {
    for (const e of entries) {
      if (e.type !== JournalRecordType.BeforeImage || e.length === 0) continue;
      let regions = this.index.get(e.disk);
      if (!regions) {
        regions = new Map();
        this.index.set(e.disk, regions);
      }
      const last = Math.floor((e.offset + e.length - 1) / INDEX_REGION);
      for (let r = Math.floor(e.offset / INDEX_REGION); r <= last; r++) {
        const list = regions.get(r);
        if (list) list.push(e);
        else regions.set(r, [e]);
      }
    }
  }

  /**
   * Before-image entries of `disk` with seq > afterSeq overlapping [offset, offset+length),
   * highest seq first (applying them in this order leaves the lowest seq's bytes).
   */
  overlapping(disk: number, offset: number, length: number, afterSeq: number): JournalEntry[] {
    const regions = this.index.get(disk);
    if (!regions || length <= 0) return [];
    const end = offset + length;
    const seen = new Set<JournalEntry>();
    const last = Math.floor((end - 1) / INDEX_REGION);
    for (let r = Math.floor(offset / INDEX_REGION); r <= last; r++) {
      const list = regions.get(r);
      if (!list) continue;
      for (let i = firstAbove(list, afterSeq); i < list.length; i++) {
        const e = list[i];
        if (e.offset < end && e.offset + e.length > offset) seen.add(e);
      }
    }
    return [...seen].sort((a, b) => b.seq - a.seq);
  }

  /**
   * The before-image bytes of an entry, re-read from its segment and checked against
   * the record CRC; null when the before-image was all zeroes (nothing stored).
   */
  async readBeforeImage(e: JournalEntry): Promise<Buffer | null> {
    if (e.type !== JournalRecordType.BeforeImage) throw new Error(`seq ${e.seq} is not a before-image`);
    if (e.flags & FLAG_ZERO) return null;
    const size = JOURNAL_HEADER_SIZE + e.length;
    const buf = Buffer.allocUnsafe(size);
    const path = e.segment.path;
    const got = await this.handles.use(path, (fh) => readFully(fh, buf, e.fileOffset));
    const problem = recordProblem(buf, got, e);
    if (problem) {
      this.addDamage({
        path,
        offset: e.fileOffset,
        reason: problem,
        entry: e,
        afterSeq: e.seq - 1,
        throughSeq: e.seq,
      });
      throw corrupt(path, e.fileOffset, problem);
    }
    return buf.subarray(JOURNAL_HEADER_SIZE);
  }

  /** The retained record with this seq, if any. */
  entry(seq: number): JournalEntry | undefined {
    let lo = 0;
    let hi = this.segments.length - 1;
    let s = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.segments[mid].firstSeq <= seq) {
        s = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (s < 0) return undefined;
    const list = this.segments[s].entries;
    const i = firstAbove(list, seq - 1);
    return list[i]?.seq === seq ? list[i] : undefined;
  }

  /** Retained records with seq > afterSeq, in seq order. */
  entriesAfter(afterSeq: number): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (let s = this.segments.length - 1; s >= 0; s--) {
      const list = this.segments[s].entries;
      for (let i = list.length - 1; i >= 0 && list[i].seq > afterSeq; i--) out.push(list[i]);
      if (list.length && list[0].seq <= afterSeq) break;
    }
    return out.reverse();
  }

  /** Retained markers with seq <= maxSeq, in seq order. */
  markers(maxSeq = Number.MAX_SAFE_INTEGER): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (const seg of this.segments) {
      for (const e of seg.entries) {
        if (e.seq > maxSeq) return out;
        if (e.type === JournalRecordType.Marker) out.push(e);
      }
    }
    return out;
  }

  /**
   * The highest retained seq <= maxSeq whose record's source time is <= ms. A linear
   * scan from the newest record: exact even if the source clock stepped back.
   */
  latestAtOrBefore(ms: number, maxSeq: number): number | undefined {
    for (let s = this.segments.length - 1; s >= 0; s--) {
      const list = this.segments[s].entries;
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i].seq <= maxSeq && list[i].time <= ms) return list[i].seq;
      }
    }
    return undefined;
  }

  /**
   * Deletes, oldest first, every whole segment whose records all have seq < seq. The
   * directory is fsynced after each deletion so the files left are always a suffix of
   * the journal, even after a crash in the middle.
   */
  pruneBefore(seq: number): Promise<{ segments: number; bytes: number }> {
    return this.serial(async () => {
      let segments = 0;
      let bytes = 0;
      while (this.segments.length) {
        const seg = this.segments[0];
        const last = seg.lastSeqBound ?? seg.entries.at(-1)?.seq ?? seg.firstSeq;
        if (last >= seq) break;
        if (this.segments.length === 1 && this.fh) {
          await this.fh.close();
          this.fh = undefined;
        }
        this.segments.shift();
        this.removeFromIndex(seg);
        this.handles.drop(seg.path);
        this.damaged = this.damaged.filter((d) => d.path !== seg.path);
        await unlink(seg.path);
        await fsyncDir(this.dir);
        segments++;
        bytes += seg.bytes;
      }
      return { segments, bytes };
    });
  }

  /** Drops the oldest segment's entries: they are a prefix of every region list they are in. */
  private removeFromIndex(seg: JournalSegment): void {
    const lastSeq = seg.entries.at(-1)?.seq ?? 0;
    const touched = new Set<string>();
    for (const e of seg.entries) {
      if (e.type !== JournalRecordType.BeforeImage || e.length === 0) continue;
      const last = Math.floor((e.offset + e.length - 1) / INDEX_REGION);
      for (let r = Math.floor(e.offset / INDEX_REGION); r <= last; r++) touched.add(`${e.disk}:${r}`);
    }
    for (const key of touched) {
      const [disk, r] = key.split(':').map(Number);
      const regions = this.index.get(disk)!;
      const list = regions.get(r)!;
      list.splice(0, firstAbove(list, lastSeq));
      if (list.length === 0) regions.delete(r);
      if (regions.size === 0) this.index.delete(disk);
    }
  }

  /** Waits for appends and prunes in progress, then closes every file. */
  close(): Promise<void> {
    return this.serial(async () => {
      if (this.closed) return;
      this.closed = true;
      if (this.fh) {
        await this.fh.close();
        this.fh = undefined;
      }
      await this.handles.closeAll();
    });
  }
}

function entryOf(r: JournalRecord, flags: number, segment: JournalSegment, fileOffset: number): JournalEntry {
  if (r.type === JournalRecordType.Marker) {
    return {
      type: r.type,
      flags,
      seq: r.seq,
      time: r.time,
      disk: 0,
      offset: 0,
      length: 0,
      segment,
      fileOffset,
      tag: r.tag,
    };
  }
  return {
    type: r.type,
    flags,
    seq: r.seq,
    time: r.time,
    disk: r.disk,
    offset: r.offset,
    length: r.length,
    segment,
    fileOffset,
  };
}

function appendError(dir: string, e: unknown, neededBytes: number): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new RetentionFullError(dir, neededBytes, e);
  return new Error(`undo journal append failed in ${dir}: ${(e as Error).message}`, { cause: e });
}

/**
 * Why a record cannot follow `prev` (undefined when it can): seqs increase, except that
 * the chunks of one change share its seq and follow each other without a gap.
 */
function sequenceProblem(
  prev: JournalEntry | undefined,
  lastSeq: number,
  type: JournalRecordType,
  seq: number,
  range: { disk: number; offset: number },
): string | undefined {
  if (prev && prev.type === JournalRecordType.BeforeImage && prev.flags & FLAG_MORE) {
    const next = type === JournalRecordType.BeforeImage && seq === prev.seq && range.disk === prev.disk;
    if (next && range.offset === prev.offset + prev.length) return undefined;
    return `change seq ${prev.seq} is incomplete: its next chunk is missing`;
  }
  if (!Number.isSafeInteger(seq) || seq <= lastSeq) return `sequence ${seq} does not follow ${lastSeq}`;
  return undefined;
}

function recordRange(r: JournalRecord): { disk: number; offset: number } {
  return r.type === JournalRecordType.BeforeImage ? r : { disk: 0, offset: 0 };
}

/** Index of the first entry with seq > seq (lists are in seq order). */
function firstAbove(list: JournalEntry[], seq: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].seq <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function writeAll(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  for (let i = 0; i < bufs.length; i += MAX_IOVECS) {
    let chunk = bufs.slice(i, i + MAX_IOVECS);
    let left = chunk.reduce((n, b) => n + b.length, 0);
    while (left > 0) {
      const { bytesWritten } = await fh.writev(chunk, position);
      position += bytesWritten;
      left -= bytesWritten;
      if (left > 0) chunk = skipBytes(chunk, bytesWritten);
    }
  }
}

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** A record whose header is intact but whose bytes fail their check. */
interface BadRecord {
  path: string;
  offset: number;
  reason: string;
  entry: JournalEntry;
}

/**
 * Reads a segment's records into seg.entries, stopping at the first one that cannot be
 * parsed. With `verifyPayloads` every record's CRC is checked (payloads are read);
 * otherwise only headers are read (each has its own CRC) and large payloads are skipped
 * over, except markers (read for their tags). A record with an intact header and a bad
 * CRC is a torn write if its seq is above durableThrough in a segment being verified
 * (the scan stops there), and otherwise damage: it is indexed, reported, and skipped.
 */
async function scanSegment(
  seg: JournalSegment,
  verifyPayloads: boolean,
  before: JournalEntry | undefined,
  durableThrough: number,
): Promise<{ invalid?: { offset: number; reason: string }; badPayloads: BadRecord[] }> {
  const fh = await open(seg.path, 'r');
  const reader = new ChunkReader(fh, seg.bytes);
  const badPayloads: BadRecord[] = [];
  const stop = (offset: number, reason: string) => ({ invalid: { offset, reason }, badPayloads });
  try {
    let off = 0;
    let prev = before;
    while (off < seg.bytes) {
      if (seg.bytes - off < JOURNAL_HEADER_SIZE) return stop(off, 'truncated record header');
      const hb = Buffer.from(await reader.at(off, JOURNAL_HEADER_SIZE));
      const h = decodeHeader(hb);
      if (!h.ok) return stop(off, h.reason);
      const x = h.header;
      if (off === 0 && x.seq !== seg.firstSeq) {
        return stop(off, `first record seq ${x.seq} does not match the segment name`);
      }
      const problem = sequenceProblem(prev, prev?.seq ?? 0, x.type, x.seq, x);
      if (problem) return stop(off, problem);
      const end = off + JOURNAL_HEADER_SIZE + x.payloadLength;
      if (end > seg.bytes) return stop(off, 'truncated record payload');
      let tag: string | undefined;
      let bad = false;
      if (verifyPayloads || x.type === JournalRecordType.Marker) {
        const payload = await reader.at(off + JOURNAL_HEADER_SIZE, x.payloadLength);
        bad = !checkRecordCrc(hb, payload, x.crc);
        if (bad && verifyPayloads && x.seq > durableThrough) return stop(off, 'crc mismatch');
        if (x.type === JournalRecordType.Marker) tag = bad ? '' : payload.toString('utf8');
      }
      prev = {
        type: x.type,
        flags: x.flags,
        seq: x.seq,
        time: x.time,
        disk: x.disk,
        offset: x.offset,
        length: x.length,
        segment: seg,
        fileOffset: off,
        ...(tag === undefined ? {} : { tag }),
      };
      seg.entries.push(prev);
      if (bad) badPayloads.push({ path: seg.path, offset: off, reason: 'crc mismatch', entry: prev });
      off = end;
    }
    return { badPayloads };
  } finally {
    await fh.close();
  }
}

/** Reads every indexed record of a segment back and checks it; the bad ones. */
async function verifySegment(seg: JournalSegment): Promise<BadRecord[]> {
  const fh = await open(seg.path, 'r');
  const reader = new ChunkReader(fh, seg.bytes);
  const bad: BadRecord[] = [];
  try {
    for (const e of [...seg.entries]) {
      const size = JOURNAL_HEADER_SIZE + payloadBytes(e);
      const got = e.fileOffset + size <= seg.bytes ? await reader.at(e.fileOffset, size) : Buffer.alloc(0);
      const problem = recordProblem(got, got.length, e);
      if (problem) bad.push({ path: seg.path, offset: e.fileOffset, reason: problem, entry: e });
    }
  } finally {
    await fh.close();
  }
  return bad;
}

/** Payload bytes of an indexed record: a stored before-image's length, a marker's tag. */
function payloadBytes(e: JournalEntry): number {
  if (e.type === JournalRecordType.Marker) return Buffer.byteLength(e.tag ?? '', 'utf8');
  return e.flags & FLAG_ZERO ? 0 : e.length;
}

/** Why the bytes read for entry e (got of them) are not that record, or undefined. */
function recordProblem(buf: Buffer, got: number, e: JournalEntry): string | undefined {
  const size = JOURNAL_HEADER_SIZE + payloadBytes(e);
  if (got < size) return 'truncated record';
  const h = decodeHeader(buf.subarray(0, JOURNAL_HEADER_SIZE));
  if (!h.ok) return h.reason;
  const x = h.header;
  if (x.seq !== e.seq || x.disk !== e.disk || x.offset !== e.offset || x.length !== e.length) {
    return `record seq ${x.seq} does not match the index (seq ${e.seq})`;
  }
  if (x.payloadLength !== size - JOURNAL_HEADER_SIZE)
    return `record seq ${x.seq} does not match the index (payload length)`;
  if (!checkRecordCrc(buf, buf.subarray(JOURNAL_HEADER_SIZE, size), x.crc)) return 'crc mismatch';
  return undefined;
}

/** Buffered positional reads that move forward through a file, skipping what is not asked for. */
class ChunkReader {
  private buf = Buffer.alloc(0);
  private start = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
  ) {}

  /** n bytes at off (the caller checked they are inside the file); valid until the next call. */
  async at(off: number, n: number): Promise<Buffer> {
    if (off >= this.start && off + n <= this.start + this.buf.length) {
      return this.buf.subarray(off - this.start, off - this.start + n);
    }
    const len = Math.min(Math.max(SCAN_CHUNK, n), this.size - off);
    const buf = Buffer.allocUnsafe(len);
    const got = await readFully(this.fh, buf, off);
    this.buf = buf.subarray(0, got);
    this.start = off;
    if (got < n) throw new Error(`short read of ${n} bytes at ${off}`);
    return this.buf.subarray(0, n);
  }
}

/**
 * Read-only handles of segment files, kept open for reuse and closed least recently
 * used first, never while a read is using them.
 */
class ReadHandles {
  private handles = new Map<string, { fh: Promise<FileHandle>; users: number }>();

  constructor(private readonly max: number) {}

  async use<T>(path: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    let h = this.handles.get(path);
    if (h)
      this.handles.delete(path); // re-inserted below as the most recently used
    else {
      h = { fh: open(path, 'r'), users: 0 };
      h.fh.catch(() => undefined); // observed below; failure removes it
    }
    this.handles.set(path, h);
    h.users++;
    try {
      return await fn(await h.fh);
    } catch (e) {
      if (this.handles.get(path) === h && (e as NodeJS.ErrnoException).code === 'ENOENT')
        this.handles.delete(path);
      throw e;
    } finally {
      h.users--;
      if (h.users === 0 && this.handles.get(path) !== h) closeQuietly(h.fh);
      this.evict();
    }
  }

  private evict(): void {
    for (const [path, h] of this.handles) {
      if (this.handles.size <= this.max) return;
      if (h.users > 0) continue;
      this.handles.delete(path);
      closeQuietly(h.fh);
    }
  }

  /** Forgets a deleted segment (closed now, or when its last reader finishes). */
  drop(path: string): void {
    const h = this.handles.get(path);
    if (!h) return;
    this.handles.delete(path);
    if (h.users === 0) closeQuietly(h.fh);
  }

  async closeAll(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((h) => h.fh.then((fh) => fh.close()).catch(() => undefined)));
  }
}

function closeQuietly(fh: Promise<FileHandle>): void {
  fh.then((f) => f.close()).catch(() => undefined);
}

/** Marker flags decoded: application-consistent or crash-consistent. */
export function markerKind(e: JournalEntry): 'app' | 'crash' {
  return e.flags & FLAG_APP ? 'app' : 'crash';
}
