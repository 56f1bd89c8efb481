// What the NBD server serves: anything that implements this (an agent's captured
// disk, a plain file, later a point-in-time view).
import type { Extent } from '../storage/block-store.js';

export interface NbdExport {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  /** Write-zeroes can be done faster than writing zeroes (NBD_CMD_FLAG_FAST_ZERO). */
  readonly fastZero: boolean;
  /** Optional human-readable description for NBD_OPT_LIST / NBD_INFO_DESCRIPTION. */
  readonly description?: string;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * `data` belongs to the server's buffer pool and is reused once the returned promise
   * settles: an export that keeps the bytes longer must copy them. An export may call
   * `ack` (given without FUA) once a READ or FLUSH sent after the reply would see the
   * write and a crash of the export's process would not lose it; the server then replies
   * at once, and the promise must not reject after that (a later failure is the next
   * flush()'s to report).
   */
  write(offset: number, data: Buffer, fua: boolean, ack?: () => void): Promise<void>;
  /**
   * Optional fast path of a WRITE without FUA: does the write on this thread before
   * returning, calling ack() (which sends the reply) on the way under the same rule as
   * write()'s, and returns true; or does nothing and returns false (then the server
   * calls write()). An error after ack() is reported by the next flush(). `data` is
   * reused as soon as it returns.
   */
  writeNow?(offset: number, data: Buffer, ack: () => void): boolean;
  writeZeroes(offset: number, length: number, opts: { noHole: boolean; fua: boolean }): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** Makes every write acknowledged so far, on any connection, durable. */
  flush(): Promise<void>;
  blockStatus(offset: number, length: number): Extent[] | Promise<Extent[]>;
}

/** A lookup from export name ("" = the default export) to the export. */
export type ExportLookup = {
  get(name: string): NbdExport | undefined;
  list(): NbdExport[];
};

export function exportMap(exports: NbdExport[]): ExportLookup {
  const byName = new Map(exports.map((e) => [e.name, e]));
  return {
    get: (name) => (name === '' ? exports[0] : byName.get(name)),
    list: () => exports,
  };
}
