// The lz4 form of a frame payload (frame flag bit 0, docs/protocol.md "Compression"):
// the uncompressed length as a u32 little-endian, then one LZ4 block (block format, not
// the LZ4 frame format). Pure and synchronous: the process server runs lz4Encode in worker
// threads (lz4-worker.ts); receivers decode on their event loop (LZ4 decodes at GB/s).
//
// The codec is the reference C LZ4 through the `lz4` package, writing into buffers we
// allocate: lz4-napi, tried first, returns each result in native memory that V8 does not
// count, and a process server compressing 1 MiB frames grew by 40-100 MiB of RSS with it
// (docs/architecture.md, "Compression on the forwarding hop").
import { createRequire } from 'node:module';

interface Lz4Binding {
  /** Compresses input into output; returns the block's size (0 if output is too small). */
  encodeBlock(input: Buffer, output: Buffer): number;
  /** LZ4_decompress_safe: returns the bytes written to output, or a negative error position. */
  decodeBlock(input: Buffer, output: Buffer): number;
  encodeBound(bytes: number): number;
}

const lz4 = createRequire(import.meta.url)('lz4') as Lz4Binding;

/** Bytes before the LZ4 block: the uncompressed length, u32 little-endian. */
export const LZ4_SIZE_PREFIX = 4;

/** Bytes an lz4 form of `bytes` bytes may need. */
export function lz4Bound(bytes: number): number {
  return LZ4_SIZE_PREFIX + lz4.encodeBound(bytes);
}

/**
 * Writes the lz4 form of `payload` into `out` (at least lz4Bound(payload.length) bytes) and
 * returns its length.
 */
export function lz4EncodeInto(payload: Buffer, out: Buffer): number {
  out.writeUInt32LE(payload.length, 0);
  const n = lz4.encodeBlock(payload, out.subarray(LZ4_SIZE_PREFIX));
  if (n <= 0) throw new Error(`lz4 could not compress ${payload.length} bytes into ${out.length - 4}`);
  return LZ4_SIZE_PREFIX + n;
}

/** The lz4 form of a payload, in a buffer of its own. */
export function lz4Encode(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(lz4Bound(payload.length));
  return Buffer.from(out.subarray(0, lz4EncodeInto(payload, out)));
}

/**
 * The payload an lz4 form stands for. Throws an Error naming the problem: too short, a
 * stated length over `maxBytes` (nothing is allocated then), a corrupt block, or a block
 * that does not decompress to exactly the stated length.
 */
export function lz4DecompressPayload(wire: Buffer, maxBytes: number): Buffer {
  if (wire.length < LZ4_SIZE_PREFIX) {
    throw new Error(`lz4 payload is ${wire.length} bytes: too short for its uncompressed length`);
  }
  const size = wire.readUInt32LE(0);
  if (size > maxBytes) {
    throw new Error(`lz4 payload claims ${size} uncompressed bytes, more than the maximum ${maxBytes}`);
  }
  const block = wire.subarray(LZ4_SIZE_PREFIX);
  if (block.length === 0) throw new Error('lz4 payload is corrupt: the block is empty');
  const out = Buffer.allocUnsafe(size);
  const n = lz4.decodeBlock(block, out);
  if (n < 0) {
    throw new Error(`lz4 payload is corrupt: invalid LZ4 block at byte ${-n - 1} of ${block.length}`);
  }
  if (n !== size) {
    throw new Error(`lz4 payload decompressed to ${n} bytes, not the ${size} it claims`);
  }
  return out;
}
