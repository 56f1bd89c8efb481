// The master target's replica of one protected machine: its disks (sparse raw image
// files or block devices, kept at the latest applied state) and one undo journal (one
// sequence per machine, so every point is consistent across the machine's disks).
// Applying a batch: before-images to the journal, one journal sync, then the replica
// writes, one replica sync, then appliedThrough in the state file. See docs/formats.md.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isSystemTag, RESYNC_END_TAG, RESYNC_START_TAG } from '../resync/markers.js';
import { readBlockHashes } from '../resync/read-hashes.js';
import { BlockStore } from '../storage/block-store.js';
import { isAllZero } from '../util/buffers.js';
import { readJsonFile, writeJsonFile } from '../util/json-file.js';
import type { BlockHash } from '../wire/frame.js';
import { BatchOverlaps } from './batch-overlaps.js';
import { describeDamage } from './journal-damage.js';
import { type JournalRecord, JournalRecordType, MAX_JOURNAL_PAYLOAD } from './journal-record.js';
import { PointView, type ViewSource } from './point-view.js';
import {
  freeBytes,
  type HealthProblem,
  type RetentionFull,
  RetentionFullError,
  retentionFullProblem,
} from './retention-space.js';
import { type RollbackResult, rollBack } from './rollback.js';
import { type JournalEntry, markerKind, UndoJournal } from './undo-journal.js';

export type ChangeType = 'write' | 'zero' | 'trim';

/** One write, write-zeroes or trim of one disk. */
export interface Change {
  type: ChangeType;
  seq: number;
  disk: number;
  offset: number;
  length: number;
  /** The written bytes (write only; length bytes). */
  data?: Buffer;
  /** Source time, milliseconds since the epoch. */
  time: number;
}

/** A recovery point: a flush (crash-consistent) or a bookmark (app-consistent). */
export interface Marker {
  type: 'marker';
  seq: number;
  kind: 'crash' | 'app';
  tag: string;
  time: number;
}

export type ReplicaItem = Change | Marker;

export interface ReplicaOptions {
  /** Holds the state file, replica-state.json. */
  stateDir: string;
  /** The undo journal's directory, on the retention volume. */
  retentionDir: string;
  /** Disk id (1..65535) -> replica image path; the files must exist at their full size. */
  disks: { id: number; path: string }[];
  segmentBytes?: number;
  logger?: Logger;
  /**
   * A new replica (no state file yet) holds nothing of the source: no point is consistent
   * until the first resync ends. The master target sets this; library users replaying a
   * log from an empty disk need not.
   */
  newReplicaNeedsResync?: boolean;
}

export interface BatchResult {
  /** Changes and markers applied for the first time. */
  applied: number;
  /** Re-sent items whose before-image was already journaled: only the replica write was redone. */
  redone: number;
  /** Re-sent items at or below appliedThrough: nothing done. */
  skipped: number;
  appliedThrough: number;
}

export interface RecoveryPoint {
  seq: number;
  time: number;
  kind: 'crash' | 'app';
  tag: string;
}

export interface PruneResult {
  segments: number;
  bytes: number;
  oldestPoint: number;
}

interface ReplicaState {
  /** Every item with seq <= this is applied and durable on the replica disks. */
  appliedThrough: number;
  /** Source time of that item. */
  appliedTime: number;
  /**
   * Seq ranges [start, end) in which the replica was not consistent (a resync was copying
   * blocks); end null = still resyncing. Points inside are not recovery points.
   */
  inconsistent?: [number, number | null][];
}

export const STATE_FILE = 'replica-state.json';
/** Health problem code: the undo journal holds records that fail their checksums. */
export const JOURNAL_CORRUPT = 'undo-journal-corrupt';
/** Before-images are taken and journaled in chunks of at most this size (bounds memory). */
export const CHUNK_BYTES = 16 * 1024 * 1024;
const MAX_U32 = 0xffffffff;

