// The master target's network service: takes each machine's stream from its process
// server over mutual TLS, applies it to the machine's replica (undo journal first, see
// replica.ts) in batches, and acknowledges what is applied and durable.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/ca.js';
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
import { serveHashRequests } from './hash-service.js';
import { type BatchResult, Replica, type ReplicaItem } from './replica.js';
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
const MAX_BATCH_BYTES = 16 * 1024 * 1024;

interface Machine {
  id: string;
  replica: Replica;
  disks: DiskInfo[];
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

  private constructor(private readonly opts: MasterTargetOptions) {}

  static async start(opts: MasterTargetOptions): Promise<MasterTarget> {
    mkdirSync(join(opts.dataDir, 'machines'), { recursive: true });
    mkdirSync(opts.retentionDir, { recursive: true });
    const mt = new MasterTarget(opts);
    // Machines replicated before a restart: their replicas and points are there at once.
    for (const id of readdirSync(join(opts.dataDir, 'machines'))) {
      const disks = await readJsonFile<DiskInfo[]>(join(mt.machineDir(id), 'disks.json'));
      if (isValidMachineId(id) && disks) await mt.machine(id, disks);
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

  /** The replica image of one disk. */
  diskPath(machineId: string, diskId: number): string {
    return join(this.machineDir(machineId), `disk-${diskId}.img`);
  }

  private machineDir(id: string): string {
    return join(this.opts.dataDir, 'machines', id);
  }

  /** Opens (or creates, from the stream's disk list) a machine's replica. */
  private async machine(id: string, disks: DiskInfo[]): Promise<Machine> {
    const known = this.machines.get(id);
    const dir = this.machineDir(id);
    const stored = known?.disks ?? (await readJsonFile<DiskInfo[]>(join(dir, 'disks.json')));
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
      // New machine: sparse replica images at the disks' sizes, then the list, durably.
      for (const d of list) {
        const fd = openSync(this.diskPath(id, d.id), 'a');
        try {
          ftruncateSync(fd, d.size);
        } finally {
          closeSync(fd);
        }
      }
      await writeJsonFile(join(dir, 'disks.json'), list, { durable: true });
    }
    const replica = await Replica.open({
      stateDir: dir,
      retentionDir: join(this.opts.retentionDir, id),
      disks: list.map((d) => ({ id: d.id, path: this.diskPath(id, d.id) })),
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

/** Bytes a directory tree takes on disk (sparse replicas count what they hold, not their size). */
async function allocatedBytes(path: string): Promise<number> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let n = 0;
  for (const e of await readdir(path)) n += await allocatedBytes(join(path, e));
  return n;
}
