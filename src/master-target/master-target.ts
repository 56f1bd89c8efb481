// The master target's network service: takes each machine's stream from its process
// server over mutual TLS, applies it to the machine's replica (undo journal first, see
// replica.ts) in batches, and acknowledges what is applied and durable.

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/ca.js';
import { BlockStore } from '../storage/block-store.js';
import { createSparseFile } from '../storage/sparse-file.js';
import { HealthChecks, roundRpo } from '../util/health.js';
import { readJsonFile, writeJsonFile } from '../util/json-file.js';
import {
  type DiskInfo,
  decodeChange,
  decodeDisks,
  decodeHeartbeat,
  decodeHello,
  decodeMarker,
  encodeAck,
  encodeHello,
  type Frame,
  FrameError,
  FrameType,
  isValidMachineId,
  WireErrorCode,
} from '../wire/frame.js';
import { type FrameConnection, type FrameServer, listenFrames } from '../wire/tls-endpoint.js';
import {
  type FailoverDisk,
  type FailoverMarker,
  hasMarker,
  markerPath,
  readMarker,
  writeMarker,
} from './failover-marker.js';
import { serveHashRequests } from './hash-service.js';
import { moveDiskFile, movedPath } from './move-disks.js';
import { type BatchResult, Replica, type ReplicaItem, STATE_FILE } from './replica.js';
import { ReplicaFreshness } from './replica-freshness.js';
import {
  DEFAULT_STATUS_RULES,
  type MachineSnapshot,
  type MachineStatus,
  machineStatus,
  type StatusRules,
} from './replication-status.js';
import { DEFAULT_RETENTION_HOURS, RetentionPruner } from './retention.js';
import type { HealthProblem } from './retention-space.js';

export interface MasterTargetOptions {
  /** Replica disks and their state, one directory per machine. */
  dataDir: string;
  /** Undo journals (the retention volume), one directory per machine. */
  retentionDir: string;
  host: string;
  port: number;
  material: TlsMaterial;
  /** This master target's component name (its certificate's). */
  name: string;
  logger: Logger;
  /** When a machine's RPO or stream counts as a health problem (defaults: 900 s, 30 s). */
  statusRules?: Partial<StatusRules>;
  /** Recovery points are kept this long (default 24); older journal segments are pruned. */
  retentionHours?: number;
}

/** Items applied in one batch at most (one journal sync and one replica sync per batch). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

/** A replica disk as disks.json keeps it: adopted disks name their existing file. */
export interface StoredDisk extends DiskInfo {
  /** The image file or device (default: disk-<id>.img in the machine's directory). */
  path?: string;
}

/** What a failover hands over: the point, and the disks that are now the recovered machine's. */
export interface FailoverResult {
  point: number;
  /** Source time of the point (ms since the epoch; 0 when unknown). */
  pointTime: number;
  disks: FailoverDisk[];
  /** Replica bytes the rollback wrote (the distinct bytes changed after the point). */
  bytesWritten: number;
  /** Disk bytes covered by the journal's before-images after the point. */
  journalBytesAfter: number;
}

interface Machine {
  id: string;
  replica: Replica;
  disks: StoredDisk[];
  conn: FrameConnection | undefined;
  freshness: ReplicaFreshness;
  connectedSince: number | undefined;
  disconnectedSince: number | undefined;
  lastApplyError: string | undefined;
}

export class MasterTarget {
  private readonly machines = new Map<string, Machine>();
  private server: FrameServer | undefined;
  /** Checks other parts add (retention volume, resync...): their problems join each machine's health. */
  readonly health = new HealthChecks();
  private pruner: RetentionPruner | undefined;
  /** Machines failed over (their replica is the recovered machine's now), until released. */
  private readonly failedOver = new Map<string, FailoverMarker>();
  /** Failovers in progress (a second call waits for the same one). */
  private readonly failingOver = new Map<string, Promise<FailoverResult>>();

  private constructor(private readonly opts: MasterTargetOptions) {}

