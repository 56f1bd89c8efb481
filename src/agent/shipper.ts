// The agent's shipper: streams the durable part of the change log to the process
// server over mutual TLS, pipelined within a window of unacknowledged bytes, resumes
// after any disconnect from what the process server says it has, and trims the log
// once changes are durable there. Protocol: docs/protocol.md ("The agent stream").
import type { Logger } from 'pino';
import { LogTailer } from '../changelog/log-tailer.js';
import { type LogRecord, parseMarkerPayload, RecordType } from '../changelog/record.js';
import type { TlsMaterial } from '../pki/ca.js';
import {
  decodeAck,
  decodeError,
  decodeHello,
  encodeChange,
  encodeHello,
  encodeMarker,
  FrameType,
  WireErrorCode,
} from '../wire/frame.js';
import { connectFrames, type FrameConnection } from '../wire/tls-endpoint.js';
import type { Agent } from './agent.js';

export interface ShipperOptions {
  agent: Agent;
  host: string;
  port: number;
  material: TlsMaterial;
  /** This agent's component name (its certificate's). */
  name: string;
  logger: Logger;
  /** Bytes sent and not yet acknowledged before the shipper waits (default 64 MiB). */
  windowBytes?: number;
  /** How long unsynced log records may wait before the shipper makes them durable (default 50 ms). */
  syncAfterMs?: number;
  /** First and longest wait before reconnecting (default 200 ms, doubling to 5 s). */
  retryMs?: number;
  maxRetryMs?: number;
}

export interface ShipperStatus {
  connected: boolean;
  /** Every change with seq <= this is durable at the process server. */
  ackedThrough: number;
  sentThrough: number;
  /** Log bytes not yet acknowledged (payload bytes of records after ackedThrough that are written). */
  unackedBytes: number;
  lastError?: string;
}

const READ_BATCH_BYTES = 4 * 1024 * 1024;

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

export class Shipper {
  private stopped = false;
  private conn: FrameConnection | undefined;
  private loop: Promise<void> | undefined;
  private acked = 0;
  private sent = 0;
  private lastError: string | undefined;
  /** Records sent and not yet acknowledged: seq and payload bytes, in order. */
  private inflight: { seq: number; bytes: number }[] = [];
  private inflightBytes = 0;
  private wakeWindow: (() => void) | undefined;

  constructor(private readonly opts: ShipperOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.conn?.close();
    this.wakeWindow?.();
    await this.loop;
  }

