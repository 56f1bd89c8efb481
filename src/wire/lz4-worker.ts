// Runs in the compression pool's worker threads (compression-pool.ts): compresses a batch of
// payloads. Payloads that own their memory arrive transferred (not copied) and go back the
// same way; a payload's lz4 form comes back only when it pays, in a buffer of its own.
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { lz4Bound, lz4EncodeInto } from './lz4-payload.js';

export interface CompressTask {
  payloads: Uint8Array[];
  /** Which payloads were transferred here (and must go back). */
  transferred: boolean[];
  /** An lz4 form is returned when its size is at most this share of the payload's. */
  payRatio: number;
}

export interface CompressResult {
  /** Size of each payload's lz4 form (what the policy learns from). */
  sizes: number[];
  /** The lz4 form, when it pays. */
  wire: (Uint8Array | null)[];
  /** The transferred payloads, back; null for those that were copied here. */
  originals: (Uint8Array | null)[];
}

/** Reused for frames up to 4 MiB; larger ones get a buffer of their own (not kept). */
const SCRATCH_MAX = 4 * 1024 * 1024;
let scratch = Buffer.alloc(0);

function outFor(bytes: number): Buffer {
  const need = lz4Bound(bytes);
  if (need > lz4Bound(SCRATCH_MAX)) return Buffer.allocUnsafe(need);
  if (scratch.length < need) scratch = Buffer.allocUnsafe(lz4Bound(Math.max(bytes, 64 * 1024)));
  return scratch;
}

export default function compress(task: CompressTask) {
  const result: CompressResult = { sizes: [], wire: [], originals: [] };
  const transfer: ArrayBuffer[] = [];
  task.payloads.forEach((p, i) => {
    const payload = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    const out = outFor(payload.length);
    const n = lz4EncodeInto(payload, out);
    result.sizes.push(n);
    if (n <= payload.length * task.payRatio) {
      const wire = new Uint8Array(n);
      wire.set(out.subarray(0, n));
      result.wire.push(wire);
      transfer.push(wire.buffer);
    } else {
      result.wire.push(null);
    }
    if (task.transferred[i]) {
      result.originals.push(p);
      transfer.push(p.buffer as ArrayBuffer);
    } else {
      result.originals.push(null);
    }
  });
  return move({ [transferableSymbol]: transfer, [valueSymbol]: result });
}
