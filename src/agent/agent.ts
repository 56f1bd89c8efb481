// The capture agent (Mobility service): serves each protected disk as an NBD
// export and records every change in the machine's ordered change log before it
// reaches the disk. See docs/architecture.md ("Capture: write path").
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ChangeLog } from '../changelog/change-log.js';
import { DirtyBitmap } from '../changelog/dirty-bitmap.js';
import { markerPayload, RecordType } from '../changelog/record.js';
import { isSystemTag, SYSTEM_TAG_PREFIX } from '../resync/markers.js';

type NewRecordType = RecordType.Write | RecordType.Zero | RecordType.Trim;

import type { NbdExport } from '../nbd/export.js';
import { BlockStore } from '../storage/block-store.js';
import { FileExport } from '../storage/file-export.js';
import { deferred } from '../util/deferred.js';
import { SyncCoalescer } from '../util/sync-coalescer.js';
import type { AckGate } from './ack-gate.js';
import {
  type AgentState,
  currentBootId,
  type DiskRecord,
  loadState,
  newState,
  registerDisk,
  saveState,
  saveStateAsync,
} from './agent-state.js';
import { CaptureExport } from './capture-export.js';
import type { Congestion } from './congestion.js';
import { type DataDirLock, lockDataDir } from './data-dir-lock.js';
import { RangeLock } from './range-lock.js';
import { redoLogTail } from './redo.js';
import { SettledWatermarks } from './settled-watermarks.js';
import { type BarrierStatus, WriteBarrier } from './write-barrier.js';

export const DEFAULT_LOG_LIMIT = 1024 * 1024 * 1024;
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
/** How often the disks are fsynced so that the log behind them may be trimmed. */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 5000;

export interface DiskSpec {
  name: string;
  path: string;
  /** Served read-only and not captured. */
  readOnly?: boolean;
}

export interface AgentOptions {
  dataDir: string;
  disks: DiskSpec[];
  logger: Logger;
  logLimitBytes?: number;
  segmentBytes?: number;
  checkpointIntervalMs?: number;
}

export interface MarkerOptions {
  /** Return once durable in the local log, whatever the acknowledgement mode. */
  localOnly?: boolean;
}

/** What a change carries besides its range: WRITE data, NO_HOLE, FUA. */
export interface ChangeOptions {
  data?: Buffer;
  noHole?: boolean;
  fua?: boolean;
  /**
   * Called once the change's record is written to the log (in the page cache, so a
   * crash of this process cannot lose it: the restart redoes it onto the disk), before
   * the disk write: the NBD reply may go then. From there on the change never fails to
   * its caller; an error is kept for the next FLUSH (takeLateWriteError), which also
   * waits for the change. Reads of its range wait for it (the range lock).
   */
  ack?: () => void;
}

export interface CapturedDisk {
  record: DiskRecord;
  store: BlockStore;
  bitmap: DirtyBitmap;
  locks: RangeLock;
}

