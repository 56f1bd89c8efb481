// The worker threads that compress for every stream of this process (one pool, as many
// threads as CPUs, started on first use; idle threads do not keep the process alive).
// A batch's payloads are transferred to a worker when they own their memory (no copy) and
// come back with their lz4 forms; until then the caller must not touch them.
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { CompressResult, CompressTask } from './lz4-worker.js';

let pool: Piscina<CompressTask, CompressResult> | undefined;

function thePool(): Piscina<CompressTask, CompressResult> {
  pool ??= new Piscina({
    filename: new URL('./lz4-worker.js', import.meta.url).href,
    minThreads: 1,
    maxThreads: Math.max(1, availableParallelism()),
    idleTimeout: 30_000,
  });
  return pool;
}

/** True when the buffer is the whole of its ArrayBuffer, so it can be moved to a worker. */
function ownsMemory(b: Buffer): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.byteLength > 0;
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
  const r = await thePool().run(
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
    payloads: payloads.map((p, i) => (transferred[i] ? buf(r.originals[i]!) : p)),
  };
}
