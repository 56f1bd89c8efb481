// Streams a change log to the next hop over mutual TLS: hello both ways, then the
// log's durable records as change and marker frames in sequence order, pipelined
// within a window of unacknowledged bytes; reconnects after any failure and resumes
// from what the receiver says it has. The agent's shipper and the process server's
// forwarder are this with their own hello, resume rule and acknowledgement action.
// Protocol: docs/protocol.md ("The agent stream").
import type { Logger } from 'pino';
import type { ChangeLog } from '../changelog/change-log.js';
import { LogCorruptError } from '../changelog/log-corrupt-error.js';
import { LogTailer } from '../changelog/log-tailer.js';
import { type LogRecord, parseMarkerPayload, RecordType } from '../changelog/record.js';
import { logBytesAfter, recordLogBytes } from './backlog.js';
import { CompressionPolicy, type CompressMode } from './compression-policy.js';
import {
  decodeAck,
  decodeError,
  decodeHello,
  encodeChange,
  encodeHeartbeat,
  encodeHello,
  encodeMarker,
  type Frame,
  FrameType,
  type HelloPayload,
  WireErrorCode,
} from './frame.js';
import { type CompressionStats, FramePipeline, newCompressionStats } from './frame-pipeline.js';
import { type PositionHeartbeat, StreamFreshness } from './stream-freshness.js';
import type { FrameConnection } from './tls-endpoint.js';

export interface LogStreamerOptions {
  log: ChangeLog;
  /** Opens an authenticated connection to the receiver. */
  connect: () => Promise<FrameConnection>;
  /** Our hello. */
  hello: HelloPayload;
  /** The receiver's resumeFrom (0 = nothing yet) -> the first seq to send; throw to refuse. */
  resume: (resumeFrom: number) => Promise<number>;
  /** Frames sent after the hellos, before any change (the machine's disks). */
  preamble?: () => Promise<{ type: FrameType; payload: Buffer }[]>;
  /**
   * Everything <= seq is durable at the receiver (trim the log here). Called for the
   * newest ack, one call at a time and off the ack loop, so a slow call never holds
   * back the window; acks that come meanwhile fold into the next call.
   */
  onAck: (seq: number) => Promise<void>;
  /** The same, called at once for every ack (cheap bookkeeping only). */
  onAckNow?: (seq: number) => void;
  /**
   * Records are written but not durable: sync them. Called whenever the streamer sees
   * such records, so it must coalesce calls that overlap a running sync (SyncCoalescer).
   */
  makeDurable?: () => Promise<void>;
  /** Frames of other types from the receiver; throw to close the connection (default: all refused). */
  onFrame?: (f: Frame) => Promise<void>;
  /** For log lines: 'shipper', 'forwarder'. */
  what: string;
  logger: Logger;
  /** Bytes sent and not yet acknowledged before sending waits (default 64 MiB). */
  windowBytes?: number;
  /** First and longest wait before reconnecting (default 200 ms, doubling to 5 s). */
  retryMs?: number;
  maxRetryMs?: number;
  /** The wait after the receiver said it no longer takes this stream (code Retired; default 30 s). */
  retiredRetryMs?: number;
  /** lz4 on change payloads when it pays (`auto`, see frame-pipeline.ts) or never (default `off`). */
  compress?: CompressMode;
}

export interface StreamerStatus {
  connected: boolean;
  /** Every change with seq <= this is durable at the process server. */
  ackedThrough: number;
  sentThrough: number;
  /** Log bytes not yet acknowledged (payload bytes of records after ackedThrough that are written). */
  unackedBytes: number;
  /**
   * Bytes of the log (as in its files: headers and payloads) after what the receiver has
   * acknowledged: sent and unacknowledged, and not yet sent. See docs/protocol.md.
   */
  backlogBytes: number;
  /** Source time (ms) through which the receiver provably holds every change; undefined until known. */
  receiverCurrentAsOf?: number;
  lastError?: string;
  /** Frames sent and what lz4 saved, since start. */
  compression: CompressionStats;
}

const READ_BATCH_BYTES = 2 * 1024 * 1024;

const KIND_OF: Record<number, 'write' | 'zero' | 'trim'> = {
  [RecordType.Write]: 'write',
  [RecordType.Zero]: 'zero',
  [RecordType.Trim]: 'trim',
};