export class Agent {
  private readonly syncer: SyncCoalescer;
  private watermark = 0;
  private readonly completedAbove = new Set<number>();
  private persistTimer: NodeJS.Timeout | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private persistedWatermark = 0;
  /** Resolved (and replaced) whenever the watermark advances. */
  private watermarkAdvanced = deferred();
  /** The file of settleLoggedBeforeUnlogged(), the value last given to it, and that write. */
  private settled!: SettledWatermarks;
  private settledThrough = 0;
  private settleWrite: Promise<void> = Promise.resolve();
  /** Every change <= this is durable on its disk (see checkpoint()). */
  private durableThrough = 0;
  private checkpointing: Promise<void> | undefined;
  /** State-file writes run one at a time, in order (they share a temporary file). */
  private stateWrites: Promise<void> = Promise.resolve();
  /**
   * A change completed without a log record (log full or failing): the next sync must
   * make the disks themselves durable, since no log record can redo it.
   */
  private unloggedSinceSync = false;
  /** The highest seq trimLog() was asked for; the part beyond the checkpoint waits for the next one. */
  private trimWanted = 0;
  private closed = false;
  private closing = false;
  private logFullWarned = false;
  /** Changes between their log append and their disk write: a clean stop waits for them. */
  private readonly inflight = new Set<Promise<void>>();
  /** Changes that may be acknowledged before they end (ChangeOptions.ack). */
  private readonly lateWrites = new Set<Promise<void>>();
  /** The first error of a write that failed after it was acknowledged (see writeNow). */
  private lateWriteError: Error | undefined;
  /** Changes marked in a dirty bitmap instead of the log, since the start (see resync.ts). */
  unloggedCount = 0;
  /**
   * The log's last seq when the newest unlogged change happened: a resync compares blocks
   * only with a replica that has applied at least this far (see docs/architecture.md, "Resync").
   */
  lastUnloggedSeq = 0;
  /** Wakes the resync (set by the shipper). */
  resyncWake: (() => void) | undefined;
  /** What replicates this agent (shipper, resync): its state for status(). */
  replicationStatus: (() => unknown) | undefined;
  /** The acknowledgement mode: where FLUSH and FUA must be durable (none: the local log). */
  private ackGate: AckGate | undefined;
  /** What a change does when the log is full (none: pull ahead at once). */
  private congestion: Congestion | undefined;
  /** A replication group's barrier: new writes wait while it is held. */
  private readonly barrier: WriteBarrier;

  private constructor(
    readonly dataDir: string,
    private readonly state: AgentState,
    readonly log: ChangeLog,
    readonly captured: CapturedDisk[],
    private readonly plain: { name: string; store: BlockStore }[],
    private readonly logger: Logger,
    private readonly lock: DataDirLock,
  ) {
    this.syncer = new SyncCoalescer(() => this.makeDurable());
    this.barrier = new WriteBarrier((heldMs) =>
      this.logger.warn(
        { heldMs },
        'write barrier released by its timeout: the group coordinator did not release it',
      ),
    );
  }

  static async open(opts: AgentOptions): Promise<Agent> {
    const { dataDir, logger } = opts;
    const prior = await loadState(dataDir);
    const state = prior ?? newState();
    const names = new Set<string>();
    const stores: { spec: DiskSpec; store: BlockStore }[] = [];
    let lock: DataDirLock | undefined;
    const captured: CapturedDisk[] = [];
    const plain: { name: string; store: BlockStore }[] = [];
    try {
      // Every disk must open before anything is written to the data dir.
      for (const spec of opts.disks) {
        if (names.has(spec.name)) throw new Error(`disk name '${spec.name}' given twice`);
        names.add(spec.name);
        try {
          stores.push({ spec, store: await BlockStore.open(spec.path, { readOnly: spec.readOnly }) });
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          const why = err.code === 'ENOENT' ? 'no such file or device' : err.message;
          throw new Error(`disk '${spec.name}': cannot open ${spec.path}: ${why}`);
        }
      }
      mkdirSync(join(dataDir, 'dirty'), { recursive: true });
      lock = lockDataDir(dataDir);
      for (const { spec, store } of stores) {
        if (spec.readOnly) {
          plain.push({ name: spec.name, store });
          continue;
        }
        const record = registerDisk(state, spec.name, spec.path, store.size);
        const bitmap = await DirtyBitmap.open(join(dataDir, 'dirty', `disk-${record.id}.bitmap`), store.size);
        captured.push({ record, store, bitmap, locks: new RangeLock() });
      }
    } catch (e) {
      for (const s of stores) await s.store.close();
      lock?.release();
      throw e;
    }
    const log = await ChangeLog.open(join(dataDir, 'log'), {
      maxBytes: opts.logLimitBytes ?? DEFAULT_LOG_LIMIT,
      segmentBytes: opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
      logger,
    });
    let settled: SettledWatermarks | undefined;
    try {
      settled = await SettledWatermarks.open(join(dataDir, 'dirty', 'settled-watermarks'));
      if (prior && !prior.clean) await recoverFromCrash(prior, settled, log, captured, logger);
      // From here on the watermarks below are the truth (a value from before a power loss
      // may name sequence numbers the cut log hands out again).
      await settled.reset(log.nextSeq - 1);
    } catch (e) {
      await settled?.close();
      await log.close();
      for (const s of stores) await s.store.close();
      lock!.release();
      throw e;
    }
    const agent = new Agent(dataDir, state, log, captured, plain, logger, lock!);
    agent.settled = settled;
    agent.watermark = log.nextSeq - 1;
    agent.settledThrough = agent.watermark;
    // Regions dirty from before this start: logged changes up to here must reach the
    // replica before a resync compares blocks.
    if (captured.some((d) => d.bitmap.dirtyBytes > 0)) agent.lastUnloggedSeq = log.nextSeq - 1;
    // A clean stop checkpointed, and crash recovery fsyncs what it redid: the disks hold everything logged.
    agent.durableThrough = agent.watermark;
    state.clean = false;
    state.bootId = currentBootId();
    state.appliedThrough = agent.watermark;
    state.durableThrough = agent.durableThrough;
    saveState(dataDir, state);
    agent.persistedWatermark = agent.watermark;
    // The watermark bounds how much of the log a process crash must redo; persist it lazily.
    agent.persistTimer = setInterval(() => agent.persistWatermark(), 1000);
    agent.persistTimer.unref();
    agent.checkpointTimer = setInterval(
      () => void agent.checkpoint().catch(() => undefined),
      opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS,
    );
    agent.checkpointTimer.unref();
    logger.info(
      { machineId: state.machineId, disks: captured.map((d) => d.record.name), nextSeq: log.nextSeq },
      'agent started',
    );
    return agent;
  }

