// Reads a range of a disk and hashes its blocks, skipping holes without reading them
// (a sparse 100 GiB disk holding 1 GiB costs the time of 1 GiB).
import type { BlockStore } from '../storage/block-store.js';
import type { BlockHash } from '../wire/frame.js';
import { hashBlocks } from './block-hash.js';

/** Reads at most this much at a time. */
const READ_BYTES = 4 * 1024 * 1024;

/** Hashes of count blocks of blockSize from offset, clipped to the disk's end. */
export async function readBlockHashes(
  store: BlockStore,
  offset: number,
  blockSize: number,
  count: number,
): Promise<BlockHash[]> {
  const end = Math.min(offset + count * blockSize, store.size);
  const out: BlockHash[] = [];
  let pos = offset;
  while (pos < end) {
    const step = Math.min(end - pos, Math.max(blockSize, Math.floor(READ_BYTES / blockSize) * blockSize));
    if (store.isHole(pos, step)) {
      // The whole step is a hole: zero blocks without a read.
      for (let at = pos; at < pos + step; at += blockSize) out.push({ zero: true });
    } else {
      const buf = Buffer.allocUnsafe(step);
      await store.readInto(buf, pos);
      out.push(...hashBlocks(buf, blockSize));
    }
    pos += step;
  }
  return out;
}