export class Replica {
  private state: ReplicaState;
  private ops: Promise<unknown> = Promise.resolve();
  private views = new Set<PointView>();
  /** While a prune runs: views below this would need what it deletes. */
  private pruneFloor = 0;
  private closed = false;
  private readonly source: ViewSource;
  /** Set while the retention volume is too full for the next batch (replication paused). */
  private full: RetentionFull | undefined;
  /** Why no batch is taken any more (the replica failed over): set when the rollback is asked for. */
  private retired: string | undefined;

  private constructor(
    private readonly statePath: string,
    state: ReplicaState,
    private readonly stores: Map<number, BlockStore>,
    readonly journal: UndoJournal,
    private readonly logger: Logger | undefined,
  ) {
    this.state = state;
    this.source = {
      journal,
      diskSize: (disk) => this.store(disk).size,
      readReplica: (disk, buf, offset) => this.store(disk).readInto(buf, offset),
      release: (view) => this.views.delete(view),
    };
  }

  static async open(opts: ReplicaOptions): Promise<Replica> {
    mkdirSync(opts.stateDir, { recursive: true });
    const statePath = join(opts.stateDir, STATE_FILE);
    const state = (await readJsonFile<ReplicaState>(statePath)) ?? {
      appliedThrough: 0,
      appliedTime: 0,
      inconsistent: opts.newReplicaNeedsResync ? [[0, null]] : [],
    };
    const stores = new Map<number, BlockStore>();
    try {
      for (const d of opts.disks) {
        if (!Number.isInteger(d.id) || d.id < 1 || d.id > 65535) throw new Error(`invalid disk id ${d.id}`);
        if (stores.has(d.id)) throw new Error(`disk id ${d.id} given twice`);
        stores.set(d.id, await BlockStore.open(d.path));
      }
      // Records at or below appliedThrough were synced before their replica writes: losing
      // one is corruption, not a torn tail.
      const journal = await UndoJournal.open(opts.retentionDir, {
        segmentBytes: opts.segmentBytes,
        durableThrough: state.appliedThrough,
        logger: opts.logger,
      });
      return new Replica(statePath, state, stores, journal, opts.logger);
    } catch (e) {
      for (const s of stores.values()) await s.close();
      throw e;
    }
  }

  /** Highest seq applied and durable on the replica ("latest"). */
  get appliedThrough(): number {
    return this.state.appliedThrough;
  }

  /** Source time of the item at appliedThrough (0 before anything is applied). */
  get appliedTime(): number {
    return this.state.appliedTime;
  }

  /** The lowest point a view can still show exactly. */
  get oldestPoint(): number {
    const first = this.journal.firstSeq;
    const applied = this.state.appliedThrough;
    return first === undefined ? applied : Math.min(first - 1, applied);
  }

  /**
   * Source time of the oldest retained record: any moment from then on can be chosen
   * as a point (undefined while nothing is applied).
   */
  get oldestPointTime(): number | undefined {
    const first = this.journal.firstSeq;
    if (first !== undefined) return this.journal.entry(first)?.time;
    return this.state.appliedThrough > 0 ? this.state.appliedTime : undefined;
  }

  get diskIds(): number[] {
    return [...this.stores.keys()];
  }

  diskSize(disk: number): number {
    return this.store(disk).size;
  }

  private store(disk: number): BlockStore {
    const s = this.stores.get(disk);
    if (!s) throw new Error(`unknown disk ${disk}`);
    return s;
  }

  /** Batches, prunes and close run one at a time, in call order. */
  private serial<T>(fn: () => Promise<T>, evenIfClosed = false): Promise<T> {
    const run = this.ops.then(() => {
      if (this.closed && !evenIfClosed) throw new Error('replica is closed');
      return fn();
    });
    this.ops = run.catch(() => undefined);
    return run;
  }

  /**
   * Applies changes and markers in seq order. Items at or below appliedThrough are
   * skipped; items whose before-image is already journaled (sent before a restart) only
   * have their replica write redone. On any error the batch is not acknowledged:
   * appliedThrough stays, and re-sending the batch later is safe.
   */
  applyBatch(items: ReplicaItem[]): Promise<BatchResult> {
    return this.serial(() => {
      if (this.retired) throw new Error(this.retired);
      return this.applyNow(items);
    });
  }