  /** FLUSH and FUA are acknowledged only once the gate agrees (acknowledgement modes). */
  setAckGate(gate: AckGate): void {
    this.ackGate = gate;
  }

  /** A full log blocks writers, or pulls ahead into the dirty bitmap (the default). */
  setCongestion(c: Congestion): void {
    this.congestion = c;
  }

  /** Waits until seq may be acknowledged under the acknowledgement mode (durable locally already). */
  async acknowledged(seq: number | undefined): Promise<void> {
    const gate = this.ackGate;
    if (!gate?.remoteMode) return;
    if (seq === undefined) {
      gate.degrade(
        'a flush could not be logged (change log full or failing): acknowledged on local disks only',
      );
      return;
    }
    await gate.wait(seq);
  }

  get machineId(): string {
    return this.state.machineId;
  }

  /** Every disk this agent has registered (captured now or before), with its stable ids. */
  get diskRecords(): readonly DiskRecord[] {
    return this.state.disks;
  }

  /** Every change with seq <= this has been written to both the log and its disk. */
  get appliedThrough(): number {
    return this.watermark;
  }

  exports(): NbdExport[] {
    return [
      ...this.captured.map((d) => new CaptureExport(this, d)),
      ...this.plain.map((p) => new FileExport(p.name, p.store, true)),
    ];
  }

  /** Every change with seq <= this is durable on its disk, not only in the log. */
  get diskDurableThrough(): number {
    return this.durableThrough;
  }

  /** Queues a write of agent.json with the current values. */
  private persistState(durable: boolean): Promise<void> {
    this.state.appliedThrough = this.watermark;
    this.state.durableThrough = this.durableThrough;
    const snapshot = structuredClone(this.state);
    const write = this.stateWrites.then(() => saveStateAsync(this.dataDir, snapshot, durable));
    this.stateWrites = write.catch((e) => {
      this.logger.error({ err: e }, 'cannot write agent.json');
    });
    return write;
  }

  /**
   * Not fsynced: only a process crash reads it back (same boot, the page cache
   * survives); an older value would only make the redo longer, never wrong.
   */
  private persistWatermark(): void {
    if (this.watermark === this.persistedWatermark || this.closed || this.closing) return;
    this.persistedWatermark = this.watermark;
    void this.persistState(false).catch(() => undefined);
  }

