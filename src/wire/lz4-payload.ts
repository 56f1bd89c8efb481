// The lz4 form of a frame payload (frame flag bit 0, docs/protocol.md "Compression"):
// the uncompressed length as a u32 little-endian, then one LZ4 block (block format, not
// the LZ4 frame format). It is what lz4-napi's compress() produces. The receiver checks
// the stated length against its maximum before it allocates anything.
import { compress, uncompressSync } from 'lz4-napi';

/** Bytes before the LZ4 block: the uncompressed length, u32 little-endian. */
export const LZ4_SIZE_PREFIX = 4;

/** A payload in its lz4 form; runs on libuv's threadpool, never on the event loop. */
export function lz4CompressPayload(payload: Uint8Array): Promise<Buffer> {
  return compress(payload);
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
  let out: Buffer;
  try {
    out = uncompressSync(wire);
  } catch (e) {
    throw new Error(`lz4 payload is corrupt: ${(e as Error).message}`);
  }
  if (out.length !== size) {
    throw new Error(`lz4 payload decompressed to ${out.length} bytes, not the ${size} it claims`);
  }
  return out;
}