  /**
   * Why point p cannot be recovered, or undefined when it can: outside what is applied
   * and retained, inside a resync, or needing a damaged journal record (every record a
   * rollback to p would read is checked first).
   */
  async pointRefusal(p: number): Promise<string | undefined> {
    if (!Number.isSafeInteger(p) || p < 0) return `invalid recovery point ${p}`;
    if (p > this.state.appliedThrough)
      return `recovery point ${p} is newer than the latest applied seq ${this.state.appliedThrough}`;
    const oldest = Math.max(this.oldestPoint, this.pruneFloor);
    if (p < oldest) return `recovery point ${p} is older than the oldest retained point ${oldest}`;
    const problem = this.pointProblem(p);
    if (problem) return problem;
    try {
      await this.checkPoint(p);
    } catch (e) {
      return (e as Error).message;
    }
    return undefined;
  }

  /**
   * Failover: from now on no batch is taken (reason says why); once the batches already
   * queued are applied, the disks are rolled back in place to point (latest = what is
   * applied then) and synced. beforeWrite runs first, with the point, after it is
   * checked and before any byte changes (the caller's durable marker). The journal is
   * left as it is, so the same rollback can be redone after a crash.
   */
  rollBackTo(
    point: number | 'latest',
    reason: string,
    beforeWrite: (point: number) => Promise<void>,
  ): Promise<RollbackResult & { point: number; pointTime: number }> {
    this.retired ??= reason;
    return this.serial(async () => {
      const p = point === 'latest' ? this.state.appliedThrough : point;
      const refusal = await this.pointRefusal(p);
      if (refusal) throw new Error(refusal);
      const pointTime = this.timeOf(p);
      await beforeWrite(p);
      const r = await rollBack(this.journal, (d) => this.store(d), p);
      for (const d of r.disks) await this.store(d).sync();
      return { ...r, point: p, pointTime };
    });
  }

  /** Source time of point p: its record's, or the applied time for the latest point (0 if unknown). */
  private timeOf(p: number): number {
    if (p === this.state.appliedThrough) return this.state.appliedTime;
    return this.journal.entry(p)?.time ?? 0;
  }

  /** Set once a failover was asked for: no batch is applied any more. */
  get retiredReason(): string | undefined {
    return this.retired;
  }

  private async applyNow(items: ReplicaItem[]): Promise<BatchResult> {
    const { skipped, redo, fresh } = this.plan(items);
    const last = fresh.at(-1) ?? redo.at(-1);
    if (!last) return { applied: 0, redone: 0, skipped, appliedThrough: this.appliedThrough };
    const touched = new Set<number>();
    // The replica may or may not hold these already; writing them again is idempotent.
    for (const it of redo) await this.writeReplica(it, touched);
    // Before-images durable first (one sync for the batch), indexed, then the replica.
    await this.appendBeforeImages(fresh);
    for (const it of fresh) await this.writeReplica(it, touched);
    for (const disk of touched) await this.store(disk).sync();
    const state: ReplicaState = {
      appliedThrough: last.seq,
      appliedTime: last.time,
      inconsistent: this.nextIntervals([...redo, ...fresh]),
    };
    await writeJsonFile(this.statePath, state, { durable: true });
    this.state = state;
    return { applied: fresh.length, redone: redo.length, skipped, appliedThrough: last.seq };
  }

  /** The inconsistent ranges after these items: resync markers open and close them. */
  private nextIntervals(items: ReplicaItem[]): [number, number | null][] {
    const first = this.journal.firstSeq ?? this.state.appliedThrough + 1;
    // Ranges whose every point is pruned no longer matter.
    const out = (this.state.inconsistent ?? [])
      .filter(([, end]) => end === null || end >= first)
      .map(([s, e]) => [s, e] as [number, number | null]);
    for (const it of items) {
      if (it.type !== 'marker') continue;
      const open = out.at(-1)?.[1] === null ? out.at(-1) : undefined;
      if (it.tag === RESYNC_START_TAG && !open) out.push([it.seq, null]);
      else if (it.tag === RESYNC_END_TAG && open) open[1] = it.seq;
    }
    return out;
  }

