// Rolling a replica back in place to recovery point P (a failover): for each byte
// changed after P, the before-image of the smallest seq > P holds its value at P, so
// those before-images are written over the replica, lowest seq first, each only where
// no lower seq has settled the byte. The cost is the journal after P, never the disk size.
// Writing absolute bytes is idempotent: after a crash the same rollback is simply redone.
import type { BlockStore } from '../storage/block-store.js';
import { ByteRanges } from './byte-ranges.js';
import { JournalRecordType } from './journal-record.js';
import type { UndoJournal } from './undo-journal.js';

export interface RollbackResult {
  /** Bytes of the replica disks written (or punched to zeroes): the distinct bytes changed after P. */
  bytesWritten: number;
  /** Before-image records read (a record whose bytes lower seqs settled is not read). */
  recordsRead: number;
  /** Before-image records after P, and the disk bytes they cover (overlaps counted each time). */
  recordsAfter: number;
  journalBytesAfter: number;
  /** Disks written (to be synced). */
  disks: number[];
}

export async function rollBack(
  journal: UndoJournal,
  store: (disk: number) => BlockStore,
  point: number,
): Promise<RollbackResult> {
  const out: RollbackResult = {
    bytesWritten: 0,
    recordsRead: 0,
    recordsAfter: 0,
    journalBytesAfter: 0,
    disks: [],
  };
  const settled = new Map<number, ByteRanges>();
  // In seq order: the first record to reach a byte is the one whose before-image is P's.
  for (const e of journal.entriesAfter(point)) {
    if (e.type !== JournalRecordType.BeforeImage || e.length === 0) continue;
    out.recordsAfter++;
    out.journalBytesAfter += e.length;
    let ranges = settled.get(e.disk);
    if (!ranges) {
      ranges = new ByteRanges();
      settled.set(e.disk, ranges);
      out.disks.push(e.disk);
    }
    const gaps = ranges.gaps(e.offset, e.offset + e.length);
    if (gaps.length === 0) continue;
    const image = await journal.readBeforeImage(e);
    out.recordsRead++;
    const s = store(e.disk);
    for (const [a, b] of gaps) {
      // A zero before-image becomes a hole again (the replica stays sparse).
      if (image === null) await s.zero(a, b - a, false);
      else await s.write(image.subarray(a - e.offset, b - e.offset), a);
      out.bytesWritten += b - a;
    }
    ranges.add(e.offset, e.offset + e.length);
  }
  return out;
}
