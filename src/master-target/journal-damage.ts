// Damage found in the undo journal: records whose bytes fail their checksum. They are
// never used; a view of a point that needs one is refused with an error naming the file,
// offset and seq, while views that do not need it keep working. Two kinds:
// - a record whose header is intact but whose payload fails its CRC: its seq and range
//   are known, so only points that read through it are refused;
// - bytes that cannot be parsed at all (a bad header): records with seqs in
//   (afterSeq, throughSeq] may be missing from the index, so every point before
//   throughSeq is refused.
import type { JournalEntry } from './undo-journal.js';

export interface JournalDamage {
  path: string;
  offset: number;
  reason: string;
  /** The damaged record, when its header could be read. */
  entry?: JournalEntry;
  /** Seqs in (afterSeq, throughSeq] may be damaged or missing. */
  afterSeq: number;
  throughSeq: number;
}

export function describeDamage(d: JournalDamage): string {
  const where = `${d.path} at offset ${d.offset}: ${d.reason}`;
  if (d.entry) return `undo journal corrupt: ${where} (seq ${d.entry.seq})`;
  return `undo journal corrupt: ${where} (records after seq ${d.afterSeq} through seq ${d.throughSeq} cannot be read)`;
}

/** What a lookup of the records overlapping a range gives (UndoJournal.overlapping). */
export type Overlapping = (disk: number, offset: number, length: number, afterSeq: number) => JournalEntry[];

/**
 * Why a view of point P cannot be exact, or undefined. A view at P uses, for each byte,
 * the before-image of the smallest seq > P that changed it: a damaged record matters
 * only if P is below it and some byte of its range is not changed by an earlier record
 * after P.
 */
export function damageFor(
  point: number,
  damage: readonly JournalDamage[],
  overlapping: Overlapping,
): string | undefined {
  for (const d of damage) {
    if (point >= d.throughSeq) continue;
    const e = d.entry;
    if (e && (e.length === 0 || e.disk === 0)) continue; // a marker or an empty change: no bytes
    if (e && coveredBefore(e, point, overlapping)) continue;
    return `recovery point ${point} needs ${e ? `the before-image of seq ${e.seq}` : 'undo-journal records'} that cannot be used: ${describeDamage(d)}`;
  }
  return undefined;
}

/** Whether every byte of e's range is changed by a record with point < seq < e.seq. */
function coveredBefore(e: JournalEntry, point: number, overlapping: Overlapping): boolean {
  const earlier = overlapping(e.disk, e.offset, e.length, point)
    .filter((x) => x.seq < e.seq)
    .map((x) => [Math.max(x.offset, e.offset), Math.min(x.offset + x.length, e.offset + e.length)] as const)
    .sort((a, b) => a[0] - b[0]);
  let pos = e.offset;
  for (const [from, to] of earlier) {
    if (from > pos) return false;
    pos = Math.max(pos, to);
  }
  return pos >= e.offset + e.length;
}