  static async start(opts: MasterTargetOptions): Promise<MasterTarget> {
    mkdirSync(join(opts.dataDir, 'machines'), { recursive: true });
    mkdirSync(opts.retentionDir, { recursive: true });
    const mt = new MasterTarget(opts);
    // Machines replicated before a restart: their replicas and points are there at once.
    // A failover a crash interrupted is finished first (before any stream is taken).
    for (const id of readdirSync(join(opts.dataDir, 'machines'))) {
      if (!isValidMachineId(id)) continue;
      if (hasMarker(mt.machineDir(id))) {
        await mt.resumeFailover(id);
        continue;
      }
      const disks = await readJsonFile<StoredDisk[]>(join(mt.machineDir(id), 'disks.json'));
      if (disks) await mt.machine(id, disks);
    }
    mt.server = await listenFrames({
      host: opts.host,
      port: opts.port,
      material: opts.material,
      logger: opts.logger,
      acceptRoles: ['process-server'],
      onConnection: (conn) => mt.serve(conn),
    });
    mt.pruner = new RetentionPruner(
      () => [...mt.machines].map(([id, m]) => [id, m.replica] as [string, Replica]),
      { windowMs: mt.retentionWindowMs, logger: opts.logger },
    );
    mt.pruner.start();
    return mt;
  }

  /** How long recovery points are kept. */
  get retentionWindowMs(): number {
    return (this.opts.retentionHours ?? DEFAULT_RETENTION_HOURS) * 3_600_000;
  }

  /** The retention pruner (its timer runs while the master target does). */
  get retention(): RetentionPruner {
    return this.pruner!;
  }

  /**
   * Named problems of a machine's replica, for its health: retention-volume-full,
   * undo-journal-corrupt (see Replica.healthProblems).
   */
  replicaHealthProblems(machineId: string): HealthProblem[] {
    return this.machines.get(machineId)?.replica.healthProblems() ?? [];
  }

  get port(): number {
    return this.server!.address.port;
  }

  /** The replica of a machine that has streamed here (views, recovery points). */
  replica(machineId: string): Replica | undefined {
    return this.machines.get(machineId)?.replica;
  }

  /** The machine's disks as its stream described them. */
  disks(machineId: string): DiskInfo[] | undefined {
    return this.machines.get(machineId)?.disks;
  }

  /** The machines replicated here, by id. */
  machineIds(): string[] {
    return [...this.machines.keys()];
  }

  /** What is known about one machine now, before any judgement. */
  snapshot(machineId: string): MachineSnapshot | undefined {
    const m = this.machines.get(machineId);
    if (!m) return undefined;
    const r = m.replica;
    const oldest = r.oldestPoint;
    // A point inside a resync is not consistent: not offered.
    const live = <P extends { seq: number }>(p: P | undefined) =>
      p && p.seq >= oldest && !r.pointProblem(p.seq) ? p : undefined;
    return {
      machineId,
      connected: m.conn !== undefined,
      connectedSince: m.connectedSince,
      disconnectedSince: m.disconnectedSince,
      appliedThrough: r.appliedThrough,
      appliedTime: r.appliedTime,
      currentAsOf: m.freshness.currentAsOf(r.appliedTime),
      lastHeartbeatAt: m.freshness.lastHeartbeatAt,
      latestCrash: live(m.freshness.latestCrash),
      latestApp: live(m.freshness.latestApp),
      oldestPoint: oldest,
      journalBytes: r.journal.bytes,
      lastApplyError: m.lastApplyError,
      resyncOpenSince: r.resyncOpenSince,
      protected: r.everConsistent,
    };
  }

  /** Replication status of every machine (or one): RPO, applied seq, latest points, health problems. */
  status(machineId?: string, now = Date.now()): MachineStatus[] {
    const rules = { ...DEFAULT_STATUS_RULES, ...this.opts.statusRules };
    const ids = machineId === undefined ? this.machineIds() : [machineId];
    const out: MachineStatus[] = [];
    for (const id of ids) {
      const s = this.snapshot(id);
      if (s) {
        const extra = [...this.replicaHealthProblems(id), ...this.health.run(id)];
        out.push(machineStatus(s, now, rules, extra));
      }
    }
    return out;
  }

  /** The replica image of one disk (an adopted disk's own file). */
  diskPath(machineId: string, diskId: number): string {
    const stored = this.machines.get(machineId)?.disks.find((d) => d.id === diskId);
    return stored?.path ?? this.defaultDiskPath(machineId, diskId);
  }

  private defaultDiskPath(machineId: string, diskId: number): string {
    return join(this.machineDir(machineId), `disk-${diskId}.img`);
  }

  private machineDir(id: string): string {
    return join(this.opts.dataDir, 'machines', id);
  }

