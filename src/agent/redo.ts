// Redo of the change-log tail onto the disks after a process crash.
import type { ChangeLog } from '../changelog/change-log.js';
import { RecordType } from '../changelog/record.js';
import type { CapturedDisk } from './agent.js';

/**
 * Replays records with seq >= from in order, dirty ranges included: a change the log
 * could not take waits, before it touches the disk, until the settled watermarks cover
 * every change logged before it (Agent.settleLoggedBeforeUnlogged, and the durable
 * watermark a FLUSH records after syncing the disks for unlogged changes), and the
 * redo starts after them (recoverFromCrash). So every
 * record redone here is newer than any unlogged write on its range, and skipping one
 * would lose it (an acknowledged write whose disk write the crash cut short).
 */
export async function redoLogTail(
  log: ChangeLog,
  from: number,
  disks: CapturedDisk[],
  /** Names of every disk the agent ever captured, by id (for the error message). */
  names: Map<number, string>,
): Promise<number> {
  const byId = new Map(disks.map((d) => [d.record.id, d]));
  let n = 0;
  for await (const r of log.records(from)) {
    if (r.type === RecordType.Flush || r.type === RecordType.Bookmark) continue;
    const disk = byId.get(r.disk);
    if (!disk) {
      // Skipping would lose the change for good (the watermark moves past it).
      throw new Error(
        `the change log holds changes not yet applied to disk '${names.get(r.disk) ?? `id ${r.disk}`}' ` +
          `(from seq ${r.seq}), which was not given: start the agent with every disk it captured before the crash`,
      );
    }
    if (r.type === RecordType.Write) await disk.store.write(r.payload, r.offset);
    else if (r.type === RecordType.Zero) await disk.store.zero(r.offset, r.length, (r.flags & 1) !== 0);
    else await disk.store.trim(r.offset, r.length);
    n++;
  }
  for (const d of disks) await d.store.sync();
  return n;
}