  /**
   * Makes the disks durable up to the current watermark and records it, so that a
   * power loss redoes the log only from there and the log may be trimmed up to it.
   * FLUSH does not need this (the log is the write-ahead record); it runs on a timer.
   */
  checkpoint(): Promise<void> {
    if (this.checkpointing) return this.checkpointing;
    const upTo = this.watermark;
    if (upTo <= this.durableThrough || this.closed) return Promise.resolve();
    this.checkpointing = (async () => {
      try {
        await Promise.all(this.captured.map((d) => d.store.sync()));
        this.durableThrough = Math.max(this.durableThrough, upTo);
        await this.persistState(true);
        if (this.trimWanted > this.log.trimmedThrough) {
          await this.log.trimThrough(Math.min(this.trimWanted, this.durableThrough));
        }
      } catch (e) {
        this.logger.error({ err: e }, 'checkpoint failed: the disks are not durable, the log is kept');
        throw e;
      } finally {
        this.checkpointing = undefined;
      }
    })();
    return this.checkpointing;
  }

  /**
   * Forgets log records up to seq (the shipper calls this once they are safe at the
   * process server); never past the last checkpoint, whose records a power loss needs.
   */
  async trimLog(seq: number): Promise<number> {
    this.trimWanted = Math.max(this.trimWanted, seq);
    const upTo = Math.min(seq, this.durableThrough);
    await this.log.trimThrough(upTo);
    return upTo;
  }

  private complete(seq: number): void {
    if (seq !== this.watermark + 1) {
      this.completedAbove.add(seq);
      return;
    }
    this.watermark = seq;
    while (this.completedAbove.delete(this.watermark + 1)) this.watermark++;
    const advanced = this.watermarkAdvanced;
    this.watermarkAdvanced = deferred();
    advanced.resolve();
  }

  /**
   * Before a change the log cannot take touches the disk: every change logged before it
   * is on its disk, and the settled-watermarks file says so. A crash's redo then starts
   * after all of them and never lays an older logged change over this newer unlogged one;
   * so the redo needs no exception for dirty ranges, and a logged change newer than a
   * dirty range is redone like any other (skipping it lost an acknowledged write).
   * Waits only for changes already logged, which hold their range locks: no deadlock.
   * While the log stays full nothing new is logged, and this returns at once.
   */
  private async settleLoggedBeforeUnlogged(): Promise<void> {
    const target = this.log.nextSeq - 1;
    if (this.settledThrough < target) {
      while (this.watermark < target) await this.watermarkAdvanced.promise;
      if (this.settledThrough < target) {
        const seq = this.watermark;
        this.settledThrough = seq;
        const write = this.settled.setApplied(seq);
        this.settleWrite = write.catch((e) => {
          this.logger.error({ err: e }, 'cannot record the settled watermark');
          if (this.settledThrough === seq) this.settledThrough = 0;
        });
        await write;
        return;
      }
    }
    // Another change's write of the same watermark may still be on its way.
    await this.settleWrite;
  }

  /**
   * Logs a change, or when the log cannot take it marks the range in the dirty
   * bitmap (resync required). Returns the sequence number when logged.
   */
  private async logChange(
    disk: CapturedDisk,
    type: NewRecordType,
    offset: number,
    length: number,
    flags: number,
    payload: Buffer,
    onLogged?: () => void,
  ): Promise<number | undefined> {
    const hasRoom = () => this.log.hasRoom(payload.length);
    let room = hasRoom();
    if (room) this.congestion?.noteRoom();
    else if (this.congestion) room = await this.congestion.waitForRoom(hasRoom);
    if (room) {
      const { seq, written } = this.appendChange(disk, type, offset, length, flags, payload);
      let logged = true;
      try {
        await written;
      } catch {
        logged = false;
        this.complete(seq); // nothing of it is in the log; the bitmap below covers the range
      }
      if (logged) {
        // Not before: a reply for a record still queued in memory dies with the process.
        onLogged?.();
        return seq;
      }
    }
    this.unloggedSinceSync = true;
    this.congestion?.notePulledAhead();
    if (!this.logFullWarned) {
      this.logFullWarned = true;
      this.logger.warn(
        { logBytes: this.log.bytes, limit: this.log.maxBytes, disk: disk.record.name },
        'change log full or failing: further changes are marked resync required in the dirty bitmap',
      );
    }
    this.noteUnlogged();
    await this.settleLoggedBeforeUnlogged();
    await disk.bitmap.mark(offset, length);
    return undefined;
  }