  /** Opens (or creates, from the stream's disk list) a machine's replica. */
  private async machine(id: string, disks: StoredDisk[]): Promise<Machine> {
    const known = this.machines.get(id);
    const dir = this.machineDir(id);
    const fo = this.failedOver.get(id);
    if (fo || this.failingOver.has(id)) throw new Error(this.failedOverReason(id, fo?.point));
    const stored = known?.disks ?? (await readJsonFile<StoredDisk[]>(join(dir, 'disks.json')));
    if (stored) {
      for (const d of disks) {
        const s = stored.find((x) => x.id === d.id);
        if (!s)
          throw new FrameError(`disk ${d.id} ('${d.name}') is new for machine ${id}: not supported yet`);
        if (s.size !== d.size) {
          throw new FrameError(
            `disk ${d.id} ('${d.name}') is ${d.size} bytes in the stream but ${s.size} here`,
          );
        }
      }
    }
    if (known) return known;
    mkdirSync(dir, { recursive: true });
    const list = stored ?? disks;
    if (!stored) {
      // The disks of an earlier failover of this machine id, released and left here, are
      // the recovered machine's: never written over by a new replica.
      for (const d of list) {
        const path = this.defaultDiskPath(id, d.id);
        if (existsSync(path))
          throw new Error(
            `machine ${id}: ${path} already exists (a disk of an earlier failover?): adopt it or move it away`,
          );
      }
      // New machine: sparse replica images at the disks' sizes, then the list, durably.
      for (const d of list) await createSparseFile(this.diskPath(id, d.id), d.size);
      await writeJsonFile(join(dir, 'disks.json'), list, { durable: true });
    }
    const replica = await Replica.open({
      stateDir: dir,
      retentionDir: join(this.opts.retentionDir, id),
      disks: list.map((d) => ({ id: d.id, path: d.path ?? this.defaultDiskPath(id, d.id) })),
      logger: this.opts.logger,
      newReplicaNeedsResync: true,
    });
    const m: Machine = {
      id,
      replica,
      disks: list,
      conn: undefined,
      freshness: new ReplicaFreshness(replica.recoveryPoints()),
      connectedSince: undefined,
      disconnectedSince: Date.now(),
      lastApplyError: undefined,
    };
    this.machines.set(id, m);
    return m;
  }

  private async serve(conn: FrameConnection): Promise<void> {
    const frames = conn[Symbol.asyncIterator]();
    const first = await frames.next();
    if (first.done) return;
    let machineId: string;
    try {
      if (first.value.type !== FrameType.Hello) {
        throw new FrameError(`expected hello first, got frame type ${first.value.type}`);
      }
      const hello = decodeHello(first.value.payload);
      machineId = hello.machineId ?? '';
      if (!isValidMachineId(machineId)) throw new FrameError(`hello machine id '${machineId}' is not valid`);
    } catch (e) {
      conn.close((e as Error).message, WireErrorCode.Protocol);
      return;
    }
    // Failed over: its replica is the recovered machine's disks; the forwarder is told why.
    const fo = this.failedOver.get(machineId);
    if (fo || this.failingOver.has(machineId)) {
      conn.close(this.failedOverReason(machineId, fo?.point), WireErrorCode.Retired);
      return;
    }
    const existing = this.machines.get(machineId);
    // Paused for lack of retention space: no need to take the backlog again before it fits.
    const full = await existing?.replica.retentionStillFull();
    if (full) {
      conn.close(full.message, WireErrorCode.Internal);
      return;
    }
    const applied = existing?.replica.appliedThrough ?? (await this.storedAppliedThrough(machineId));
    await conn.send(
      FrameType.Hello,
      encodeHello({
        resumeFrom: applied > 0 ? applied + 1 : 0,
        role: 'master-target',
        name: this.opts.name,
        machineId,
      }),
    );
    const second = await frames.next();
    if (second.done) return;
    if (second.value.type === FrameType.HashRequest) {
      const log = this.opts.logger.child({ machineId, conn: conn.id });
      await serveHashRequests(conn, second.value, frames, () => this.machines.get(machineId)?.replica, log);
      return;
    }
    let m: Machine;
    try {
      if (second.value.type !== FrameType.Disks) {
        throw new FrameError(`expected the machine's disks after hello, got frame type ${second.value.type}`);
      }
      m = await this.machine(machineId, decodeDisks(second.value.payload));
    } catch (e) {
      conn.close(
        (e as Error).message,
        e instanceof FrameError ? WireErrorCode.Protocol : WireErrorCode.Internal,
      );
      return;
    }
    if (m.conn && m.conn !== conn) m.conn.close('replaced by a newer connection for the same machine');
    m.conn = conn;
    m.connectedSince = Date.now();
    m.disconnectedSince = undefined;
    this.opts.logger.info({ machineId, resumeFrom: applied + 1 }, 'master target: stream started');
    try {
      await this.receive(conn, frames, m);
    } finally {
      if (m.conn === conn) {
        m.conn = undefined;
        m.connectedSince = undefined;
        m.disconnectedSince = Date.now();
        const [st] = this.status(machineId);
        this.opts.logger.info(
          {
            machineId,
            seq: st?.appliedThrough,
            rpoSeconds: roundRpo(st?.rpoSeconds),
            reason: conn.closeReason,
          },
          'master target: stream ended',
        );
      }
    }
  }