  /**
   * Journals the before-images of new items. A full retention volume pauses replication:
   * the batch is refused whole (the journal cuts back what it wrote), and the error names
   * the directory and its free bytes; the sender keeps the batch and retries.
   */
  private async appendBeforeImages(fresh: ReplicaItem[]): Promise<void> {
    if (fresh.length === 0) return;
    try {
      await this.journal.append(this.beforeImages(fresh));
    } catch (e) {
      if (!(e instanceof RetentionFullError)) throw e;
      const first = this.full === undefined;
      this.full = {
        dir: e.dir,
        since: this.full?.since ?? Date.now(),
        freeBytes: await freeBytes(e.dir).catch(() => 0),
        neededBytes: e.neededBytes,
        cause: (e.cause as Error).message,
      };
      const problem = retentionFullProblem(this.full);
      if (first) this.logger?.error({ code: problem.code, dir: e.dir }, problem.message);
      throw new Error(problem.message, { cause: e });
    }
    if (this.full) {
      this.logger?.info(
        { dir: this.full.dir, pausedMs: Date.now() - this.full.since },
        'retention volume has room again: replication resumes',
      );
      this.full = undefined;
    }
  }

  /** The named problem while the retention volume is too full for the next batch. */
  get retentionProblem(): HealthProblem | undefined {
    return this.full && retentionFullProblem(this.full);
  }

  /** Every named problem of this replica now (empty when healthy). */
  healthProblems(): HealthProblem[] {
    const out: HealthProblem[] = [];
    if (this.full) out.push(retentionFullProblem(this.full));
    const damage = this.journal.damage;
    if (damage.length) {
      const first = describeDamage(damage[0]!);
      const more = damage.length > 1 ? ` (and ${damage.length - 1} more damaged records)` : '';
      out.push({
        code: JOURNAL_CORRUPT,
        message: `${first}${more}: views of points that need it are refused; points after it are not affected`,
      });
    }
    return out;
  }

  /** True when seq is inside a resync (or before the first one ended, for a new replica). */
  private inResync(seq: number): boolean {
    return (this.state.inconsistent ?? []).some(([s, e]) => seq >= s && (e === null || seq < e));
  }

  /** Whether the replica is consistent now, and since when it is resyncing if not. */
  get resyncOpenSince(): number | undefined {
    const last = this.state.inconsistent?.at(-1);
    return last && last[1] === null ? last[0] : undefined;
  }

  /** False for a new replica until its first copy ends: it has no recovery point yet. */
  get everConsistent(): boolean {
    const first = this.state.inconsistent?.[0];
    return !(first && first[0] === 0 && first[1] === null);
  }

  /** Why seq cannot be a recovery point, or undefined when it can. */
  pointProblem(seq: number): string | undefined {
    if (!this.inResync(seq)) return undefined;
    const open = this.resyncOpenSince;
    return open !== undefined && seq >= open
      ? `point ${seq} is inside the resync in progress since seq ${open}: the replica is not consistent there yet`
      : `point ${seq} is inside a resync: the replica was not consistent then`;
  }

  /**
   * The block hashes of a range of a replica disk as of appliedThrough (batches wait, so
   * the blocks never show half a batch).
   */
  blockHashes(
    disk: number,
    offset: number,
    blockSize: number,
    count: number,
  ): Promise<{ appliedThrough: number; blocks: BlockHash[] }> {
    return this.serial(async () => {
      const store = this.store(disk);
      if (offset >= store.size) {
        throw new Error(`offset ${offset} is beyond the end of disk ${disk} (${store.size} bytes)`);
      }
      const blocks = await readBlockHashes(store, offset, blockSize, count);
      return { appliedThrough: this.state.appliedThrough, blocks };
    });
  }

