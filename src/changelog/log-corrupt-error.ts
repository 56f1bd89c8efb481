// A change-log record that fails its checks where no torn write can be (a closed
// segment, or a record already fsynced and acknowledged): corruption. It names the
// segment file, the offset and the last good seq before it; the records from there on
// cannot be read and must never be passed on.
export class LogCorruptError extends Error {
  constructor(
    readonly path: string,
    readonly offset: number,
    readonly reason: string,
    /** Every record up to this seq was read and checked; what follows cannot be. */
    readonly afterSeq: number,
  ) {
    super(`change log corrupt: ${path} at offset ${offset}: ${reason}`);
  }
}