  private async storedAppliedThrough(machineId: string): Promise<number> {
    const s = await readJsonFile<{ appliedThrough: number }>(
      join(this.machineDir(machineId), 'replica-state.json'),
    );
    return s?.appliedThrough ?? 0;
  }

  /** Applies frames in batches: everything that arrived together, up to MAX_BATCH_BYTES. */
  private async receive(conn: FrameConnection, frames: AsyncIterator<Frame>, m: Machine): Promise<void> {
    let items: ReplicaItem[] = [];
    let bytes = 0;
    let next = frames.next();
    const apply = async () => {
      const batch = items;
      items = [];
      bytes = 0;
      let r: BatchResult;
      try {
        r = await m.replica.applyBatch(batch);
      } catch (e) {
        m.lastApplyError = (e as Error).message;
        throw e;
      }
      m.lastApplyError = undefined;
      m.freshness.applied(r.appliedThrough, batch);
      await conn.send(FrameType.Ack, encodeAck({ seq: r.appliedThrough }));
    };
    for (;;) {
      const idle = new Promise<'idle'>((resolve) => setImmediate(() => resolve('idle')));
      const got = await Promise.race([next, idle]);
      if (got === 'idle') {
        if (items.length) await this.guard(conn, apply);
        if (conn.closeReason !== undefined) return;
        const n = await next;
        if (n.done) return;
        next = frames.next();
        if (!(await this.guard(conn, async () => this.take(n.value, items, m)))) return;
        bytes += n.value.payload.length;
        continue;
      }
      if (got.done) {
        if (items.length) await this.guard(conn, apply);
        return;
      }
      next = frames.next();
      if (!(await this.guard(conn, async () => this.take(got.value, items, m)))) return;
      bytes += got.value.payload.length;
      if (bytes >= MAX_BATCH_BYTES && !(await this.guard(conn, apply))) return;
    }
  }

  /** Runs fn; a failure closes the connection with its message (nothing of the batch is acknowledged). */
  private async guard(conn: FrameConnection, fn: () => Promise<void>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (e) {
      const protocol = e instanceof FrameError || /^seq|sequence/.test((e as Error).message);
      conn.close((e as Error).message, protocol ? WireErrorCode.Protocol : WireErrorCode.Internal);
      return false;
    }
  }

  private take(f: Frame, items: ReplicaItem[], m: Machine): void {
    if (f.type === FrameType.Change) {
      const c = decodeChange(f.payload);
      items.push({
        type: c.kind,
        seq: c.seq,
        disk: c.disk,
        offset: c.offset,
        length: c.length,
        data: c.kind === 'write' ? c.data : undefined,
        time: c.time,
      });
    } else if (f.type === FrameType.Marker) {
      const mk = decodeMarker(f.payload);
      items.push({
        type: 'marker',
        seq: mk.seq,
        kind: mk.kind === 'flush' ? 'crash' : 'app',
        tag: mk.tag,
        time: mk.time,
      });
    } else if (f.type === FrameType.Heartbeat) {
      // Counts once everything through its seq is applied (items before it may still be in this batch).
      m.freshness.heard(decodeHeartbeat(f.payload), m.replica.appliedThrough);
    } else {
      throw new FrameError(`unexpected frame type ${f.type} in a process server stream`);
    }
  }

  private failedOverReason(machineId: string, point: number | undefined): string {
    return point === undefined
      ? `machine ${machineId} is failing over: its replica is no longer replicated`
      : `machine ${machineId} has failed over at point ${point}: its replica is no longer replicated`;
  }

