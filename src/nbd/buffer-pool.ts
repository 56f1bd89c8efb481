// Reusable payload buffers. Every WRITE payload that spans socket chunks needs a
// buffer of its own; allocating one per request (a fresh ArrayBuffer each time)
// made V8 run major collections continually under load (a quarter of the agent's
// CPU in a profile of nbdcopy). Buffers come in power-of-two size classes and go
// back to a free list, whose total size is capped so memory stays bounded.

const MIN_CLASS = 4096;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private retained = 0;

  constructor(private readonly maxRetainedBytes: number) {}

  /** A buffer of exactly n bytes (a view of a pooled buffer of the next class size). */
  acquire(n: number): Buffer {
    const size = classSize(n);
    const list = this.free.get(size);
    const whole = list?.pop();
    if (whole) {
      this.retained -= size;
      return whole.subarray(0, n);
    }
    return Buffer.allocUnsafeSlow(size).subarray(0, n);
  }

  /**
   * Gives a buffer from acquire() back. The caller must hold no other reference to
   * it: its bytes will be overwritten by the next acquire.
   */
  release(buf: Buffer): void {
    const size = buf.buffer.byteLength;
    if (buf.byteOffset !== 0 || size !== classSize(size)) return; // not one of ours
    if (this.retained + size > this.maxRetainedBytes) return;
    let list = this.free.get(size);
    if (!list) {
      list = [];
      this.free.set(size, list);
    }
    list.push(Buffer.from(buf.buffer, 0, size));
    this.retained += size;
  }

  get retainedBytes(): number {
    return this.retained;
  }
}

function classSize(n: number): number {
  if (n <= MIN_CLASS) return MIN_CLASS;
  return 2 ** Math.ceil(Math.log2(n));
}

/** Shared by every NBD connection of the process. */
export const payloadPool = new BufferPool(16 * 1024 * 1024);
