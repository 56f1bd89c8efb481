// The backing store of an exported disk: a raw image file or a block device,
// accessed with positional I/O only (the file position is never used).
import { writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { blockDeviceSize, SpaceOp, seekData, seekHole, space } from './native-fileops.js';

export interface Extent {
  offset: number;
  length: number;
  /** True when the range is unallocated (reads as zeroes). */
  hole: boolean;
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);
/**
 * Writes up to this size are made on the event loop: a pwrite of a few KiB into the
 * page cache takes microseconds, less than handing it to libuv's thread pool and
 * back (about 30 us of the event loop's time each, measured under fio 4k).
 */
export const SYNC_WRITE_MAX = 64 * 1024;

export class BlockStore {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly size: number,
    readonly isBlockDevice: boolean,
    readonly readOnly: boolean,
  ) {}

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<BlockStore> {
    const readOnly = opts.readOnly ?? false;
    const fh = await open(path, readOnly ? 'r' : 'r+');
    try {
      const st = await fh.stat();
      if (st.isBlockDevice()) return new BlockStore(path, fh, blockDeviceSize(fh.fd), true, readOnly);
      if (!st.isFile()) throw new Error(`${path} is neither a regular file nor a block device`);
      return new BlockStore(path, fh, st.size, false, readOnly);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get fd(): number {
    return this.fh.fd;
  }

  /** Reads exactly buf.length bytes at offset (short reads past EOF read as zeroes). */
  async readInto(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, offset + done);
      if (bytesRead === 0) {
        buf.fill(0, done);
        return;
      }
      done += bytesRead;
    }
  }

  async write(data: Buffer, offset: number): Promise<void> {
    let done = 0;
    if (data.length <= SYNC_WRITE_MAX) return this.writeNow(data, offset);
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  /** Writes a small buffer on the caller's thread (cheaper than a thread-pool round trip). */
  writeNow(data: Buffer, offset: number): void {
    let done = 0;
    while (done < data.length) done += writeSync(this.fh.fd, data, done, data.length - done, offset + done);
  }

  /**
   * Makes [offset, offset+length) read as zeroes. With `allocate` the range stays
   * provisioned (NBD_CMD_FLAG_NO_HOLE); otherwise a file gets a hole punched.
   */
  async zero(offset: number, length: number, allocate: boolean): Promise<void> {
    if (this.isBlockDevice) return space(this.fd, SpaceOp.BLK_ZEROOUT, offset, length);
    try {
      await space(this.fd, allocate ? SpaceOp.ZERO_RANGE : SpaceOp.PUNCH_HOLE, offset, length);
    } catch (e) {
      if ((e as { errno?: number }).errno !== 95) throw e; // EOPNOTSUPP: file system cannot; write zeroes
      await this.writeZeroes(offset, length);
    }
  }

  /** Whether zero() is cheaper than writing zeroes (NBD_CMD_FLAG_FAST_ZERO). */
  get fastZero(): boolean {
    return !this.isBlockDevice;
  }

  /**
   * Discards a range. On files this punches a hole (reads then return zeroes, so a
   * replay elsewhere can reproduce it exactly); on block devices it is not done at all,
   * because BLKDISCARD leaves contents unspecified and a replica could not match them.
   */
  async trim(offset: number, length: number): Promise<boolean> {
    if (this.isBlockDevice) return false;
    await this.zero(offset, length, false);
    return true;
  }

  private async writeZeroes(offset: number, length: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      await this.write(ZERO_CHUNK.subarray(0, n), offset + done);
      done += n;
    }
  }

  async sync(): Promise<void> {
    await this.fh.datasync();
  }

  /**
   * Allocation map of [offset, offset+length), from SEEK_DATA/SEEK_HOLE. Block
   * devices report everything as data. At most `maxExtents` extents are returned;
   * they cover a prefix of the range.
   */
  extents(offset: number, length: number, maxExtents = 1024): Extent[] {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return [];
    if (this.isBlockDevice) return [{ offset, length: end - offset, hole: false }];
    const out: Extent[] = [];
    let pos = offset;
    while (pos < end && out.length < maxExtents) {
      const data = seekData(this.fd, pos);
      if (data < 0 || data >= end) {
        out.push({ offset: pos, length: end - pos, hole: true });
        break;
      }
      if (data > pos) {
        out.push({ offset: pos, length: data - pos, hole: true });
        if (out.length >= maxExtents) break;
      }
      const hole = Math.min(seekHole(this.fd, data), end);
      out.push({ offset: data, length: hole - data, hole: false });
      pos = hole;
    }
    return out;
  }

  /** True when [offset, offset+length) is entirely unallocated (reads as zeroes without a read). */
  isHole(offset: number, length: number): boolean {
    const first = this.extents(offset, length, 1)[0];
    return (
      first !== undefined && first.hole && first.offset + first.length >= Math.min(offset + length, this.size)
    );
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
