// The process server: terminates agent streams over mutual TLS, keeps each machine's
// changes in a durable cache (a change log under the agent's own sequence numbers),
// acknowledges only what it has fsynced, and forwards the cache to the master target,
// trimming it as the master target acknowledges.
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ChangeLog } from '../changelog/change-log.js';
import type { LogCorruptError } from '../changelog/log-corrupt-error.js';
import { markerPayload, RecordType } from '../changelog/record.js';
import type { TlsMaterial } from '../pki/ca.js';
import { readJsonFile, writeJsonFile } from '../util/json-file.js';
import type { CompressMode } from '../wire/compression-policy.js';
import {
  type DiskInfo,
  decodeChange,
  decodeDisks,
  decodeHeartbeat,
  decodeHello,
  decodeMarker,
  encodeAck,
  encodeDisks,
  encodeHello,
  type Frame,
  FrameError,
  FrameType,
  isValidMachineId,
  WireErrorCode,
} from '../wire/frame.js';
import { LogStreamer, type StreamerStatus } from '../wire/log-streamer.js';
import { decodeReplicatedRequest, encodeReplicated } from '../wire/replicated-frame.js';
import { connectFrames, type FrameConnection, type FrameServer, listenFrames } from '../wire/tls-endpoint.js';
import { relayHashSession } from './hash-relay.js';

/** An iterator that yields `first`, then the rest of `rest`. */
function prepend(first: Frame, rest: AsyncIterator<Frame>): AsyncIterator<Frame> {
  let given = false;
  return {
    next: () => {
      if (given) return rest.next();
      given = true;
      return Promise.resolve({ done: false, value: first });
    },
  };
}

import { SyncCoalescer } from '../util/sync-coalescer.js';
import { AckedWatermark } from './acked-watermark.js';

export interface ProcessServerOptions {
  dataDir: string;
  host: string;
  port: number;
  material: TlsMaterial;
  /** This process server's component name (its certificate's). */
  name: string;
  logger: Logger;
  /** Per machine; beyond it the stream waits (the agent's backlog grows). Default 8 GiB. */
  cacheLimitBytes?: number;
  /** Where to forward each machine's cache; without it the cache only grows. */
  masterTarget?: { host: string; port: number };
  /** lz4 on the way to the master target: `auto` (when it pays, the default) or `off`. */
  compress?: CompressMode;
}

/** Per machine, next to its cache: the highest seq acknowledged to its agent. */
const ACKED_FILE = 'cache-acked.json';

/** Appended but not yet written to the cache file: the stream pauses beyond this. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

interface MachineCache {
  id: string;
  log: ChangeLog;
  /** Syncs of the cache: one at a time, later requests share the next (group commit). */
  syncer: SyncCoalescer;
  /** The connection streaming this machine now (a newer one replaces it). */
  conn: FrameConnection | undefined;
  ackedThrough: number;
  /** The machine's disks, as its agent last described them. */
  disks: DiskInfo[] | undefined;
  forwarder: LogStreamer | undefined;
  /** The agent's newest position heartbeat and when it arrived (this host's clock). */
  heartbeat: { time: number; throughSeq: number; receivedAt: number } | undefined;
  /** What this process server has acknowledged, kept across restarts (see acked-watermark.ts). */
  acked: AckedWatermark;
  /** Set when the cache holds corrupt records: the machine's replica needs a resync. */
  corrupt: { error: LogCorruptError; problem: MachineProblem } | undefined;
  /** Every change <= this is durable at the master target (its acks, or its resume point). */
  replicatedThrough: number;
  /** The agent connection that asked to hear replicatedThrough (sync acknowledgement mode). */
  relayTo: FrameConnection | undefined;
}

/** A named problem of one machine. */
export interface MachineProblem {
  code: string;
  message: string;
}

/** Problem code: records in this machine's cache fail their checks; never forwarded. */
export const CACHE_CORRUPT = 'cache-corrupt';