  /**
   * While paused for space: the problem if the volume still lacks the room the refused
   * batch needed (a sender need not send it again yet), undefined once it may fit.
   */
  async retentionStillFull(): Promise<HealthProblem | undefined> {
    const f = this.full;
    if (!f) return undefined;
    f.freeBytes = await freeBytes(f.dir).catch(() => 0);
    return f.freeBytes < f.neededBytes ? retentionFullProblem(f) : undefined;
  }

  /** Validates the whole batch before anything is done, and sorts its items by what they need. */
  private plan(items: ReplicaItem[]): { skipped: number; redo: ReplicaItem[]; fresh: ReplicaItem[] } {
    const applied = this.state.appliedThrough;
    // Journaled but not confirmed on the replica: these must come back first, in order.
    const pending = groupBySeq(this.journal.entriesAfter(applied));
    let p = 0;
    let skipped = 0;
    const redo: ReplicaItem[] = [];
    const fresh: ReplicaItem[] = [];
    let prev: number | undefined;
    for (const it of items) {
      this.validate(it);
      if (prev !== undefined && it.seq <= prev) throw new Error(`seq ${it.seq} does not follow seq ${prev}`);
      prev = it.seq;
      if (it.seq <= applied) {
        skipped++;
        continue;
      }
      if (p < pending.length) {
        const want = pending[p++];
        if (it.seq !== want[0].seq) {
          throw new Error(
            `seq ${it.seq} received where seq ${want[0].seq} was expected (journaled, not yet applied)`,
          );
        }
        const mismatch = journalMismatch(it, want);
        if (mismatch) throw new Error(`seq ${it.seq} does not match its journal record: ${mismatch}`);
        redo.push(it);
        continue;
      }
      fresh.push(it);
    }
    return { skipped, redo, fresh };
  }