export function encodeRecordFrame(r: LogRecord): { type: FrameType; payload: Buffer } {
  if (r.type === RecordType.Flush || r.type === RecordType.Bookmark) {
    const { tag } = parseMarkerPayload(r.payload);
    return {
      type: FrameType.Marker,
      payload: encodeMarker({
        seq: r.seq,
        time: r.time,
        kind: r.type === RecordType.Flush ? 'flush' : 'bookmark',
        tag,
      }),
    };
  }
  return {
    type: FrameType.Change,
    payload: encodeChange({
      seq: r.seq,
      time: r.time,
      offset: r.offset,
      length: r.length,
      disk: r.disk,
      kind: KIND_OF[r.type]!,
      flags: r.flags,
      data: r.type === RecordType.Write ? r.payload : Buffer.alloc(0),
    }),
  };
}

export class LogStreamer {
  private stopped = false;
  private conn: FrameConnection | undefined;
  private loop: Promise<void> | undefined;
  private acked = 0;
  private sent = 0;
  private lastError: string | undefined;
  /** Records sent and not yet acknowledged: seq, payload bytes, log bytes and source time, in order. */
  private inflight: { seq: number; bytes: number; logBytes: number; time: number }[] = [];
  private inflightBytes = 0;
  private inflightLogBytes = 0;
  /** Log bytes of records read from the log and not yet sent. */
  private readAheadLogBytes = 0;
  /** The current (or last) session's reader: where the unsent part of the log starts. */
  private tailer: LogTailer | undefined;
  /** The connection whose hellos are done and whose sent/acked counters are current. */
  private streaming: FrameConnection | undefined;
  private readonly freshness = new StreamFreshness();
  private wakeWindow: (() => void) | undefined;
  private ackToActOn = 0;
  private actedOnAck = 0;
  private actingOnAck: Promise<void> | undefined;
  /** Ends the wait before the next reconnection (stop). */
  private wakeRetry: (() => void) | undefined;
  /** Per stream, across reconnects: whether lz4 pays for this machine's data. */
  private readonly policy: CompressionPolicy;
  private readonly compression = newCompressionStats();

  constructor(private readonly opts: LogStreamerOptions) {
    this.policy = new CompressionPolicy({ mode: opts.compress ?? 'off' });
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeRetry?.();
    this.conn?.close();
    this.wakeWindow?.();
    await this.loop;
    await this.actingOnAck;
  }

  status(): StreamerStatus {
    return {
      connected: this.conn !== undefined,
      ackedThrough: this.acked,
      sentThrough: this.sent,
      unackedBytes: this.inflightBytes,
      backlogBytes: this.backlogBytes(),
      receiverCurrentAsOf: this.freshness.currentAsOf,
      lastError: this.lastError,
      compression: { ...this.compression },
    };
  }

  private backlogBytes(): number {
    const log = this.opts.log;
    const next = this.tailer?.next ?? log.trimmedThrough + 1;
    const unread =
      next >= log.nextSeq ? 0 : logBytesAfter(log.segmentsSnapshot(), log.bytes, this.tailer?.position, next);
    return this.inflightLogBytes + this.readAheadLogBytes + unread;
  }

  /**
   * A position heartbeat to pass to the receiver once every record through its seq has
   * been sent on the current connection (it never overtakes them).
   */
  offerHeartbeat(hb: PositionHeartbeat): void {
    this.freshness.offer(hb);
    void this.sendHeartbeat();
  }

  private async sendHeartbeat(): Promise<void> {
    const conn = this.streaming;
    if (!conn) return;
    const hb = this.freshness.takeSendable(this.sent);
    if (!hb) return;
    try {
      await conn.send(FrameType.Heartbeat, encodeHeartbeat(hb));
      this.freshness.sent(hb, this.acked);
    } catch {
      // The connection is going; the next heartbeat goes out on the next one.
    }
  }