export interface MachineStatus {
  machineId: string;
  /** Highest sequence durable in the cache (and acknowledged). */
  ackedThrough: number;
  cacheBytes: number;
  connected: boolean;
  /** Cache bytes the master target has not acknowledged yet (0 without a master target). */
  backlogBytes: number;
  forwarderConnected: boolean;
  /** Highest sequence the master target has acknowledged (applied and durable). */
  forwardedThrough: number;
  /** Source time through which the master target provably holds every change (ms). */
  replicaCurrentAsOf?: number;
  /** The agent's newest position heartbeat: its source time and when it arrived here (ms). */
  lastHeartbeat?: { time: number; throughSeq: number; receivedAt: number };
  lastForwardError?: string;
  /** The forwarding to the master target (its lastError says why it is not moving). */
  forwarder?: StreamerStatus;
  /** Named problems (cache-corrupt): empty when healthy. */
  problems?: MachineProblem[];
  /** Highest sequence the master target has acknowledged as durable. */
  replicatedThrough: number;
  /** The agent asked for the master target's acks (it runs in sync mode). */
  relaying: boolean;
}

export class ProcessServer {
  private readonly machines = new Map<string, MachineCache>();
  private opening = new Map<string, Promise<MachineCache>>();

  private constructor(
    private readonly opts: ProcessServerOptions,
    private server: FrameServer | undefined,
  ) {}

  static async start(opts: ProcessServerOptions): Promise<ProcessServer> {
    mkdirSync(join(opts.dataDir, 'machines'), { recursive: true });
    const ps = new ProcessServer(opts, undefined);
    // Machines cached before a restart are forwarded again at once, agent or not.
    for (const id of readdirSync(join(opts.dataDir, 'machines'))) {
      if (isValidMachineId(id) && existsSync(join(opts.dataDir, 'machines', id, 'cache')))
        await ps.machine(id);
    }
    ps.server = await listenFrames({
      host: opts.host,
      port: opts.port,
      material: opts.material,
      logger: opts.logger,
      acceptRoles: ['agent'],
      onConnection: (conn) => ps.serveAgent(conn),
    });
    return ps;
  }

  get port(): number {
    return this.server!.address.port;
  }

  status(): MachineStatus[] {
    return [...this.machines.values()].map((m) => {
      const f = m.forwarder?.status();
      return {
        machineId: m.id,
        ackedThrough: m.ackedThrough,
        cacheBytes: m.log.bytes,
        connected: m.conn !== undefined,
        backlogBytes: f?.backlogBytes ?? 0,
        forwarderConnected: f?.connected ?? false,
        forwardedThrough: f?.ackedThrough ?? 0,
        replicaCurrentAsOf: f?.receiverCurrentAsOf,
        lastHeartbeat: m.heartbeat,
        lastForwardError: f?.lastError,
        forwarder: f,
        problems: m.corrupt ? [m.corrupt.problem] : [],
        replicatedThrough: m.replicatedThrough,
        relaying: m.relayTo !== undefined,
      };
    });
  }

  /** The cache of one machine, opened on first use (read it with records()). */
  async cache(machineId: string): Promise<ChangeLog> {
    return (await this.machine(machineId)).log;
  }

  private machine(id: string): Promise<MachineCache> {
    const known = this.machines.get(id);
    if (known) return Promise.resolve(known);
    let p = this.opening.get(id);
    if (!p) {
      p = (async () => {
        const acked = await AckedWatermark.open(
          join(this.opts.dataDir, 'machines', id, ACKED_FILE),
          this.opts.logger,
        );
        let m: MachineCache | undefined;
        let foundOnOpen: LogCorruptError | undefined;
        const log = await ChangeLog.open(join(this.opts.dataDir, 'machines', id, 'cache'), {
          maxBytes: this.opts.cacheLimitBytes ?? 8 * 1024 ** 3,
          segmentBytes: 64 * 1024 * 1024,
          logger: this.opts.logger,
          // Acknowledged records were fsynced: a bad one is corruption, never a torn tail.
          durableThrough: acked.ackedThrough,
          onCorruption: (e) => {
            if (m) this.cacheCorrupt(m, e);
            else foundOnOpen = e;
          },
        });
        const disks = await readJsonFile<DiskInfo[]>(this.disksPath(id));
        m = {
          id,
          log,
          syncer: new SyncCoalescer(() => log.sync()),
          conn: undefined,
          ackedThrough: log.durableSeq,
          disks,
          forwarder: undefined,
          heartbeat: undefined,
          acked,
          corrupt: undefined,
          replicatedThrough: 0,
          relayTo: undefined,
        };
        if (foundOnOpen) this.cacheCorrupt(m, foundOnOpen);
        m.forwarder = this.forwarder(m);
        m.forwarder?.start();
        this.machines.set(id, m);
        this.opening.delete(id);
        return m;
      })();
      this.opening.set(id, p);
    }
    return p;
  }

