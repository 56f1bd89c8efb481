// Where an NBD connection's incoming bytes land. The socket reads straight into
// buffers this class lends (Node's `onread` with a buffer function): small chunks it
// owns and recycles, or, while a WRITE payload is awaited, the payload's own buffer,
// so a payload crosses from the kernel to its final place in one copy. Nothing is
// allocated per read: with one fresh 64 KiB buffer per read (Node's default), V8 ran
// a major collection every 0.1 s under fio and spent a quarter of the agent's CPU on it.
//
// Bytes are never handed out as views of a chunk (chunks are reused): take() copies.

const CHUNK = 64 * 1024;
/** A chunk with less room than this left is not lent again; a new one is started. */
const MIN_READ = 4096;
/**
 * Consumed chunks kept for reuse, as bytes: the connection pauses reading beyond this
 * much queued, so in steady state no chunk is allocated (with only 4 kept, nbdcopy's
 * bursts allocated 1.6 chunks per request and the collector was back).
 */
export const RECEIVE_REUSE_BYTES = 1024 * 1024;
const KEEP_FREE = RECEIVE_REUSE_BYTES / CHUNK + 2;

interface Direct {
  into: Buffer;
  filled: number;
  n: number;
}

interface Chunk {
  buf: Buffer;
  /** Bytes received into buf so far. */
  fill: number;
}

export class ReceiveBuffer {
  private chunks: Chunk[] = [];
  private head = 0; // bytes consumed from chunks[0]
  private readonly free: Buffer[] = [];
  private direct: Direct | undefined;
  /** Bytes queued in chunks (not counting a direct target's). */
  length = 0;

  /** The buffer the next read from the socket should fill. */
  nextBuffer(): Buffer {
    const d = this.direct;
    if (d && this.length === 0) return d.into.subarray(d.filled, d.n);
    let last = this.chunks.at(-1);
    if (!last || last.buf.length - last.fill < MIN_READ) {
      last = { buf: this.free.pop() ?? Buffer.allocUnsafeSlow(CHUNK), fill: 0 };
      this.chunks.push(last);
      if (this.chunks.length === 1) this.head = 0;
    }
    return last.buf.subarray(last.fill);
  }

  /** `nread` bytes arrived at the start of `buf`, a buffer nextBuffer() returned. */
  received(buf: Buffer, nread: number): void {
    const d = this.direct;
    if (d && buf.buffer === d.into.buffer && buf.byteOffset === d.into.byteOffset + d.filled) {
      d.filled += nread;
      return;
    }
    // Only the last chunk is ever lent, at its fill level.
    const last = this.chunks.at(-1);
    if (!last || buf.buffer !== last.buf.buffer || buf.byteOffset !== last.buf.byteOffset + last.fill) {
      throw new Error('ReceiveBuffer: bytes arrived in a buffer it did not lend');
    }
    last.fill += nread;
    this.length += nread;
    if (d) this.feedDirect(d);
  }

  /** Copies bytes that arrived from any source (a 'data' event) in. */
  push(src: Buffer): void {
    let off = 0;
    while (off < src.length) {
      const dst = this.nextBuffer();
      const n = src.copy(dst, 0, off);
      this.received(dst, n);
      off += n;
    }
  }

  /** Removes exactly n bytes (n <= length), copied into `into` or a new buffer. */
  take(n: number, into?: Buffer): Buffer {
    if (n > this.length) throw new RangeError(`take(${n}) with only ${this.length} bytes queued`);
    const out = into ? into.subarray(0, n) : Buffer.allocUnsafe(n);
    this.copyOut(out, 0, n);
    return out;
  }

  /**
   * Starts filling `into` with the next n bytes: what is queued now is copied in, and
   * reads then go straight into it. directDone() tells when it is full.
   */
  startDirect(into: Buffer, n: number): void {
    if (this.direct) throw new Error('ReceiveBuffer: a direct read is already in progress');
    if (into.length < n) throw new RangeError(`direct read of ${n} bytes into ${into.length}`);
    const d: Direct = { into, filled: 0, n };
    this.direct = d;
    this.feedDirect(d);
  }

  /** The direct target once it holds all its bytes (and the read is over), else undefined. */
  directDone(): Buffer | undefined {
    const d = this.direct;
    if (!d || d.filled < d.n) return undefined;
    this.direct = undefined;
    return d.into.subarray(0, d.n);
  }

  /** Abandons a direct read (the connection is closing). */
  cancelDirect(): void {
    this.direct = undefined;
  }

  private feedDirect(d: Direct): void {
    const m = Math.min(this.length, d.n - d.filled);
    if (m > 0) {
      this.copyOut(d.into, d.filled, m);
      d.filled += m;
    }
  }

  /** Moves m queued bytes into out[at..], recycling chunks that are used up. */
  private copyOut(out: Buffer, at: number, m: number): void {
    let filled = 0;
    while (filled < m) {
      const c = this.chunks[0]!;
      const k = Math.min(c.fill - this.head, m - filled);
      c.buf.copy(out, at + filled, this.head, this.head + k);
      filled += k;
      this.head += k;
      // A used-up chunk goes, unless it is the last (it may be lent for the next read).
      if (this.head === c.fill && this.chunks.length > 1) {
        this.chunks.shift();
        this.head = 0;
        if (this.free.length < KEEP_FREE) this.free.push(c.buf);
      }
    }
    this.length -= m;
  }
}
