// Sends a stream's frames in the order they are pushed while lz4 compresses several of them
// at once in worker threads (compression-pool.ts): the event loop never compresses, and each
// frame leaves as soon as it and every frame before it are ready. Payloads to compress that
// are pushed in the same event-loop turn go to a worker together (up to 1 MiB or 64 of them),
// so small writes do not pay a thread hand-over each. Whether a payload is tried is the
// stream's CompressionPolicy; when compression falls behind (more than `maxBacklogBytes`
// waiting for it), payloads go uncompressed so that it never caps throughput.
// Memory: at most `maxBytes` of payload (or `maxFrames` frames) between push() and the socket.
import { availableParallelism } from 'node:os';
import type { CompressionPolicy } from './compression-policy.js';
import { compressInWorker } from './compression-pool.js';
import { encodeFrame, FRAME_FLAG_LZ4, FRAME_HEADER_SIZE, type FrameType } from './frame.js';

/** What a stream's frames cost on the wire; cumulative over the stream's connections. */
export interface CompressionStats {
  /** Frames sent. */
  frames: number;
  /** Frames sent with their payload lz4-compressed. */
  compressed: number;
  /** Payload bytes before compression, of every frame sent. */
  payloadBytes: number;
  /** Payload bytes on the wire (compressed where it paid), of every frame sent. */
  wireBytes: number;
  /** Payloads not tried: under the policy's minimum, or while the stream compresses poorly. */
  skippedSmall: number;
  skippedPoor: number;
  /** Payloads not tried because compression was behind (it must not cap throughput). */
  skippedBusy: number;
  /** Payloads tried whose result did not pay (sent uncompressed). */
  notPaid: number;
}

export function newCompressionStats(): CompressionStats {
  return {
    frames: 0,
    compressed: 0,
    payloadBytes: 0,
    wireBytes: 0,
    skippedSmall: 0,
    skippedPoor: 0,
    skippedBusy: 0,
    notPaid: 0,
  };
}

export interface FramePipelineOptions {
  /** Payload bytes pushed and not yet handed to the socket before push() waits (default 4 MiB). */
  maxBytes?: number;
  /** Frames pushed and not yet handed to the socket before push() waits (default 1024). */
  maxFrames?: number;
  /** Payload bytes waiting for or in compression beyond which payloads are not tried (default 4 MiB). */
  maxBacklogBytes?: number;
  /** Batches in the workers at once (default: the number of CPUs). */
  concurrency?: number;
}

interface Waiting {
  type: FrameType;
  payload: Buffer;
  resolve: (frame: Buffer) => void;
  reject: (e: Error) => void;
}

/** A batch for one worker task: at most this many payload bytes or payloads. */
const BATCH_BYTES = 1024 * 1024;
const BATCH_FRAMES = 64;

interface Entry {
  payloadBytes: number;
  ready: Buffer | Promise<Buffer>;
  onSent: (() => void) | undefined;
}

const MiB = 1024 * 1024;

export class FramePipeline {
  private readonly queue: Entry[] = [];
  private queuedBytes = 0;
  private backlogBytes = 0;
  private running = 0;
  private readonly slots: (() => void)[] = [];
  private batch: Waiting[] = [];
  private batchBytes = 0;
  private batchTimer: NodeJS.Immediate | undefined;
  private pumping = false;
  private failure: Error | undefined;
  private wakers: (() => void)[] = [];
  private readonly maxBytes: number;
  private readonly maxFrames: number;
  private readonly maxBacklog: number;
  private readonly concurrency: number;

  constructor(
    private readonly send: (frame: Buffer) => Promise<void>,
    private readonly policy: CompressionPolicy,
    readonly stats: CompressionStats = newCompressionStats(),
    o: FramePipelineOptions = {},
  ) {
    this.maxBytes = o.maxBytes ?? 4 * MiB;
    this.maxFrames = o.maxFrames ?? 1024;
    this.maxBacklog = o.maxBacklogBytes ?? 4 * MiB;
    this.concurrency = Math.max(1, o.concurrency ?? availableParallelism());
  }