  /**
   * Corrupt records in a machine's cache: nothing from there on is ever forwarded (the
   * forwarder stops at the last good record), and the machine's replica needs a resync.
   */
  private cacheCorrupt(m: MachineCache, e: LogCorruptError): void {
    if (m.corrupt) return;
    const message =
      `machine ${m.id} needs a resync: ${e.message}; records after seq ${e.afterSeq} in this cache ` +
      'cannot be read and are never forwarded, so its replica stops there';
    m.corrupt = { error: e, problem: { code: CACHE_CORRUPT, message } };
    this.opts.logger.error(
      { machineId: m.id, segment: e.path, offset: e.offset, reason: e.reason, afterSeq: e.afterSeq },
      message,
    );
  }

  private disksPath(machineId: string): string {
    return join(this.opts.dataDir, 'machines', machineId, 'disks.json');
  }

  /** Streams the machine's cache to the master target; its acks trim the cache. */
  private forwarder(m: MachineCache): LogStreamer | undefined {
    const mt = this.opts.masterTarget;
    if (!mt) return undefined;
    const { logger } = this.opts;
    const log = m.log;
    return new LogStreamer({
      what: 'forwarder',
      log,
      logger: logger.child({ machineId: m.id }),
      connect: () =>
        connectFrames({
          host: mt.host,
          port: mt.port,
          material: this.opts.material,
          logger,
          acceptRoles: ['master-target'],
        }),
      hello: { resumeFrom: 0, role: 'process-server', name: this.opts.name, machineId: m.id },
      resume: async (resumeFrom) => {
        if (!m.disks)
          throw new Error(`machine ${m.id}: its disks are not known yet (no agent has connected)`);
        const from = resumeFrom === 0 ? log.trimmedThrough + 1 : resumeFrom;
        if (from <= log.trimmedThrough) {
          throw new Error(
            `master target wants seq ${from} of machine ${m.id}, but this cache starts at ` +
              `${log.trimmedThrough + 1}: the replica needs a resync`,
          );
        }
        if (from > log.nextSeq) {
          throw new Error(
            `master target has machine ${m.id} through seq ${from - 1}, beyond this cache (next ${log.nextSeq})`,
          );
        }
        if (m.corrupt && from > m.corrupt.error.afterSeq) {
          // Everything readable is forwarded: say why there is nothing more (the master
          // target logs it too), and stop retrying until a restart or a resync.
          setImmediate(() => void m.forwarder?.stop());
          throw new Error(m.corrupt.problem.message);
        }
        // The master target's resume point is its durable applied watermark.
        if (resumeFrom > 0) this.relay(m, resumeFrom - 1);
        return from;
      },
      preamble: async () => [{ type: FrameType.Disks, payload: encodeDisks(m.disks ?? []) }],
      onAckNow: (seq) => this.relay(m, seq),
      onAck: (seq) => log.trimThrough(seq),
      compress: this.opts.compress ?? 'auto',
    });
  }

  /** The master target has everything <= seq durably: tell the agent that asked. */
  private relay(m: MachineCache, seq: number): void {
    if (seq <= m.replicatedThrough) return;
    m.replicatedThrough = seq;
    const to = m.relayTo;
    if (to && to === m.conn)
      void to.send(FrameType.Replicated, encodeReplicated({ seq })).catch(() => undefined);
  }

  /** An agent in sync mode asks for the master target's acks on this connection. */
  private subscribe(m: MachineCache, conn: FrameConnection, f: Frame): void {
    decodeReplicatedRequest(f.payload);
    m.relayTo = conn;
    if (!this.opts.masterTarget) {
      this.opts.logger.warn(
        { machineId: m.id },
        'process server: an agent in sync mode asks for master-target acks, but this process server forwards to no master target',
      );
    }
    if (m.replicatedThrough > 0)
      void conn
        .send(FrameType.Replicated, encodeReplicated({ seq: m.replicatedThrough }))
        .catch(() => undefined);
  }

