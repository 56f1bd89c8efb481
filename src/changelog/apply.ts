// Applies a disk's change-log records to an image: the tool that shows any past
// state of a disk (the base must be the disk as it was just before `from`).
import { BlockStore } from '../storage/block-store.js';
import type { ChangeLog } from './change-log.js';
import { RecordType } from './record.js';

export interface ApplyResult {
  records: number;
  bytes: number;
  firstSeq?: number;
  lastSeq?: number;
}

export async function applyLog(
  log: ChangeLog,
  diskId: number,
  imagePath: string,
  range: { from?: number; to: number },
): Promise<ApplyResult> {
  const image = await BlockStore.open(imagePath);
  const result: ApplyResult = { records: 0, bytes: 0 };
  try {
    for await (const r of log.records(range.from ?? 1, range.to)) {
      if (r.disk !== diskId) continue;
      if (r.offset + r.length > image.size) {
        throw new Error(`record seq ${r.seq} writes beyond the end of ${imagePath} (${image.size} bytes)`);
      }
      if (r.type === RecordType.Write) await image.write(r.payload, r.offset);
      else if (r.type === RecordType.Zero) await image.zero(r.offset, r.length, (r.flags & 1) !== 0);
      else if (r.type === RecordType.Trim) await image.zero(r.offset, r.length, false);
      else continue;
      result.records++;
      result.bytes += r.length;
      result.firstSeq ??= r.seq;
      result.lastSeq = r.seq;
    }
    await image.sync();
  } finally {
    await image.close();
  }
  return result;
}
