// The earlier changes of a batch that overlap a range: what a before-image must lay over
// the replica's bytes (replica.ts). A batch of small writes holds thousands of changes, so
// they are found through buckets of 1 MiB of disk instead of a scan of the whole batch.
import type { Change } from './replica.js';

const BUCKET = 1024 * 1024;

export class BatchOverlaps {
  /** disk -> bucket number -> the changes added so far that touch it, in the order added. */
  private readonly buckets = new Map<number, Map<number, Change[]>>();

  /** Adds the batch's next change (a batch is in seq order); later lookups see it. */
  add(c: Change): void {
    if (c.length === 0) return;
    let byBucket = this.buckets.get(c.disk);
    if (!byBucket) {
      byBucket = new Map();
      this.buckets.set(c.disk, byBucket);
    }
    for (let b = bucketOf(c.offset); b <= bucketOf(c.offset + c.length - 1); b++) {
      const list = byBucket.get(b);
      if (list) list.push(c);
      else byBucket.set(b, [c]);
    }
  }

  /** The changes added so far that touch [offset, offset + length) of disk, in the order added. */
  overlapping(disk: number, offset: number, length: number): Change[] {
    const byBucket = this.buckets.get(disk);
    if (!byBucket || length === 0) return [];
    const end = offset + length;
    const overlaps = (c: Change) => c.offset < end && c.offset + c.length > offset;
    const first = bucketOf(offset);
    const last = bucketOf(end - 1);
    // One bucket (every range of up to 1 MiB that does not cross a boundary): already in order.
    if (first === last) return (byBucket.get(first) ?? []).filter(overlaps);
    const found = new Set<Change>();
    for (let b = first; b <= last; b++) {
      for (const c of byBucket.get(b) ?? []) if (overlaps(c)) found.add(c);
    }
    return [...found].sort((x, y) => x.seq - y.seq);
  }
}

function bucketOf(offset: number): number {
  return Math.floor(offset / BUCKET);
}