  private validate(it: ReplicaItem): void {
    if (!Number.isSafeInteger(it.seq) || it.seq < 1) throw new Error(`invalid seq ${it.seq}`);
    if (!Number.isSafeInteger(it.time) || it.time < 0)
      throw new Error(`seq ${it.seq}: invalid time ${it.time}`);
    if (it.type === 'marker') {
      if (it.kind !== 'crash' && it.kind !== 'app')
        throw new Error(`seq ${it.seq}: invalid marker kind ${it.kind}`);
      if (Buffer.byteLength(it.tag, 'utf8') > 4096) throw new Error(`seq ${it.seq}: marker tag too long`);
      return;
    }
    if (it.type !== 'write' && it.type !== 'zero' && it.type !== 'trim') {
      throw new Error(`seq ${(it as Change).seq}: invalid change type ${(it as Change).type}`);
    }
    const store = this.stores.get(it.disk);
    if (!store) throw new Error(`seq ${it.seq}: unknown disk ${it.disk}`);
    const { offset, length } = it;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new Error(`seq ${it.seq}: invalid range [${offset}, +${length})`);
    }
    if (length > MAX_U32) throw new Error(`seq ${it.seq}: length ${length} is too large`);
    if (offset + length > store.size) {
      throw new Error(
        `seq ${it.seq}: range [${offset}, +${length}) is beyond the end of disk ${it.disk} (${store.size} bytes)`,
      );
    }
    if (it.type === 'write') {
      if (!it.data || it.data.length !== length) {
        throw new Error(
          `seq ${it.seq}: write of ${length} bytes carries ${it.data?.length ?? 0} bytes of data`,
        );
      }
      if (length > MAX_JOURNAL_PAYLOAD)
        throw new Error(`seq ${it.seq}: write of ${length} bytes is too large`);
    } else if (it.data && it.data.length > 0) {
      throw new Error(`seq ${it.seq}: ${it.type} carries data`);
    }
  }

  /**
   * The journal records of new items, produced lazily (one chunk in memory at a time).
   * A before-image is what the range holds just before the change: the replica's bytes
   * with the earlier changes of this same batch laid over them (not written yet).
   */
  private async *beforeImages(fresh: ReplicaItem[]): AsyncGenerator<JournalRecord> {
    const earlier = new BatchOverlaps();
    for (const it of fresh) {
      if (it.type === 'marker') {
        yield { type: JournalRecordType.Marker, seq: it.seq, time: it.time, kind: it.kind, tag: it.tag };
        continue;
      }
      const end = it.offset + it.length;
      let off = it.offset;
      do {
        const n = Math.min(CHUNK_BYTES, end - off);
        const image = await this.readBefore(it.disk, off, n, earlier);
        yield {
          type: JournalRecordType.BeforeImage,
          seq: it.seq,
          disk: it.disk,
          time: it.time,
          offset: off,
          length: n,
          beforeImage: image,
          more: off + n < end,
        };
        off += n;
      } while (off < end);
      earlier.add(it);
    }
  }

  /**
   * Bytes at [offset, offset+n) before the batch's next change: the replica's, with the
   * batch's earlier changes (`batch`) laid over them in order; null when all zeroes.
   */
  private async readBefore(
    disk: number,
    offset: number,
    n: number,
    batch: BatchOverlaps,
  ): Promise<Buffer | null> {
    if (n === 0) return null;
    const earlier = batch.overlapping(disk, offset, n);
    // The last earlier change over the whole range hides the replica and every change
    // before it (a block rewritten many times in one batch is laid once, and not read).
    const covers = (c: Change) => c.offset <= offset && c.offset + c.length >= offset + n;
    let hiding = earlier.length - 1;
    while (hiding >= 0 && !covers(earlier[hiding]!)) hiding--;
    const store = this.store(disk);
    if (earlier.length === 0) {
      // A hole with nothing laid over it costs neither a read nor journal space.
      const ext = store.extents(offset, n, 1);
      if (ext[0]?.hole && ext[0].length >= n) return null;
    }
    const buf = Buffer.allocUnsafe(n);
    // With a hiding change, every byte comes from it or a later one: the replica is not read.
    if (hiding < 0) await store.readInto(buf, offset);
    for (let k = Math.max(hiding, 0); k < earlier.length; k++) {
      const c = earlier[k]!;
      const from = Math.max(c.offset, offset);
      const to = Math.min(c.offset + c.length, offset + n);
      if (c.type === 'write') c.data!.copy(buf, from - offset, from - c.offset, to - c.offset);
      else buf.fill(0, from - offset, to - offset);
    }
    return isAllZero(buf) ? null : buf;
  }

  private async writeReplica(it: ReplicaItem, touched: Set<number>): Promise<void> {
    if (it.type === 'marker' || it.length === 0) return;
    const store = this.store(it.disk);
    if (it.type === 'write') await store.write(it.data!, it.offset);
    else await store.zero(it.offset, it.length, false); // zero and trim both read back as zeroes
    touched.add(it.disk);
  }

  /**
   * A view of the disks at point P (or "latest" = appliedThrough). The view stays exact
   * while more changes are applied; it holds back pruning of what it needs until closed.
   */
  openView(point: number | 'latest'): PointView {
    if (this.closed) throw new Error('replica is closed');
    if (this.retired) throw new Error(this.retired);
    const p = point === 'latest' ? this.state.appliedThrough : point;
    if (!Number.isSafeInteger(p) || p < 0) throw new Error(`invalid recovery point ${point}`);
    if (p > this.state.appliedThrough) {
      throw new Error(
        `recovery point ${p} is newer than the latest applied seq ${this.state.appliedThrough}`,
      );
    }
    const oldest = Math.max(this.oldestPoint, this.pruneFloor);
    if (p < oldest) throw new Error(`recovery point ${p} is older than the oldest retained point ${oldest}`);
    const damage = this.journal.damageFor(p);
    if (damage) throw new Error(damage);
    const view = new PointView(p, this.source);
    this.views.add(view);
    return view;
  }

  /**
   * Checks, before a view of point P is opened, every journal record it may read (once
   * per segment): a view that would need a corrupt before-image is refused here, with
   * the file, offset and seq, instead of failing in the middle of a read.
   */
  async checkPoint(point: number | 'latest'): Promise<void> {
    const p = point === 'latest' ? this.state.appliedThrough : point;
    await this.journal.verifyAfter(p);
    const damage = this.journal.damageFor(p);
    if (damage) throw new Error(damage);
  }

  /** Markers (flushes and bookmarks) that can still be viewed, oldest first. */
  recoveryPoints(): RecoveryPoint[] {
    return this.journal
      .markers(this.state.appliedThrough)
      .filter((e) => !isSystemTag(e.tag ?? '') && !this.inResync(e.seq))
      .map((e: JournalEntry) => ({
        seq: e.seq,
        time: e.time,
        kind: markerKind(e),
        tag: e.tag ?? '',
      }));
  }

  /**
   * The point for a moment in time: the latest applied seq whose source time is <= ms
   * (any moment, not only markers); undefined when no retained record is that old.
   */
  pointAtTime(ms: number): number | undefined {
    const { appliedThrough, appliedTime } = this.state;
    if (appliedThrough > 0 && appliedTime <= ms) return appliedThrough;
    return this.journal.latestAtOrBefore(ms, appliedThrough);
  }

  /**
   * Deletes whole journal segments whose records all have seq < seq: points below
   * seq - 1 may no longer be viewable (see oldestPoint). Never deletes what an open view
   * or an unconfirmed change needs.
   */
  pruneBefore(seq: number): Promise<PruneResult> {
    return this.serial(async () => {
      // Failed over: the journal after the point must stay whole until released (a crash
      // in the middle of the failover redoes the rollback from it).
      if (this.retired) return { segments: 0, bytes: 0, oldestPoint: this.oldestPoint };
      let cutoff = Math.min(seq, this.state.appliedThrough + 1);
      for (const v of this.views) cutoff = Math.min(cutoff, v.point + 1);
      this.pruneFloor = Math.max(0, cutoff - 1);
      try {
        const r = await this.journal.pruneBefore(cutoff);
        return { ...r, oldestPoint: this.oldestPoint };
      } finally {
        this.pruneFloor = 0;
      }
    });
  }

  /**
   * Retention by age: keeps every moment from cutoffMs on choosable. The point p at the
   * cutoff stays viewable, and its own record stays too, so that pointAtTime still finds
   * p (or a later point) for every moment from the cutoff on.
   */
  async pruneOlderThan(cutoffMs: number): Promise<PruneResult> {
    const p = this.pointAtTime(cutoffMs);
    if (p === undefined) return { segments: 0, bytes: 0, oldestPoint: this.oldestPoint };
    return this.pruneBefore(p);
  }

  /** Views open now (each holds back pruning of what it needs). */
  openViews(): PointView[] {
    return [...this.views];
  }

  /** Waits for the batch in progress, closes views, disks and the journal. */
  close(): Promise<void> {
    return this.serial(async () => {
      if (this.closed) return;
      this.closed = true;
      for (const v of [...this.views]) v.close();
      for (const s of this.stores.values()) await s.close();
      await this.journal.close();
    }, true);
  }
}

/** Entries grouped into changes (the chunks of one change share its seq). */
function groupBySeq(entries: JournalEntry[]): JournalEntry[][] {
  const out: JournalEntry[][] = [];
  for (const e of entries) {
    const last = out.at(-1);
    if (last && last[0].seq === e.seq) last.push(e);
    else out.push([e]);
  }
  return out;
}

function journalMismatch(it: ReplicaItem, records: JournalEntry[]): string | undefined {
  const first = records[0];
  if (it.type === 'marker') {
    if (first.type !== JournalRecordType.Marker) return 'a marker where the journal has a change';
    if (markerKind(first) !== it.kind) return `marker kind ${it.kind}, journal has ${markerKind(first)}`;
    return undefined;
  }
  if (first.type !== JournalRecordType.BeforeImage) return 'a change where the journal has a marker';
  const length = records.reduce((n, e) => n + e.length, 0);
  if (first.disk !== it.disk || first.offset !== it.offset || length !== it.length) {
    return `disk ${it.disk} [${it.offset}, +${it.length}), journal has disk ${first.disk} [${first.offset}, +${length})`;
  }
  return undefined;
}
