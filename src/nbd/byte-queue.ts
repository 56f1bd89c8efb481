// Incoming bytes of one connection, consumed in exact-sized pieces.
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes already consumed from chunks[0]
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /**
   * Removes and returns exactly n bytes (n <= length); zero-copy when they lie in one
   * chunk, otherwise copied into `into` (at least n bytes) or a new buffer.
   */
  take(n: number, into?: Buffer): Buffer {
    if (n > this.length) throw new RangeError(`take(${n}) with only ${this.length} bytes queued`);
    this.length -= n;
    const first = this.chunks[0];
    if (first && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.head += n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      return out;
    }
    const out = into ? into.subarray(0, n) : Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const m = Math.min(c.length - this.head, n - filled);
      c.copy(out, filled, this.head, this.head + m);
      filled += m;
      this.head += m;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    return out;
  }
}