  private async serveAgent(conn: FrameConnection): Promise<void> {
    const log = this.opts.logger.child({ conn: conn.id });
    const frames = conn[Symbol.asyncIterator]();
    const first = await frames.next();
    if (first.done) return;
    if (first.value.type !== FrameType.Hello) {
      conn.close(`expected hello first, got frame type ${first.value.type}`, WireErrorCode.Protocol);
      return;
    }
    let machineId: string;
    try {
      const hello = decodeHello(first.value.payload);
      machineId = hello.machineId ?? '';
      if (hello.role !== 'agent') throw new FrameError(`hello says role '${hello.role}', expected agent`);
      if (!isValidMachineId(machineId)) throw new FrameError(`hello machine id '${machineId}' is not valid`);
    } catch (e) {
      conn.close((e as Error).message, WireErrorCode.Protocol);
      return;
    }
    const m = await this.machine(machineId);
    // resumeFrom says the cache holds everything before it: make that true on disk first
    // (a previous connection may have ended between an append and its sync).
    try {
      await m.syncer.request();
    } catch (e) {
      conn.close(`cache sync failed: ${(e as Error).message}`, WireErrorCode.Internal);
      return;
    }
    // resumeFrom 0: nothing ever received, the agent starts with the oldest change it has.
    const resumeFrom = m.log.nextSeq > 1 || m.log.trimmedThrough > 0 ? m.log.nextSeq : 0;
    await conn.send(
      FrameType.Hello,
      encodeHello({ resumeFrom, role: 'process-server', name: this.opts.name, machineId }),
    );
    // The first frame after the hellos says what the connection is: a resync hash session
    // or the machine's stream (which starts with its disks).
    const second = await frames.next();
    if (second.done) return;
    if (second.value.type === FrameType.HashRequest) {
      await relayHashSession({
        agent: conn,
        first: second.value,
        frames,
        machineId,
        name: this.opts.name,
        connect: this.connectMasterTarget(),
        logger: log,
      });
      return;
    }
    if (m.conn && m.conn !== conn) m.conn.close('replaced by a newer connection from the same machine');
    m.conn = conn;
    log.info({ machineId, resumeFrom }, 'process server: agent stream started');
    try {
      await this.receive(conn, prepend(second.value, frames), m);
    } finally {
      if (m.conn === conn) m.conn = undefined;
      if (m.relayTo === conn) m.relayTo = undefined;
    }
  }

  /** Opens a connection to the master target, when there is one. */
  private connectMasterTarget(): (() => Promise<FrameConnection>) | undefined {
    const mt = this.opts.masterTarget;
    if (!mt) return undefined;
    return () =>
      connectFrames({
        host: mt.host,
        port: mt.port,
        material: this.opts.material,
        logger: this.opts.logger,
        acceptRoles: ['master-target'],
      });
  }

  private async receive(conn: FrameConnection, frames: AsyncIterator<Frame>, m: MachineCache): Promise<void> {
    const pending: { written: Promise<void>; bytes: number }[] = [];
    let pendingBytes = 0;
    let ackScheduled = false;
    /** The newest append's write: an ack syncs only once everything appended before it is written. */
    let lastAppend: Promise<void> = Promise.resolve();
    const ack = async () => {
      ackScheduled = false;
      try {
        await lastAppend;
        await m.syncer.request();
      } catch (e) {
        conn.close(`cache sync failed: ${(e as Error).message}`, WireErrorCode.Internal);
        return;
      }
      const durable = m.log.durableSeq;
      if (durable > m.ackedThrough && m.conn === conn) {
        m.ackedThrough = durable;
        m.acked.set(durable);
        await conn.send(FrameType.Ack, encodeAck({ seq: durable })).catch(() => undefined);
      }
    };
    for (;;) {
      const n = await frames.next();
      if (n.done) return;
      const f = n.value;
      let appended: { written: Promise<void> };
      try {
        if (f.type === FrameType.Replicated) {
          this.subscribe(m, conn, f);
          continue;
        }
        appended = await this.append(m, f);
      } catch (e) {
        conn.close(
          (e as Error).message,
          e instanceof FrameError ? WireErrorCode.Protocol : WireErrorCode.Internal,
        );
        return;
      }
      pending.push({ written: appended.written, bytes: f.payload.length });
      lastAppend = appended.written;
      pendingBytes += f.payload.length;
      // Bounded memory: the cache's append queue holds the payloads until they are written.
      while (pendingBytes > MAX_PENDING_BYTES || pending.length > 4096) {
        const p = pending.shift()!;
        await p.written;
        pendingBytes -= p.bytes;
      }
      // Group commit: one sync and ack for every frame that arrived in this turn.
      if (!ackScheduled) {
        ackScheduled = true;
        setImmediate(() => void ack());
      }
    }
  }

