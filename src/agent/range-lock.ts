// Serialises overlapping writes to one disk so that the order of their change-log
// records is the order in which they reach the disk. Non-overlapping writes run
// concurrently. The number of entries is bounded by the clients' queue depth.
interface Held {
  start: number;
  end: number;
  done: Promise<void>;
}

export class RangeLock {
  private held: Held[] = [];

  async acquire(offset: number, length: number): Promise<() => void> {
    const start = offset;
    const end = offset + Math.max(length, 1);
    // Not waitFree(): from the last check to the push there must be no await, or two
    // overlapping acquires could both pass.
    for (let h = this.overlapping(offset, length); h; h = this.overlapping(offset, length)) await h.done;
    let release!: () => void;
    const entry: Held = { start, end, done: new Promise<void>((r) => (release = r)) };
    this.held.push(entry);
    return () => {
      // indexOf is -1 on a second call: splice(-1, 1) would drop another holder's entry.
      const i = this.held.indexOf(entry);
      if (i >= 0) this.held.splice(i, 1);
      release();
    };
  }

  /** Whether [offset, offset+length) overlaps no held range (a change may then run at once). */
  isFree(offset: number, length: number): boolean {
    return this.overlapping(offset, length) === undefined;
  }

  /** Waits until no held range overlaps [offset, offset+length) (a read of it sees every change). */
  async waitFree(offset: number, length: number): Promise<void> {
    for (let h = this.overlapping(offset, length); h; h = this.overlapping(offset, length)) await h.done;
  }

  /** A held range overlapping [offset, offset+length) (a zero-length range counts as one byte). */
  private overlapping(offset: number, length: number): Held | undefined {
    const end = offset + Math.max(length, 1);
    return this.held.find((h) => h.start < end && offset < h.end);
  }

  get size(): number {
    return this.held.length;
  }
}
