// Block hashes for resync: both sides cut a disk range into fixed-size blocks and describe
// each as "zeroes" or "data with its xxh64"; the agent compares its blocks with the
// replica's and sends only those that differ (zero blocks as write-zeroes, without data).
// Pure functions; the I/O is in the agent's resync and the master target's hash service.
import { xxh64 } from '@node-rs/xxhash';
import { isAllZero } from '../util/buffers.js';
import type { BlockHash } from '../wire/frame.js';

/** Blocks compared by a resync (the 64 KiB). */
export const RESYNC_BLOCK = 64 * 1024;

export function hashBlock(buf: Buffer): BlockHash {
  return isAllZero(buf) ? { zero: true } : { zero: false, hash: xxh64(buf) };
}

/** Hashes of consecutive blocks of buf (the last one may be shorter). */
export function hashBlocks(buf: Buffer, blockSize: number): BlockHash[] {
  const out: BlockHash[] = [];
  for (let at = 0; at < buf.length; at += blockSize) out.push(hashBlock(buf.subarray(at, at + blockSize)));
  return out;
}

export function sameBlock(a: BlockHash, b: BlockHash): boolean {
  if (a.zero || b.zero) return a.zero === b.zero;
  return a.hash === b.hash;
}

/** A change the resync must send to make the replica's range equal the source's. */
export interface ResyncChange {
  kind: 'write' | 'zero';
  offset: number;
  length: number;
}

/**
 * Compares the source's blocks of [offset, offset + local.length * blockSize) (clipped to
 * diskSize) with the replica's and returns the changes to send: runs of differing data
 * blocks as writes of at most maxWrite bytes, runs of blocks that are zero at the source
 * but not at the replica as write-zeroes. Blocks the replica lacks an answer for differ.
 */
export function planResync(
  offset: number,
  blockSize: number,
  diskSize: number,
  local: BlockHash[],
  remote: BlockHash[],
  maxWrite = 1024 * 1024,
): ResyncChange[] {
  const out: ResyncChange[] = [];
  for (let i = 0; i < local.length; i++) {
    const l = local[i]!;
    const r = remote[i];
    if (r && sameBlock(l, r)) continue;
    const start = offset + i * blockSize;
    const length = Math.min(blockSize, diskSize - start);
    if (length <= 0) break;
    const kind = l.zero ? 'zero' : 'write';
    const last = out.at(-1);
    if (
      last &&
      last.kind === kind &&
      last.offset + last.length === start &&
      (kind === 'zero' || last.length + length <= maxWrite)
    ) {
      last.length += length;
    } else out.push({ kind, offset: start, length });
  }
  return out;
}