  /** Appends a change record of one disk, stamped now. */
  private appendChange(
    disk: CapturedDisk,
    type: NewRecordType,
    offset: number,
    length: number,
    flags: number,
    payload: Buffer,
  ): { seq: number; written: Promise<void> } {
    return this.log.append({ type, flags, disk: disk.record.id, time: Date.now(), offset, length, payload });
  }

  /** A change reached (or may reach) a disk without a log record. */
  private noteUnlogged(): void {
    this.unloggedCount++;
    this.lastUnloggedSeq = Math.max(this.lastUnloggedSeq, this.log.nextSeq - 1);
  }

  /** Applies one change: log first, then the disk, overlapping changes strictly in log order. */
  change(
    disk: CapturedDisk,
    type: NewRecordType,
    offset: number,
    length: number,
    opts: ChangeOptions,
  ): Promise<void> {
    if (this.closing) return Promise.reject(new Error('the agent is stopping'));
    // Held by a group barrier: not logged, not completed until the hold ends (then checked again).
    if (this.barrier.held)
      return this.barrier.wait().then(() => this.change(disk, type, offset, length, opts));
    let acked = false;
    const ack = opts.ack;
    const noteAck = () => {
      acked = true;
      ack?.();
    };
    const p = this.applyChange(disk, type, offset, length, ack ? { ...opts, ack: noteAck } : opts);
    this.inflight.add(p);
    const forget = () => this.inflight.delete(p);
    p.then(forget, forget);
    return ack ? this.afterAck(p, () => acked) : p;
  }

  /**
   * A change that may be acknowledged before it ends: the next FLUSH waits for it, and a
   * failure once acked() is kept for that FLUSH instead of reaching the caller.
   */
  private afterAck(p: Promise<void>, acked: () => boolean): Promise<void> {
    const settled = p.catch((e: Error) => {
      if (!acked()) throw e;
      this.lateWriteError ??= e;
    });
    const tracked: Promise<void> = settled
      .catch(() => undefined)
      .finally(() => this.lateWrites.delete(tracked));
    this.lateWrites.add(tracked);
    return settled;
  }

  /** A change may have reached the disk without its log record: its range is resync required. */
  private diverged(disk: CapturedDisk, offset: number, length: number): Promise<void> {
    this.noteUnlogged();
    return disk.bitmap.mark(offset, length).catch(() => undefined);
  }

  /**
   * The fast path of a small WRITE without FUA. When nothing can make it wait (no
   * overlapping change in flight, room in the log, nothing queued in the log, no
   * barrier), logs the change, calls ack() (the NBD reply), then writes the disk, all on
   * this thread in applyChange's order before anything else runs: a READ or FLUSH that
   * follows the reply sees the write. The record is written before the reply so that a
   * crash of this process never loses an acknowledged write (the restart redoes it); the
   * disk write comes after, while the client already works on its next request.
   * Returns false, having done nothing, when it cannot (including when the log's write
   * fails: the usual path then sends the range to the bitmap and writes the disk).
   * A disk write that fails after ack() marks the range resync required and the next
   * FLUSH reports the error (takeLateWriteError).
   */
  writeNow(disk: CapturedDisk, offset: number, data: Buffer, ack: () => void): boolean {
    if (this.closing || this.barrier.held || !disk.locks.isFree(offset, data.length)) return false;
    // canAppendNow also bounds the size, so the disk write below is a small one too.
    if (!this.log.hasRoom(data.length) || !this.log.canAppendNow(data.length)) return false;
    const seq = this.log.appendNow({
      type: RecordType.Write,
      flags: 0,
      disk: disk.record.id,
      time: Date.now(),
      offset,
      length: data.length,
      payload: data,
    });
    if (seq === undefined) return false;
    ack();
    this.congestion?.noteRoom();
    try {
      disk.store.writeNow(data, offset);
    } catch (e) {
      this.lateWriteError ??= e as Error;
      void this.diverged(disk, offset, data.length);
    } finally {
      this.complete(seq);
    }
    return true;
  }

