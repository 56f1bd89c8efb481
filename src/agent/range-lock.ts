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
    for (;;) {
      const overlap = this.held.find((h) => h.start < end && start < h.end);
      if (!overlap) break;
      await overlap.done;
    }
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
    const end = offset + Math.max(length, 1);
    for (const h of this.held) if (h.start < end && offset < h.end) return false;
    return true;
  }

  /** Waits until no held range overlaps [offset, offset+length) (a read of it sees every change). */
  async waitFree(offset: number, length: number): Promise<void> {
    const end = offset + Math.max(length, 1);
    for (;;) {
      const overlap = this.held.find((h) => h.start < end && offset < h.end);
      if (!overlap) return;
      await overlap.done;
    }
  }

  get size(): number {
    return this.held.length;
  }
}
