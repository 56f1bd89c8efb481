// A read-only view of a protected machine's disks as they were at recovery point P
// (the state after every change with seq <= P and none after): the replica's bytes,
// overlaid for each byte with the before-image of the smallest seq > P that changed it.
import { ByteRanges } from './byte-ranges.js';
import type { UndoJournal } from './undo-journal.js';

/** What a view reads from; implemented by Replica. */
export interface ViewSource {
  readonly journal: UndoJournal;
  /** Size of a replica disk in bytes; throws for an unknown disk id. */
  diskSize(disk: number): number;
  /** Fills buf with the replica's current bytes at offset. */
  readReplica(disk: number, buf: Buffer, offset: number): Promise<void>;
  /** The view is closed: it no longer holds back pruning. */
  release(view: PointView): void;
}

export class PointView {
  /** When the view was opened (ms since the epoch): retention closes views held too long. */
  readonly openedAt = Date.now();
  private closed = false;
  /** Why the view was closed by someone other than its user (retention), if it was. */
  closeReason: string | undefined;
  private readonly closeListeners: ((reason: string | undefined) => void)[] = [];

  constructor(
    /** The recovery point: a seq. */
    readonly point: number,
    private readonly src: ViewSource,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Calls fn once the view closes (at once if it is closed), with the reason if one was given. */
  onClose(fn: (reason: string | undefined) => void): void {
    if (this.closed) fn(this.closeReason);
    else this.closeListeners.push(fn);
  }

  /** The bytes [offset, offset+length) of a disk as they were at the view's point. */
  async read(disk: number, offset: number, length: number): Promise<Buffer> {
    if (this.closed) {
      throw new Error(
        `view of point ${this.point} is closed${this.closeReason ? `: ${this.closeReason}` : ''}`,
      );
    }
    const size = this.src.diskSize(disk);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new Error(`invalid read range [${offset}, +${length}) of disk ${disk}`);
    }
    if (offset + length > size) {
      throw new Error(`read [${offset}, +${length}) is beyond the end of disk ${disk} (${size} bytes)`);
    }
    const buf = Buffer.alloc(length);
    // Replica first, overlays after: apply indexes a record before it writes the replica,
    // so every change this read could have seen is in the index by the time we look.
    // Changes indexed later are harmless: their before-images hold the same bytes.
    await this.src.readReplica(disk, buf, offset);
    const end = offset + length;
    const overlays = this.src.journal.overlapping(disk, offset, length, this.point);
    // Lowest seq first: for each byte the smallest seq > point wins, and a record whose
    // bytes are all settled by lower seqs is not read at all (so damage in a record this
    // point does not need never fails the read).
    const settled = new ByteRanges();
    for (let i = overlays.length - 1; i >= 0; i--) {
      const e = overlays[i]!;
      const from = Math.max(e.offset, offset);
      const to = Math.min(e.offset + e.length, end);
      const gaps = settled.gaps(from, to);
      if (gaps.length === 0) continue;
      const image = await this.src.journal.readBeforeImage(e);
      for (const [a, b] of gaps) {
        if (image === null) buf.fill(0, a - offset, b - offset);
        else image.copy(buf, a - offset, a - e.offset, b - e.offset);
      }
      settled.add(from, to);
    }
    // Closed meanwhile (retention): what it needed may have been pruned under this read.
    if (this.closed) {
      throw new Error(
        `view of point ${this.point} is closed${this.closeReason ? `: ${this.closeReason}` : ''}`,
      );
    }
    return buf;
  }

  /** Closes the view; it no longer holds back pruning. A reason says why it was closed for its user. */
  close(reason?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.src.release(this);
    for (const fn of this.closeListeners.splice(0)) fn(reason);
  }
}