  /** A machine's failover, once done (until released). */
  failoverResult(machineId: string): FailoverResult | undefined {
    const m = this.failedOver.get(machineId);
    return m && resultOf(m);
  }

  /**
   * Failover of a machine to a recovery point (a seq, or 'latest' = what is applied once
   * its stream is stopped): its stream is refused from now on, the replica disks are rolled
   * back in place (cost: the journal after the point, never the disk size), synced, and
   * handed over; with moveTo they are renamed into that directory. Crash-safe: a durable
   * marker comes before any change, and the next start finishes the work. Calling it again
   * returns the same result. Refused, with nothing changed, while a view of the machine is
   * open or when the point cannot be recovered.
   */
  failover(
    machineId: string,
    point: number | 'latest',
    opts: { moveTo?: string } = {},
  ): Promise<FailoverResult> {
    const done = this.failedOver.get(machineId);
    if (done) return Promise.resolve(resultOf(done));
    const running = this.failingOver.get(machineId);
    if (running) return running;
    const p = this.failoverNow(machineId, point, opts.moveTo).finally(() =>
      this.failingOver.delete(machineId),
    );
    this.failingOver.set(machineId, p);
    return p;
  }

  private async failoverNow(
    machineId: string,
    point: number | 'latest',
    moveTo: string | undefined,
  ): Promise<FailoverResult> {
    const m = this.machines.get(machineId);
    if (!m) throw new Error(`no machine '${machineId}' has a replica on this master target`);
    const r = m.replica;
    if (r.openViews().length > 0)
      throw new Error(`a test failover view of machine ${machineId} is open: clean it up first`);
    if (point !== 'latest') {
      const refusal = await r.pointRefusal(point);
      if (refusal) throw new Error(`cannot fail over machine ${machineId}: ${refusal}`);
    }
    if (moveTo !== undefined) {
      if (!isAbsolute(moveTo)) throw new Error(`moveTo '${moveTo}' is not an absolute path`);
      for (const d of m.disks) {
        const from = this.diskPath(machineId, d.id);
        const to = movedPath(moveTo, from);
        // An adopted replica may be in moveTo already (a second failover of one cycle).
        if (to !== from && existsSync(to))
          throw new Error(`cannot move disk ${d.id} ('${d.name}') to ${to}: the file exists`);
      }
      mkdirSync(moveTo, { recursive: true });
    }
    const reason = this.failedOverReason(machineId, point === 'latest' ? undefined : point);
    m.conn?.close(reason, WireErrorCode.Retired);
    const marker: FailoverMarker = {
      version: 1,
      machineId,
      state: 'rolling-back',
      point: 0,
      pointTime: 0,
      moveTo: moveTo ?? null,
      requestedAt: new Date().toISOString(),
      disks: m.disks.map((d) => ({
        id: d.id,
        name: d.name,
        size: d.size,
        path: this.diskPath(machineId, d.id),
      })),
    };
    const started = Date.now();
    let rolled: Awaited<ReturnType<Replica['rollBackTo']>>;
    try {
      // The marker is durable before the first byte changes: a crash from here on is finished at start.
      rolled = await r.rollBackTo(point, reason, async (p) => {
        marker.point = p;
        marker.pointTime = 0;
        await writeMarker(this.machineDir(machineId), marker);
      });
    } catch (e) {
      if (!hasMarker(this.machineDir(machineId))) {
        // Refused before anything changed (the point, checked again once the stream stopped).
        throw new Error(`cannot fail over machine ${machineId}: ${(e as Error).message}`);
      }
      throw e;
    }
    marker.pointTime = rolled.pointTime;
    marker.bytesWritten = rolled.bytesWritten;
    marker.journalBytesAfter = rolled.journalBytesAfter;
    this.machines.delete(machineId);
    await r.close();
    const result = await this.finishFailover(marker);
    this.opts.logger.info(
      {
        machineId,
        point: result.point,
        bytesWritten: result.bytesWritten,
        journalBytesAfter: result.journalBytesAfter,
        records: rolled.recordsRead,
        ms: Date.now() - started,
      },
      'master target: failed over: replica rolled back in place and handed over',
    );
    return result;
  }