  /** The first error of a write that failed after its reply, once (a FLUSH reports it). */
  takeLateWriteError(): Error | undefined {
    const e = this.lateWriteError;
    this.lateWriteError = undefined;
    return e;
  }

  private async applyChange(
    disk: CapturedDisk,
    type: NewRecordType,
    offset: number,
    length: number,
    opts: ChangeOptions,
  ): Promise<void> {
    const release = await disk.locks.acquire(offset, length);
    let seq: number | undefined;
    try {
      const payload = opts.data ?? Buffer.alloc(0);
      seq = await this.logChange(disk, type, offset, length, opts.noHole ? 1 : 0, payload, opts.ack);
      if (type === RecordType.Write) await disk.store.write(payload, offset);
      else if (type === RecordType.Zero) await disk.store.zero(offset, length, opts.noHole ?? false);
      else await disk.store.trim(offset, length);
      // Set on completion, so that any flush requested after this change is acknowledged sees it.
      if (seq === undefined) this.unloggedSinceSync = true;
    } catch (e) {
      // The disk may now differ from the log for this range: never let that go unnoticed.
      await this.diverged(disk, offset, length);
      throw e;
    } finally {
      if (seq !== undefined) this.complete(seq);
      release();
    }
    if (opts.fua) {
      await this.syncer.request();
      if (seq !== undefined) await this.acknowledged(seq);
    }
  }

  /** Appends a marker (crash-consistent flush point or named bookmark), then makes everything durable. */
  private async marker(
    type: RecordType.Flush | RecordType.Bookmark,
    tag?: string,
    opts: MarkerOptions = {},
  ): Promise<number | undefined> {
    let seq: number | undefined;
    const payload = markerPayload(this.watermark, tag);
    if (this.log.hasRoom(payload.length, true)) {
      const appended = this.log.append({
        type,
        flags: 0,
        disk: 0,
        time: Date.now(),
        offset: 0,
        length: 0,
        payload,
      });
      try {
        await appended.written;
        seq = appended.seq;
      } catch {
        // the log failed; the flush itself must still make the disks durable
      }
      this.complete(appended.seq);
    }
    await this.syncer.request();
    if (!opts.localOnly) await this.acknowledged(seq);
    return seq;
  }

  /** The captured disks as the replication stream describes them. */
  diskInfo(): { id: number; size: number; name: string }[] {
    return this.captured.map((d) => ({ id: d.record.id, size: d.record.size, name: d.record.name }));
  }

  /** Makes every log record written so far durable (what the shipper may send). */
  syncLog(): Promise<void> {
    return this.syncer.request();
  }

  /**
   * Disks never replicated hold data no log has: their whole range becomes resync required,
   * so the resync copies them (holes and zero blocks cost nothing). Called when replication
   * starts; a disk only captured locally is not marked.
   */
  async startInitialCopy(): Promise<string[]> {
    const fresh = this.captured.filter((d) => d.record.needsInitialCopy);
    if (fresh.length === 0) return [];
    this.noteUnlogged();
    for (const d of fresh) {
      await d.bitmap.markAll();
      await d.bitmap.sync();
      d.record.needsInitialCopy = false;
    }
    await this.persistState(true);
    return fresh.map((d) => d.record.name);
  }

  /**
   * An operator's request: the disk (or every captured disk) is compared with its replica
   * block by block, e.g. after it was written while the agent was not running.
   */
  async requestResync(name?: string): Promise<string[]> {
    const disks = name === undefined ? this.captured : this.captured.filter((d) => d.record.name === name);
    if (disks.length === 0) {
      throw new Error(
        `no captured disk named '${name}' (disks: ${this.captured.map((d) => d.record.name).join(', ')})`,
      );
    }
    this.noteUnlogged();
    for (const d of disks) {
      await d.bitmap.markAll();
      await d.bitmap.sync();
    }
    this.resyncWake?.();
    return disks.map((d) => d.record.name);
  }

  /** Every captured disk entirely resync required (changes were lost before the replica got them). */
  async markAllResyncRequired(): Promise<void> {
    this.noteUnlogged();
    for (const d of this.captured) {
      await d.bitmap.markAll();
      await d.bitmap.sync();
    }
  }