  status(): ShipperStatus {
    return {
      connected: this.conn !== undefined,
      ackedThrough: this.acked,
      sentThrough: this.sent,
      unackedBytes: this.inflightBytes,
      lastError: this.lastError,
    };
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
        this.opts.logger.warn({ err: this.lastError }, 'shipper: connection to the process server lost');
      }
      this.conn = undefined;
      if (this.stopped) break;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, max);
    }
  }

  /** One connection: hello both ways, then send and receive acks until it ends. */
  private async session(): Promise<void> {
    const { agent, logger } = this.opts;
    const conn = await connectFrames({
      host: this.opts.host,
      port: this.opts.port,
      material: this.opts.material,
      logger,
      acceptRoles: ['process-server'],
    });
    this.conn = conn;
    if (this.stopped) {
      conn.close();
      return;
    }
    await conn.send(
      FrameType.Hello,
      encodeHello({ resumeFrom: 0, role: 'agent', name: this.opts.name, machineId: agent.machineId }),
    );
    const frames = conn[Symbol.asyncIterator]();
    const first = await frames.next();
    if (first.done)
      throw new Error(`process server closed the connection: ${conn.closeReason ?? 'no reason given'}`);
    if (first.value.type !== FrameType.Hello) {
      conn.close(`expected hello, got frame type ${first.value.type}`, WireErrorCode.Protocol);
      throw new Error('process server did not answer hello');
    }
    const theirs = decodeHello(first.value.payload);
    const log = agent.log;
    let from = theirs.resumeFrom === 0 ? log.trimmedThrough + 1 : theirs.resumeFrom;
    if (from > log.nextSeq) {
      conn.close(
        `process server holds up to seq ${from - 1}, beyond this agent's log`,
        WireErrorCode.Protocol,
      );
      throw new Error(
        `process server wants seq ${from} but this agent's log ends at ${log.nextSeq - 1}: ` +
          'is it the same machine (was the agent data dir replaced)?',
      );
    }
    if (from <= log.trimmedThrough) {
      // Changes the replica never got are gone from the log: only a resync can bring them.
      logger.error(
        { wanted: from, trimmedThrough: log.trimmedThrough },
        'shipper: the process server lacks changes this log no longer holds: every disk is marked resync required',
      );
      await agent.markAllResyncRequired();
      from = log.trimmedThrough + 1;
    }
    this.acked = from - 1;
    this.sent = from - 1;
    this.inflight = [];
    this.inflightBytes = 0;
    logger.info({ resumeFrom: from }, 'shipper: streaming to the process server');
    const session = { ended: false };
    const receiving = this.receiveAcks(conn, frames);
    const sending = this.send(conn, new LogTailer(log, from), session);
    try {
      await Promise.race([sending, receiving]);
    } finally {
      session.ended = true;
      this.wakeWindow?.();
      conn.close();
      await Promise.allSettled([sending, receiving]);
    }
  }

  private async send(conn: FrameConnection, tailer: LogTailer, session: { ended: boolean }): Promise<void> {
    const { agent } = this.opts;
    const window = this.opts.windowBytes ?? 64 * 1024 * 1024;
    const syncAfter = this.opts.syncAfterMs ?? 50;
    const live = () => !this.stopped && !session.ended;
    while (live()) {
      const records = await tailer.read(READ_BATCH_BYTES);
      if (records.length === 0) {
        // Nothing durable to send: make what is written durable soon, or wait for more.
        const log = agent.log;
        const waitMore = log.waitDurableBeyond(tailer.next - 1);
        const timer =
          log.lastWritten >= tailer.next
            ? setTimeout(() => void agent.syncLog().catch(() => undefined), syncAfter)
            : undefined;
        let poll: NodeJS.Timeout | undefined;
        await Promise.race([waitMore, conn.closed, new Promise((r) => (poll = setTimeout(r, 1000)))]);
        clearTimeout(timer);
        clearTimeout(poll);
        if (conn.socket.destroyed) return;
        continue;
      }
      for (const r of records) {
        while (this.inflightBytes > window && live()) {
          await new Promise<void>((resolve) => {
            this.wakeWindow = resolve;
          });
        }
        if (!live()) return;
        const f = encodeRecordFrame(r);
        await conn.send(f.type, f.payload);
        this.sent = r.seq;
        this.inflight.push({ seq: r.seq, bytes: r.payload.length });
        this.inflightBytes += r.payload.length;
      }
    }
  }

  private async receiveAcks(
    conn: FrameConnection,
    frames: AsyncIterator<{ type: FrameType; payload: Buffer }>,
  ) {
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
        while (this.inflight.length && this.inflight[0]!.seq <= seq)
          this.inflightBytes -= this.inflight.shift()!.bytes;
        this.wakeWindow?.();
        this.wakeWindow = undefined;
        await this.opts.agent.trimLog(seq).catch((e: Error) => {
          this.opts.logger.error({ err: e.message }, 'shipper: trimming the change log failed');
        });
      } else if (f.type === FrameType.Error) {
        const e = decodeError(f.payload);
        throw new Error(`process server closed the stream: ${e.message} (error code ${e.code})`);
      } else if (f.type !== FrameType.Heartbeat) {
        conn.close(`unexpected frame type ${f.type} from the process server`, WireErrorCode.Protocol);
        break;
      }
    }
    throw new Error(`connection closed${conn.closeReason ? `: ${conn.closeReason}` : ''}`);
  }
}
