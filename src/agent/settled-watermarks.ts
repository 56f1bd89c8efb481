// The watermarks a change the log could not take settles before it touches the disk
// (Agent.settleLoggedBeforeUnlogged): every change logged before it is on its disk
// (`applied`), and after a FLUSH that synced the disks for it, durable there (`durable`).
// The redo after a crash starts after them, so it never lays an older logged change over
// a newer unlogged one. A fixed 16-byte file overwritten in place, not agent.json: an
// unlogged change happens when the log's volume may be full, and an in-place write of
// an allocated block needs no new space. Format: docs/formats.md.
import { type FileHandle, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir } from '../util/fsync-dir.js';

const SIZE = 16;

export class SettledWatermarks {
  private constructor(
    private readonly fh: FileHandle,
    private readonly buf: Buffer,
  ) {}

  /** Opens (or creates, zeroed and durable) the file. */
  static async open(path: string): Promise<SettledWatermarks> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fh = await open(path, 'w+');
      await fh.write(Buffer.alloc(SIZE), 0, SIZE, 0);
      await fh.sync();
      await fsyncDir(dirname(path));
    }
    const buf = Buffer.alloc(SIZE);
    const { bytesRead } = await fh.read(buf, 0, SIZE, 0);
    if (bytesRead !== SIZE) {
      await fh.close();
      throw new Error(`${path}: ${bytesRead} bytes, not ${SIZE}: not a settled-watermarks file`);
    }
    return new SettledWatermarks(fh, buf);
  }

  /** Every change with seq <= this had reached its disk (page cache) when it was written. */
  get applied(): number {
    return Number(this.buf.readBigUInt64BE(0));
  }

  /** Every change with seq <= this was durable on its disk when it was written. */
  get durable(): number {
    return Number(this.buf.readBigUInt64BE(8));
  }

  /** Not fsynced: only a process crash (same boot, page cache intact) reads it back. */
  async setApplied(seq: number): Promise<void> {
    this.buf.writeBigUInt64BE(BigInt(seq), 0);
    await this.fh.write(this.buf, 0, 8, 0);
  }

  async setDurable(seq: number): Promise<void> {
    this.buf.writeBigUInt64BE(BigInt(seq), 8);
    await this.fh.write(this.buf, 8, 8, 8);
    await this.fh.datasync();
  }

  /** Both at once, durable: at start, after recovery, the agent's watermarks are the truth. */
  async reset(seq: number): Promise<void> {
    this.buf.writeBigUInt64BE(BigInt(seq), 0);
    this.buf.writeBigUInt64BE(BigInt(seq), 8);
    await this.fh.write(this.buf, 0, SIZE, 0);
    await this.fh.datasync();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
