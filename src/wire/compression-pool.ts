// The worker threads that compress for every stream of this process (one pool, as many
// threads as CPUs, started on first use; idle threads do not keep the process alive).
// A batch's payloads are transferred to a worker when they own their memory (no copy) and
// come back with their lz4 forms; until then the caller must not touch them.
import { availableParallelism } from 'node:os';
import type { Piscina } from 'piscina';
import { headroom, moveHeadroom } from '../util/headroom.js';
import type { CompressResult, CompressTask } from './lz4-worker.js';

let pool: Promise<Piscina<CompressTask, CompressResult>> | undefined;

/** Loaded on first use: a process that never compresses (an agent) never pays for piscina. */
function thePool(): Promise<Piscina<CompressTask, CompressResult>> {
  pool ??= import('piscina').then(
    ({ Piscina }) =>
      new Piscina<CompressTask, CompressResult>({
        filename: new URL('./lz4-worker.js', import.meta.url).href,
        minThreads: 1,
        maxThreads: Math.max(1, availableParallelism()),
        idleTimeout: 30_000,
      }),
  );
  return pool;
}

/**
 * True when nothing else uses the buffer's ArrayBuffer, so it can be moved to a worker: it
 * is the whole of it, or a view whose only neighbour is its own header room (headroom.ts).
 */
function ownsMemory(b: Buffer): boolean {
  if (b.byteLength === 0) return false;
  return (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) || headroom(b) > 0;
}

/** A payload back from a worker (a new view of the same memory), keeping its header room. */
function returned(sent: Buffer, back: Buffer): Buffer {
  moveHeadroom(sent, back);
  return back;
}

export interface CompressedBatch {
  /** Per payload: its lz4 form's size, the form itself when it pays, and the payload again. */
  sizes: number[];
  wire: (Buffer | null)[];
  payloads: Buffer[];
}

/** Compresses payloads in a worker thread; the lz4 form is returned where it is at most payRatio. */
export async function compressInWorker(payloads: Buffer[], payRatio: number): Promise<CompressedBatch> {
  const transferred = payloads.map(ownsMemory);
  const transferList = payloads.filter((_, i) => transferred[i]).map((b) => b.buffer as ArrayBuffer);
  const r = await (await thePool()).run(
    {
      payloads: payloads.map((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)),
      transferred,
      payRatio,
    },
    { transferList },
  );
  const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  return {
    sizes: r.sizes,
    wire: r.wire.map((w) => (w ? buf(w) : null)),
    payloads: payloads.map((p, i) => (transferred[i] ? returned(p, buf(r.originals[i]!)) : p)),
  };
}