  /** NBD FLUSH: every change acknowledged so far, on any disk or connection, becomes durable. */
  async flush(opts?: MarkerOptions): Promise<number | undefined> {
    // Writes already acknowledged that fell back to the slow path belong before this point.
    if (this.lateWrites.size) await Promise.all(this.lateWrites);
    return this.marker(RecordType.Flush, undefined, opts);
  }

  /** Inserts a named bookmark (an application-consistent point when taken while frozen). */
  bookmark(tag: string, opts?: MarkerOptions): Promise<number | undefined> {
    if (Buffer.byteLength(tag) > 4096) throw new Error('bookmark tag longer than 4096 bytes');
    if (isSystemTag(tag)) throw new Error(`bookmark tags starting with '${SYSTEM_TAG_PREFIX}' are reserved`);
    return this.marker(RecordType.Bookmark, tag, opts);
  }

  /** A marker with a reserved tag (resync start and end), made durable in the local log. */
  systemMarker(tag: string): Promise<number | undefined> {
    if (!isSystemTag(tag)) throw new Error(`'${tag}' is not a reserved tag`);
    // No client waits for it: durable in the local log is enough, whatever the ack mode.
    return this.marker(RecordType.Bookmark, tag, { localOnly: true });
  }

  /**
   * Logs a block a resync copies (its data is already on the disk, so only the log gets
   * it). The caller holds the range lock. False when the log has no room.
   */
  async logResyncChange(
    disk: CapturedDisk,
    kind: 'write' | 'zero',
    offset: number,
    length: number,
    data?: Buffer,
  ): Promise<boolean> {
    const payload = kind === 'write' ? data! : Buffer.alloc(0);
    if (this.closing || !this.log.hasRoom(payload.length)) return false;
    const type = kind === 'write' ? RecordType.Write : RecordType.Zero;
    const { seq, written } = this.appendChange(disk, type, offset, length, 0, payload);
    try {
      await written;
      return true;
    } catch {
      return false;
    } finally {
      this.complete(seq);
    }
  }

  /**
   * What FLUSH and FUA wait for. The log is a write-ahead log: every acknowledged
   * change is in it (written before the disk), so making the log durable makes the
   * change durable; the disks follow at the next checkpoint, and a power loss before
   * that is repaired by redoing the log (see recoverFromCrash). Changes that have no
   * log record (log full or failing) can only be made durable on the disk itself.
   */
  private async makeDurable(): Promise<void> {
    let logFailed = false;
    const unlogged = this.unloggedSinceSync;
    this.unloggedSinceSync = false;
    // Every change up to here is on its disk (page cache): the disks' sync makes it durable.
    const appliedBeforeSync = this.watermark;
    try {
      await Promise.all([
        this.log.sync().catch((e) => {
          logFailed = true;
          this.logger.error({ err: e }, 'change log sync failed: every disk is marked resync required');
        }),
        ...(unlogged ? this.captured.map((d) => d.store.sync()) : []),
      ]);
      if (logFailed) {
        // Acknowledged changes may be missing from the log now: no range can be trusted,
        // and only the disks themselves can hold them.
        this.noteUnlogged();
        for (const d of this.captured) await d.bitmap.markAll();
        await Promise.all(this.captured.map((d) => d.store.sync()));
      }
      await Promise.all(this.captured.map((d) => d.bitmap.sync()));
      if (unlogged && appliedBeforeSync > this.durableThrough) {
        // The disks were synced for the unlogged changes: record it, so that after a power
        // loss the redo starts after every logged change older than them and never lays
        // one over them (settleLoggedBeforeUnlogged). The next checkpoint puts it in agent.json.
        await this.settled.setDurable(appliedBeforeSync);
        this.durableThrough = Math.max(this.durableThrough, appliedBeforeSync);
      }
    } catch (e) {
      if (unlogged) this.unloggedSinceSync = true;
      throw e;
    }
  }