  private async run(): Promise<void> {
    const base = this.opts.retryMs ?? 200;
    const max = this.opts.maxRetryMs ?? 5000;
    let wait = base;
    while (!this.stopped) {
      try {
        await this.session();
        wait = base;
      } catch (e) {
        this.lastError = (e as Error).message;
        if (!this.stopped)
          this.opts.logger.warn({ err: this.lastError }, `${this.opts.what}: connection lost`);
      }
      // Retired (a failed-over replica): asking again every few seconds would change nothing.
      const retired = this.conn?.peerErrorCode === WireErrorCode.Retired;
      this.conn = undefined;
      if (this.stopped) break;
      const delay = retired ? (this.opts.retiredRetryMs ?? 30_000) : wait;
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.wakeRetry = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wakeRetry = undefined;
      wait = Math.min(wait * 2, max);
    }
  }

  /** One connection: hello both ways, then send and receive acks until it ends. */
  private async session(): Promise<void> {
    const { log, logger } = this.opts;
    const conn = await this.opts.connect();
    this.conn = conn;
    if (this.stopped) {
      conn.close();
      return;
    }
    await conn.send(FrameType.Hello, encodeHello(this.opts.hello));
    const frames = conn[Symbol.asyncIterator]();
    const first = await frames.next();
    if (first.done) throw new Error(`peer closed the connection: ${conn.closeReason ?? 'no reason given'}`);
    if (first.value.type !== FrameType.Hello) {
      conn.close(`expected hello, got frame type ${first.value.type}`, WireErrorCode.Protocol);
      throw new Error('peer did not answer hello');
    }
    let from: number;
    try {
      from = await this.opts.resume(decodeHello(first.value.payload).resumeFrom);
    } catch (e) {
      conn.close((e as Error).message, WireErrorCode.Protocol);
      throw e;
    }
    for (const f of (await this.opts.preamble?.()) ?? []) await conn.send(f.type, f.payload);
    this.acked = from - 1;
    this.sent = from - 1;
    this.inflight = [];
    this.inflightBytes = 0;
    this.inflightLogBytes = 0;
    this.readAheadLogBytes = 0;
    this.tailer = new LogTailer(log, from);
    this.freshness.acked(this.acked);
    this.streaming = conn;
    logger.info({ resumeFrom: from }, `${this.opts.what}: streaming`);
    const session = { ended: false };
    const receiving = this.receiveAcks(conn, frames);
    const sending = this.send(conn, this.tailer, session);
    void this.sendHeartbeat();
    try {
      await Promise.race([sending, receiving]);
    } finally {
      session.ended = true;
      if (this.streaming === conn) this.streaming = undefined;
      this.wakeWindow?.();
      conn.close();
      await Promise.allSettled([sending, receiving]);
    }
  }

  private async send(conn: FrameConnection, tailer: LogTailer, session: { ended: boolean }): Promise<void> {
    const live = () => !this.stopped && !session.ended;
    // Frames leave in sequence order; their compression (when tried) runs in parallel.
    const out = new FramePipeline((frame) => conn.sendRaw(frame), this.policy, this.compression);
    try {
      await this.sendRecords(conn, tailer, out, live);
    } finally {
      out.close();
      await tailer.close();
    }
  }

  private async sendRecords(
    conn: FrameConnection,
    tailer: LogTailer,
    out: FramePipeline,
    live: () => boolean,
  ): Promise<void> {
    const { log } = this.opts;
    const window = this.opts.windowBytes ?? 64 * 1024 * 1024;
    while (live()) {
      let records: LogRecord[];
      try {
        records = await tailer.read(READ_BATCH_BYTES);
      } catch (e) {
        // A corrupt record ahead: what was sent before it still reaches the receiver
        // (wait for its acks) before this session ends on the error, or every retry
        // would deliver only a little more than the last one.
        if (e instanceof LogCorruptError) await this.drainInflight(out, conn, live);
        throw e;
      }
      // Only durable records leave (a lost tail must never reach the replica): written
      // ones are made durable at once, sharing the sync in progress or the next one.
      this.askDurable();
      if (records.length === 0) {
        const durable = log.waitDurableBeyond(tailer.next - 1);
        const written = log.waitWrittenBeyond(Math.max(log.lastWritten, tailer.next - 1));
        let poll: NodeJS.Timeout | undefined;
        await Promise.race([durable, written, conn.closed, new Promise((r) => (poll = setTimeout(r, 1000)))]);
        clearTimeout(poll);
        if (conn.socket.destroyed) return;
        continue;
      }
      for (const r of records) this.readAheadLogBytes += recordLogBytes(r.payload.length);
      for (const r of records) {
        while (this.inflightBytes > window && live()) {
          await new Promise<void>((resolve) => {
            this.wakeWindow = resolve;
          });
        }
        if (!live()) return;
        // Taken before the push: the payload may share memory with the frame, which the
        // pipeline may move to a compression worker (r.payload then reads as empty here).
        const bytes = r.payload.length;
        const logBytes = recordLogBytes(bytes);
        const f = encodeRecordFrame(r);
        await out.push(f.type, f.payload, () => {
          this.sent = r.seq;
          // A heartbeat waiting for this record leaves right behind it, not at the next batch.
          void this.sendHeartbeat();
        });
        this.inflight.push({ seq: r.seq, bytes, logBytes, time: r.time });
        this.inflightBytes += bytes;
        this.inflightLogBytes += logBytes;
        this.readAheadLogBytes -= logBytes;
      }
      await this.sendHeartbeat();
    }
  }

