// Which bytes of the change log to write back and drop from the page cache, so that
// only its newest bytes stay cached. Pure: the change log runs the operations.
//
// Why: every log byte is new data in new page-cache pages, which nobody reads again
// once the shipper has read it. Left cached, the log evicts the protected server's own
// cache, and each append needs fresh pages from the kernel; in a virtual machine a page
// the guest has not touched lately costs a fault in the host too (measured: appending
// 4 GiB took 8.4 s of system time, 0.8 s when written-back pages were dropped 32 MiB
// behind the head; see docs/architecture.md, "The log and the page cache").

export interface CacheAdvice {
  path: string;
  /** Start writing back [offset, offset + length): the drop a window later then rarely waits. */
  writeback?: { offset: number; length: number };
  /** Write back (waiting) and drop [offset, offset + length) from the cache. */
  drop?: { offset: number; length: number };
}

interface Region {
  path: string;
  /** Log position (bytes appended since open) minus file offset: the same for every byte of the region. */
  base: number;
  /** Offsets in the file: end written so far, writeback started, dropped. */
  end: number;
  writeback: number;
  dropped: number;
}

const PAGE = 4096;

export class CacheWindow {
  private readonly regions: Region[] = [];
  private position = 0;
  private planned = 0;

  /**
   * @param windowBytes the newest bytes that stay cached (the shipper reads them soon)
   * @param stepBytes advice is given once per this many bytes appended
   */
  constructor(
    readonly windowBytes: number,
    readonly stepBytes: number,
  ) {}

  /** Bytes [from, to) of the file at path were written (appends, in order). */
  wrote(path: string, from: number, to: number): void {
    const last = this.regions.at(-1);
    if (last && last.path === path && last.end === from) last.end = to;
    else this.regions.push({ path, base: this.position - from, end: to, writeback: from, dropped: from });
    this.position += to - from;
  }

  /** The advice due now: none until stepBytes more were written since the last. */
  take(): CacheAdvice[] {
    if (this.position - this.planned < this.stepBytes) return [];
    this.planned = this.position;
    const dropBelow = this.position - this.windowBytes;
    const advice: CacheAdvice[] = [];
    for (const r of this.regions) {
      const a: CacheAdvice = { path: r.path };
      // Whole pages only: the next append may still write into the last, partial one.
      const writebackTo = Math.floor(r.end / PAGE) * PAGE;
      if (writebackTo > r.writeback) {
        a.writeback = { offset: r.writeback, length: writebackTo - r.writeback };
        r.writeback = writebackTo;
      }
      const dropTo = Math.min(r.end, dropBelow - r.base);
      if (dropTo > r.dropped) {
        a.drop = { offset: r.dropped, length: dropTo - r.dropped };
        r.dropped = dropTo;
      }
      if (a.writeback || a.drop) advice.push(a);
    }
    // A region wholly dropped is done, unless appends may still extend it (the last).
    for (let i = this.regions.length - 2; i >= 0; i--) {
      if (this.regions[i].dropped === this.regions[i].end) this.regions.splice(i, 1);
    }
    return advice;
  }
}