  private async append(m: MachineCache, f: Frame): Promise<{ written: Promise<void> }> {
    const log = m.log;
    if (f.type === FrameType.Change) {
      const c = decodeChange(f.payload);
      this.checkSeq(log, c.seq);
      await this.waitForRoom(log, c.data.length);
      const type =
        c.kind === 'write' ? RecordType.Write : c.kind === 'zero' ? RecordType.Zero : RecordType.Trim;
      return log.appendAt(c.seq, {
        type,
        flags: c.flags,
        disk: c.disk,
        time: c.time,
        offset: c.offset,
        length: c.length,
        payload: c.data,
      });
    }
    if (f.type === FrameType.Marker) {
      const mk = decodeMarker(f.payload);
      this.checkSeq(log, mk.seq);
      return log.appendAt(mk.seq, {
        type: mk.kind === 'flush' ? RecordType.Flush : RecordType.Bookmark,
        flags: 0,
        disk: 0,
        time: mk.time,
        offset: 0,
        length: 0,
        payload: markerPayload(0, mk.kind === 'bookmark' ? mk.tag : undefined),
      });
    }
    if (f.type === FrameType.Heartbeat) {
      // Passed on behind the changes it speaks for (the forwarder waits until it has sent them).
      const hb = decodeHeartbeat(f.payload);
      if (hb.throughSeq !== undefined) {
        m.heartbeat = { time: hb.time, throughSeq: hb.throughSeq, receivedAt: Date.now() };
        m.forwarder?.offerHeartbeat({ time: hb.time, throughSeq: hb.throughSeq });
      }
      return { written: Promise.resolve() };
    }
    if (f.type === FrameType.Disks) {
      const disks = decodeDisks(f.payload);
      await writeJsonFile(this.disksPath(m.id), disks, { durable: true });
      m.disks = disks;
      return { written: Promise.resolve() };
    }
    throw new FrameError(`unexpected frame type ${f.type} in an agent stream`);
  }

  private checkSeq(log: ChangeLog, seq: number): void {
    if (seq < log.nextSeq) {
      throw new FrameError(`seq ${seq} repeats or goes back (this cache's next seq is ${log.nextSeq})`);
    }
  }

  private async waitForRoom(log: ChangeLog, bytes: number): Promise<void> {
    let warned = false;
    while (!log.hasRoom(bytes)) {
      if (!warned) {
        this.opts.logger.warn({ cacheBytes: log.bytes }, 'process server cache full: the agent stream waits');
        warned = true;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /**
   * Forgets a machine whose replication was disabled: its stream is closed, its forwarding
   * stopped and its cache deleted. Its agent must have stopped shipping first (a new stream
   * would start a new cache). Returns whether there was anything to remove.
   */
  async removeMachine(machineId: string): Promise<boolean> {
    if (!isValidMachineId(machineId)) throw new Error(`machine id '${machineId}' is not valid`);
    const m = this.machines.get(machineId) ?? (await this.opening.get(machineId));
    const dir = join(this.opts.dataDir, 'machines', machineId);
    const existed = m !== undefined || existsSync(dir);
    if (m) {
      this.machines.delete(machineId);
      m.conn?.close('replication of this machine was disabled', WireErrorCode.Shutdown);
      await m.forwarder?.stop();
      await m.log.close();
      await m.acked.close();
    }
    await rm(dir, { recursive: true, force: true });
    return existed;
  }

  async close(): Promise<void> {
    await this.server?.close();
    for (const m of this.machines.values()) await m.forwarder?.stop();
    for (const m of this.machines.values()) await m.log.close();
    for (const m of this.machines.values()) await m.acked.close();
  }
}