  /**
   * Asks for a sync when records are written but not durable. makeDurable coalesces
   * (a request while a sync runs joins the next one), so asking on every pass costs
   * nothing more; a failure is the log owner's to report.
   */
  private askDurable(): void {
    const { log, makeDurable } = this.opts;
    if (makeDurable && log.lastWritten > log.durableSeq) void makeDurable().catch(() => undefined);
  }

  /** Waits until everything sent is acknowledged, or the session ends. */
  private async drainInflight(out: FramePipeline, conn: FrameConnection, live: () => boolean): Promise<void> {
    await out.idle();
    while (this.inflight.length > 0 && live() && !conn.socket.destroyed) {
      await Promise.race([
        new Promise<void>((resolve) => {
          this.wakeWindow = resolve;
        }),
        conn.closed,
      ]);
    }
  }

  /**
   * Runs onAck for the newest ack, one call at a time, off the ack loop: what it does
   * (trimming the log) must not hold back the acks that open the window. Acks that come
   * in while a call runs fold into one call for the newest.
   */
  private actOnAck(seq: number): void {
    this.ackToActOn = Math.max(this.ackToActOn, seq);
    if (this.actingOnAck) return;
    this.actingOnAck = (async () => {
      while (this.ackToActOn > this.actedOnAck) {
        const s = this.ackToActOn;
        this.actedOnAck = s;
        await this.opts.onAck(s).catch((e: Error) => {
          this.opts.logger.error({ err: e.message }, `${this.opts.what}: acting on an ack failed`);
        });
      }
      this.actingOnAck = undefined;
    })();
  }

  private async receiveAcks(conn: FrameConnection, frames: AsyncIterator<Frame>) {
    for (;;) {
      const n = await frames.next();
      if (n.done) break;
      const f = n.value;
      if (f.type === FrameType.Ack) {
        const { seq } = decodeAck(f.payload);
        if (seq > this.sent) {
          conn.close(`ack for seq ${seq}, beyond what was sent (${this.sent})`, WireErrorCode.Protocol);
          break;
        }
        if (seq <= this.acked) continue;
        this.acked = seq;
        let newestTime: number | undefined;
        while (this.inflight.length && this.inflight[0]!.seq <= seq) {
          const done = this.inflight.shift()!;
          this.inflightBytes -= done.bytes;
          this.inflightLogBytes -= done.logBytes;
          newestTime = Math.max(newestTime ?? 0, done.time);
        }
        this.freshness.acked(seq, newestTime);
        this.wakeWindow?.();
        this.wakeWindow = undefined;
        this.opts.onAckNow?.(seq);
        this.actOnAck(seq);
      } else if (f.type === FrameType.Error) {
        const e = decodeError(f.payload);
        throw new Error(`peer closed the stream: ${e.message} (error code ${e.code})`);
      } else if (f.type !== FrameType.Heartbeat) {
        const refused = this.opts.onFrame
          ? await this.opts.onFrame(f).then(
              () => undefined,
              (e: Error) => e.message,
            )
          : `unexpected frame type ${f.type} from the receiver`;
        if (refused !== undefined) {
          conn.close(refused, WireErrorCode.Protocol);
          break;
        }
      }
    }
    throw new Error(`connection closed${conn.closeReason ? `: ${conn.closeReason}` : ''}`);
  }
}