  /** After the rollback: the move (if asked for), then the marker says done. Redone after a crash. */
  private async finishFailover(marker: FailoverMarker): Promise<FailoverResult> {
    const dir = this.machineDir(marker.machineId);
    if (marker.moveTo !== null && marker.state !== 'done') {
      marker.state = 'moving';
      await writeMarker(dir, marker);
      const copied: number[] = [];
      for (const d of marker.disks) {
        const to = movedPath(marker.moveTo, d.path);
        if (await moveDiskFile(d.path, to, this.opts.logger)) copied.push(d.id);
      }
      marker.disks = marker.disks.map((d) => ({ ...d, path: movedPath(marker.moveTo!, d.path) }));
      if (copied.length) marker.copied = copied;
    }
    marker.state = 'done';
    await writeMarker(dir, marker);
    this.failedOver.set(marker.machineId, marker);
    return resultOf(marker);
  }

  /** At start: a machine with a marker. Done: remembered. Interrupted: finished now. Released halfway: finished. */
  private async resumeFailover(id: string): Promise<void> {
    const dir = this.machineDir(id);
    const marker = await readMarker(dir);
    if (!marker) throw new Error(`cannot read ${markerPath(dir)}`);
    const disks = await readJsonFile<StoredDisk[]>(join(dir, 'disks.json'));
    if (!disks) {
      await this.finishRelease(id); // disks.json goes first when released
      return;
    }
    if (marker.state === 'done') {
      this.failedOver.set(id, marker);
      return;
    }
    if (marker.state === 'rolling-back') {
      this.opts.logger.warn(
        { machineId: id, point: marker.point },
        'master target: a failover was interrupted: finishing the rollback',
      );
      const replica = await Replica.open({
        stateDir: dir,
        retentionDir: join(this.opts.retentionDir, id),
        disks: marker.disks.map((d) => ({ id: d.id, path: d.path })),
        logger: this.opts.logger,
      });
      try {
        const reason = this.failedOverReason(id, marker.point);
        const r = await replica.rollBackTo(marker.point, reason, async () => undefined);
        marker.pointTime = r.pointTime;
        marker.bytesWritten = r.bytesWritten;
        marker.journalBytesAfter = r.journalBytesAfter;
      } finally {
        await replica.close();
      }
    }
    await this.finishFailover(marker);
  }

  /**
   * The commit of a failover: the machine's journal, state and record leave this master
   * target; its disk files stay where the failover put them (the recovered machine's).
   */
  async release(machineId: string): Promise<{ journalBytes: number; disks: FailoverDisk[] }> {
    const marker = this.failedOver.get(machineId);
    if (!marker) {
      if (this.failingOver.has(machineId))
        throw new Error(`machine ${machineId} is failing over: release it once that is done`);
      if (this.machines.has(machineId))
        throw new Error(`machine ${machineId} has not failed over: there is nothing to release`);
      throw new Error(`no machine '${machineId}' has failed over on this master target`);
    }
    const journalBytes = await allocatedBytes(join(this.opts.retentionDir, machineId));
    // disks.json first: a start that finds the marker without it finishes the release.
    await rm(join(this.machineDir(machineId), 'disks.json'), { force: true });
    await this.finishRelease(machineId);
    this.opts.logger.info(
      { machineId, journalBytes, disks: marker.disks.map((d) => d.path) },
      'master target: failover committed: journal and state removed, disks left to the recovered machine',
    );
    return { journalBytes, disks: marker.disks };
  }

  private async finishRelease(machineId: string): Promise<void> {
    const dir = this.machineDir(machineId);
    await rm(join(this.opts.retentionDir, machineId), { recursive: true, force: true });
    await rm(join(dir, STATE_FILE), { force: true });
    await rm(markerPath(dir), { force: true });
    // Disk images not moved elsewhere stay in the directory; an empty one goes.
    if ((await readdir(dir).catch(() => ['?'])).length === 0) await rm(dir, { recursive: true, force: true });
    this.failedOver.delete(machineId);
  }