  /**
   * Holds new writes (a replication group's barrier) and returns once every write already
   * under way is in the log: a bookmark taken now is a point no held write is before.
   * The hold ends by releaseWrites() or by itself after timeoutMs.
   */
  async holdWrites(timeoutMs?: number): Promise<BarrierStatus & { lastSeq: number }> {
    if (this.closing) throw new Error('the agent is stopping');
    this.barrier.hold(timeoutMs);
    await Promise.allSettled([...this.inflight]);
    return { ...this.barrier.status(), lastSeq: this.log.nextSeq - 1 };
  }

  /** Ends a hold: the held writes go on. False when none was held. */
  releaseWrites(): boolean {
    return this.barrier.release();
  }

  barrierStatus(): BarrierStatus {
    return this.barrier.status();
  }

  /** A live summary: what `rebound agent log` prints for a running agent. */
  status() {
    return {
      machineId: this.state.machineId,
      nextSeq: this.log.nextSeq,
      /** The newest seq handed out (bookmarks and changes): what the replica must apply to be current. */
      lastSeq: this.log.nextSeq - 1,
      barrier: this.barrier.status(),
      appliedThrough: this.watermark,
      trimmedThrough: this.log.trimmedThrough,
      logBytes: this.log.bytes,
      logLimitBytes: this.log.maxBytes,
      ack: this.ackGate?.status(),
      congestion: this.congestion?.status(),
      disks: this.captured.map((d) => ({
        name: d.record.name,
        id: d.record.id,
        path: d.record.path,
        size: d.record.size,
        resyncRequired: d.bitmap.regions(),
      })),
      replication: this.replicationStatus?.(),
    };
  }

  /** Clean stop: everything durable, the state marked clean. */
  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    // Held writes are let go (and refused: the agent is stopping).
    this.barrier.release();
    // Every change already in its log-then-disk path finishes before the stop is called clean.
    // The stop makes everything durable locally; nobody waits for a remote acknowledgement now.
    this.ackGate?.close();
    await Promise.allSettled([...this.inflight]);
    await this.flush({ localOnly: true });
    clearInterval(this.persistTimer);
    clearInterval(this.checkpointTimer);
    // A checkpoint already running may cover less than the final watermark: repeat.
    while (this.durableThrough < this.watermark) await this.checkpoint();
    await this.stateWrites;
    this.closed = true;
    await this.log.close();
    await this.settled.close();
    for (const d of this.captured) {
      await d.bitmap.close();
      await d.store.close();
    }
    for (const p of this.plain) await p.store.close();
    this.state.clean = true;
    this.state.appliedThrough = this.watermark;
    this.state.durableThrough = this.durableThrough;
    saveState(this.dataDir, this.state);
    this.lock.release();
    this.logger.info({ appliedThrough: this.watermark }, 'agent stopped cleanly');
  }
}

/**
 * After an unclean stop. Same boot (the process died, the page cache survived):
 * redo the log tail onto the disks from the persisted watermark, since the log is
 * written before the disk. Different boot (power loss or reboot): the disks may have
 * lost writes made since the last checkpoint, so the log (durable through the last
 * FLUSH) is redone from that checkpoint; and writes that were never flushed may have
 * reached a disk without their log record, so no one can prove disk and log agree:
 * every disk is then marked resync required (a block-hash resync moves only what differs).
 */
async function recoverFromCrash(
  prior: AgentState,
  settled: SettledWatermarks,
  log: ChangeLog,
  disks: CapturedDisk[],
  logger: Logger,
): Promise<void> {
  const names = new Map(prior.disks.map((d) => [d.id, d.name]));
  if (prior.bootId !== currentBootId()) {
    const from = Math.max(prior.durableThrough ?? 0, settled.durable, log.trimmedThrough) + 1;
    const n = await redoLogTail(log, from, disks, names);
    for (const d of disks) await d.bitmap.markAll();
    for (const d of disks) await d.bitmap.sync();
    logger.warn(
      { from, records: n },
      'unclean stop across a reboot: redid the change log from the last checkpoint; every disk is marked resync required',
    );
    return;
  }
  const from = Math.max(prior.appliedThrough, settled.applied, log.trimmedThrough) + 1;
  const n = await redoLogTail(log, from, disks, names);
  logger.warn(
    { from, records: n },
    'agent restarted after a crash: redid the change-log tail onto the disks',
  );
}
