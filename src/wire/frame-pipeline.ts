// Sends a stream's frames in the order they are pushed while lz4 compresses several of them
// at once on libuv's threadpool (lz4-napi's async compress): the event loop never compresses,
// and each frame leaves as soon as it and every frame before it are ready. Whether a payload
// is tried is the stream's CompressionPolicy; when compression falls behind (more than
// `maxBacklogBytes` waiting for it), payloads go uncompressed so that it never caps throughput.
// Memory: at most `maxBytes` of payload (or `maxFrames` frames) between push() and the socket.
import { availableParallelism } from 'node:os';
import type { CompressionPolicy } from './compression-policy.js';
import { encodeFrame, FRAME_FLAG_LZ4, FRAME_HEADER_SIZE, type FrameType } from './frame.js';
import { lz4CompressPayload } from './lz4-payload.js';

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
  /** Payload bytes pushed and not yet handed to the socket before push() waits (default 8 MiB). */
  maxBytes?: number;
  /** Frames pushed and not yet handed to the socket before push() waits (default 1024). */
  maxFrames?: number;
  /** Payload bytes waiting for or in compression beyond which payloads are not tried (default 4 MiB). */
  maxBacklogBytes?: number;
  /** Compressions running at once (default: the number of CPUs). */
  concurrency?: number;
}

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
    this.maxBytes = o.maxBytes ?? 8 * MiB;
    this.maxFrames = o.maxFrames ?? 1024;
    this.maxBacklog = o.maxBacklogBytes ?? 4 * MiB;
    this.concurrency = Math.max(1, o.concurrency ?? availableParallelism());
  }

  /**
   * Queues a frame behind the ones pushed before; `onSent` runs once it is handed to the
   * socket. Waits while the pipeline is full. Throws the error that stopped the pipeline
   * (a failed send, or close()).
   */
  async push(type: FrameType, payload: Buffer, onSent?: () => void): Promise<void> {
    while (!this.failure && (this.queuedBytes >= this.maxBytes || this.queue.length >= this.maxFrames)) {
      await this.changed();
    }
    if (this.failure) throw this.failure;
    this.queue.push({ payloadBytes: payload.length, ready: this.prepare(type, payload), onSent });
    this.queuedBytes += payload.length;
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

  /** The frame's bytes: at once when not tried, later (from the threadpool) when tried. */
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
    return this.compress(payload).then(
      (c) => {
        this.backlogBytes -= payload.length;
        if (this.policy.record(payload.length, c.length)) return encodeFrame(type, c, FRAME_FLAG_LZ4);
        this.stats.notPaid++;
        return encodeFrame(type, payload);
      },
      () => {
        // lz4 failing to compress is not a reason to stop the stream: send it as it is.
        this.backlogBytes -= payload.length;
        this.stats.notPaid++;
        return encodeFrame(type, payload);
      },
    );
  }

  /** At most `concurrency` compressions at once, so file I/O keeps most of the threadpool. */
  private async compress(payload: Buffer): Promise<Buffer> {
    // A finished compression hands its slot straight to the next waiter.
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.slots.push(r));
    else this.running++;
    try {
      return await lz4CompressPayload(payload);
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
        await this.send(frame);
        this.queue.shift();
        this.queuedBytes -= e.payloadBytes;
        this.stats.frames++;
        this.stats.payloadBytes += e.payloadBytes;
        this.stats.wireBytes += frame.length - FRAME_HEADER_SIZE;
        if ((frame.readUInt16BE(6) & FRAME_FLAG_LZ4) !== 0) this.stats.compressed++;
        e.onSent?.();
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