  /**
   * Queues a frame behind the ones pushed before; `onSent` runs as it is handed to the
   * socket (before the socket's buffer drains). Waits while the pipeline is full. Throws the error that stopped the pipeline
   * (a failed send, or close()). The payload is the pipeline's from then on: it may be moved
   * to a worker thread (and so be empty here) while it compresses.
   */
  async push(type: FrameType, payload: Buffer, onSent?: () => void): Promise<void> {
    while (!this.failure && (this.queuedBytes >= this.maxBytes || this.queue.length >= this.maxFrames)) {
      await this.changed();
    }
    if (this.failure) throw this.failure;
    const bytes = payload.length; // before prepare(): the payload may move to a worker at once
    const ready = this.prepare(type, payload);
    // The pump awaits it in turn; a rejection nobody reaches (after an earlier failure) is not unhandled.
    if (ready instanceof Promise) ready.catch(() => undefined);
    this.queue.push({ payloadBytes: bytes, ready, onSent });
    this.queuedBytes += bytes;
    if (!this.pumping) void this.pump();
  }

  /** Resolves when every frame pushed has been handed to the socket (or the pipeline stopped). */
  async idle(): Promise<void> {
    while (!this.failure && this.queue.length > 0) await this.changed();
  }

  /** Stops sending: frames still queued are dropped (their compression finishes unobserved). */
  close(reason = 'frame pipeline closed'): void {
    this.failure ??= new Error(reason);
    this.notify();
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  private notify(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** The frame's bytes: at once when not tried, later (from a worker thread) when tried. */
  private prepare(type: FrameType, payload: Buffer): Buffer | Promise<Buffer> {
    const decision = this.policy.decide(payload.length);
    if (decision === 'try' && this.backlogBytes > 0 && this.backlogBytes + payload.length > this.maxBacklog) {
      this.stats.skippedBusy++;
      return encodeFrame(type, payload);
    }
    if (decision === 'small') this.stats.skippedSmall++;
    if (decision === 'poor') this.stats.skippedPoor++;
    if (decision !== 'try') return encodeFrame(type, payload);
    this.backlogBytes += payload.length;
    return new Promise<Buffer>((resolve, reject) => {
      this.batch.push({ type, payload, resolve, reject });
      this.batchBytes += payload.length;
      if (this.batchBytes >= BATCH_BYTES || this.batch.length >= BATCH_FRAMES) this.flushBatch();
      else this.batchTimer ??= setImmediate(() => this.flushBatch());
    });
  }

  /** Sends the payloads gathered so far to a worker, at most `concurrency` batches at once. */
  private flushBatch(): void {
    if (this.batchTimer) clearImmediate(this.batchTimer);
    this.batchTimer = undefined;
    const batch = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (batch.length === 0) return;
    void this.compressBatch(batch).finally(() => {
      this.backlogBytes -= bytes;
    });
  }

  private async compressBatch(batch: Waiting[]): Promise<void> {
    // A finished batch hands its slot straight to the next waiter.
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.slots.push(r));
    else this.running++;
    try {
      const r = await compressInWorker(
        batch.map((w) => w.payload),
        this.policy.payRatio,
      );
      batch.forEach((w, i) => {
        const payload = r.payloads[i]!;
        const wire = r.wire[i];
        if (this.policy.record(payload.length, r.sizes[i]!) && wire) {
          w.resolve(encodeFrame(w.type, wire, FRAME_FLAG_LZ4));
        } else {
          this.stats.notPaid++;
          w.resolve(encodeFrame(w.type, payload));
        }
      });
    } catch (e) {
      // The payloads went to the worker and are lost with it: the stream must end and resume.
      const err = new Error(`lz4 compression failed: ${(e as Error).message}`);
      for (const w of batch) w.reject(err);
    } finally {
      const next = this.slots.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** Hands frames to the socket in push order, each when it is ready. */
  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.failure) {
        const e = this.queue[0]!;
        const frame = await e.ready;
        if (this.failure) break;
        // The frame is in the socket once send() is called (it waits only for the drain): the
        // receiver may acknowledge it before the drain, so it counts as sent from here.
        const sending = this.send(frame);
        e.onSent?.();
        await sending;
        this.queue.shift();
        this.queuedBytes -= e.payloadBytes;
        this.stats.frames++;
        this.stats.payloadBytes += e.payloadBytes;
        this.stats.wireBytes += frame.length - FRAME_HEADER_SIZE;
        if ((frame.readUInt16BE(6) & FRAME_FLAG_LZ4) !== 0) this.stats.compressed++;
        this.notify();
      }
    } catch (err) {
      this.failure ??= err as Error;
    } finally {
      this.pumping = false;
      this.notify();
    }
  }
}