  /**
   * A replica made of existing disk files (reprotect: the original machine's disks): the
   * sizes must match. Like a new replica, it offers no point until the agent's first copy
   * ends, and that copy compares block hashes, so only the blocks that differ move.
   */
  async adopt(machineId: string, disks: FailoverDisk[]): Promise<void> {
    if (!isValidMachineId(machineId)) throw new Error(`machine id '${machineId}' is not valid`);
    const dir = this.machineDir(machineId);
    if (this.machines.has(machineId) || existsSync(join(dir, 'disks.json')))
      throw new Error(`machine ${machineId} already has a replica on this master target`);
    if (this.failedOver.has(machineId) || this.failingOver.has(machineId))
      throw new Error(`machine ${machineId} has failed over here: release it before adopting disks for it`);
    if (disks.length === 0) throw new Error('adopt needs at least one disk');
    const ids = new Set<number>();
    for (const d of disks) {
      const what = `disk ${d.id} ('${d.name}')`;
      if (!Number.isInteger(d.id) || d.id < 1 || d.id > 65535) throw new Error(`${what}: invalid disk id`);
      if (ids.has(d.id)) throw new Error(`${what}: disk id given twice`);
      ids.add(d.id);
      if (!Number.isSafeInteger(d.size) || d.size <= 0) throw new Error(`${what}: invalid size ${d.size}`);
      if (!isAbsolute(d.path)) throw new Error(`${what}: ${d.path} is not an absolute path`);
      const actual = await diskSizeOf(d.path).catch((e: NodeJS.ErrnoException) => {
        throw new Error(
          `${what}: cannot open ${d.path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`,
        );
      });
      if (actual !== d.size)
        throw new Error(`${what}: ${d.path} is ${actual} bytes, but the machine's disk is ${d.size} bytes`);
    }
    mkdirSync(dir, { recursive: true });
    const stored: StoredDisk[] = disks.map((d) => ({ id: d.id, name: d.name, size: d.size, path: d.path }));
    await writeJsonFile(join(dir, 'disks.json'), stored, { durable: true });
    await this.machine(machineId, stored);
    this.opts.logger.info(
      { machineId, disks: disks.map((d) => d.path) },
      'master target: existing disks adopted as a replica: the first copy sends only blocks that differ',
    );
  }

  /** What removing a machine would delete: its replica disks and undo journal, on disk. */
  async footprint(machineId: string): Promise<{ replicaBytes: number; journalBytes: number; disks: number }> {
    return {
      replicaBytes: await allocatedBytes(this.machineDir(machineId)),
      journalBytes: await allocatedBytes(join(this.opts.retentionDir, machineId)),
      disks: this.machines.get(machineId)?.disks.length ?? 0,
    };
  }

  /**
   * Deletes a machine's replica disks and its undo journal (its replication was disabled):
   * its stream is closed first. Its process server must have stopped forwarding it (a new
   * stream would make a new replica). Returns the bytes freed, or undefined if none was here.
   */
  async removeMachine(
    machineId: string,
  ): Promise<{ replicaBytes: number; journalBytes: number } | undefined> {
    if (!isValidMachineId(machineId)) throw new Error(`machine id '${machineId}' is not valid`);
    if (this.failedOver.has(machineId) || this.failingOver.has(machineId))
      throw new Error(
        `machine ${machineId} has failed over: its disks are the recovered machine's; release it instead`,
      );
    const m = this.machines.get(machineId);
    const dir = this.machineDir(machineId);
    const journalDir = join(this.opts.retentionDir, machineId);
    if (!m && !existsSync(dir) && !existsSync(journalDir)) return undefined;
    if (m) {
      this.machines.delete(machineId);
      m.conn?.close('replication of this machine was disabled', WireErrorCode.Shutdown);
      await m.replica.close();
    }
    const freed = { replicaBytes: await allocatedBytes(dir), journalBytes: await allocatedBytes(journalDir) };
    await rm(dir, { recursive: true, force: true });
    await rm(journalDir, { recursive: true, force: true });
    this.opts.logger.info({ machineId, ...freed }, 'master target: replica and journal removed');
    return freed;
  }

  async close(): Promise<void> {
    await this.pruner?.stop();
    await this.server?.close();
    for (const m of this.machines.values()) await m.replica.close();
  }
}

function resultOf(m: FailoverMarker): FailoverResult {
  return {
    point: m.point,
    pointTime: m.pointTime,
    disks: m.disks.map((d) => ({ ...d })),
    bytesWritten: m.bytesWritten ?? 0,
    journalBytesAfter: m.journalBytesAfter ?? 0,
  };
}

/** Size of an image file or block device. */
async function diskSizeOf(path: string): Promise<number> {
  const s = await BlockStore.open(path, { readOnly: true });
  try {
    return s.size;
  } finally {
    await s.close();
  }
}

/** Bytes a directory tree takes on disk (sparse replicas count what they hold, not their size). */
async function allocatedBytes(path: string): Promise<number> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let n = 0;
  for (const e of await readdir(path)) n += await allocatedBytes(join(path, e));
  return n;
}
