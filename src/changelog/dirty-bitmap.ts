// A persistent bitmap of disk regions that changed without being logged (the
// log was full or failed, or the agent cannot prove the disk matches the log).
// Those regions are "resync required". Its size is bounded: the region size
// grows with the disk so the bitmap never exceeds MAX_BITMAP_BYTES.
import { type FileHandle, open } from 'node:fs/promises';
import { crc32c } from '@node-rs/crc32';

const MAGIC = 0x42445242; // "RBDB"
const HEADER = 32;
const MIN_REGION = 64 * 1024;
export const MAX_BITMAP_BYTES = 1024 * 1024;

export interface DirtyRegion {
  offset: number;
  length: number;
}

export function regionSizeFor(diskSize: number): number {
  let region = MIN_REGION;
  while (Math.ceil(diskSize / region) > MAX_BITMAP_BYTES * 8) region *= 2;
  return region;
}

function headerValid(header: Buffer, regionSize: number, diskSize: number): boolean {
  return (
    header.readUInt32LE(0) === MAGIC &&
    header.readUInt32LE(4) === regionSize &&
    Number(header.readBigUInt64LE(8)) === diskSize &&
    header.readUInt32LE(16) === crc32c(header.subarray(0, 16))
  );
}

export class DirtyBitmap {
  private dirtySinceSync = false;

  private constructor(
    private readonly fh: FileHandle,
    readonly diskSize: number,
    readonly regionSize: number,
    private readonly bits: Uint8Array,
  ) {}

  /** Opens (or creates) the bitmap file for a disk of diskSize bytes. */
  static async open(path: string, diskSize: number): Promise<DirtyBitmap> {
    const regionSize = regionSizeFor(diskSize);
    const nbytes = Math.ceil(Math.ceil(diskSize / regionSize) / 8);
    const fh = await open(path, 'a+').then(async (f) => {
      await f.close();
      return open(path, 'r+');
    });
    const header = Buffer.alloc(HEADER);
    const { bytesRead } = await fh.read(header, 0, HEADER, 0);
    const bits = new Uint8Array(nbytes);
    const valid = bytesRead === HEADER && headerValid(header, regionSize, diskSize);
    const bm = new DirtyBitmap(fh, diskSize, regionSize, bits);
    if (valid) {
      await fh.read(Buffer.from(bits.buffer), 0, nbytes, HEADER);
    } else {
      if (bytesRead > 0) bits.fill(0xff); // unreadable or resized bitmap: trust nothing
      header.writeUInt32LE(MAGIC, 0);
      header.writeUInt32LE(regionSize, 4);
      header.writeBigUInt64LE(BigInt(diskSize), 8);
      header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
      await fh.truncate(0);
      await fh.write(header, 0, HEADER, 0);
      await fh.write(Buffer.from(bits.buffer), 0, nbytes, HEADER);
      await fh.sync();
    }
    return bm;
  }

  /**
   * Reads the dirty regions of a bitmap file without changing it. A missing file
   * means nothing is dirty; an unreadable one means everything is.
   */
  static async readRegions(path: string, diskSize: number): Promise<DirtyRegion[]> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch {
      return [];
    }
    try {
      const regionSize = regionSizeFor(diskSize);
      const bits = new Uint8Array(Math.ceil(Math.ceil(diskSize / regionSize) / 8));
      const header = Buffer.alloc(HEADER);
      const { bytesRead } = await fh.read(header, 0, HEADER, 0);
      if (bytesRead === HEADER && headerValid(header, regionSize, diskSize)) {
        await fh.read(Buffer.from(bits.buffer), 0, bits.length, HEADER);
      } else bits.fill(0xff);
      return new DirtyBitmap(fh, diskSize, regionSize, bits).regions();
    } finally {
      await fh.close();
    }
  }

  /**
   * Marks a byte range dirty and writes the changed bitmap bytes to the file before
   * returning (so a process crash cannot lose the mark); sync() makes it durable.
   */
  async mark(offset: number, length: number): Promise<void> {
    if (length <= 0) return;
    const first = Math.floor(offset / this.regionSize);
    const last = Math.floor((Math.min(offset + length, this.diskSize) - 1) / this.regionSize);
    let lo = Number.POSITIVE_INFINITY;
    let hi = -1;
    for (let r = first; r <= last; r++) {
      const byte = r >> 3;
      const bit = 1 << (r & 7);
      if (!(this.bits[byte] & bit)) {
        this.bits[byte] |= bit;
        lo = Math.min(lo, byte);
        hi = Math.max(hi, byte);
      }
    }
    if (hi < 0) return;
    this.dirtySinceSync = true;
    await this.fh.write(Buffer.from(this.bits.buffer, lo, hi - lo + 1), 0, hi - lo + 1, HEADER + lo);
  }

  markAll(): Promise<void> {
    return this.mark(0, this.diskSize);
  }

  /** Clears a range once it has been resynchronised (whole regions only). */
  async clear(offset: number, length: number): Promise<void> {
    const first = Math.ceil(offset / this.regionSize);
    const end = offset + length >= this.diskSize ? this.bits.length * 8 : Math.floor((offset + length) / this.regionSize);
    for (let r = first; r < end; r++) this.bits[r >> 3] &= ~(1 << (r & 7));
    await this.fh.write(Buffer.from(this.bits.buffer), 0, this.bits.length, HEADER);
    this.dirtySinceSync = true;
  }

  isDirty(offset: number, length: number): boolean {
    const first = Math.floor(offset / this.regionSize);
    const last = Math.floor((Math.min(offset + length, this.diskSize) - 1) / this.regionSize);
    for (let r = first; r <= last; r++) if (this.bits[r >> 3] & (1 << (r & 7))) return true;
    return false;
  }

  /** Dirty regions, coalesced, clipped to the disk size. */
  regions(): DirtyRegion[] {
    const out: DirtyRegion[] = [];
    const n = Math.ceil(this.diskSize / this.regionSize);
    let r = 0;
    while (r < n) {
      if (this.bits[r >> 3] === 0) {
        r = (r | 7) + 1;
        continue;
      }
      if (!(this.bits[r >> 3] & (1 << (r & 7)))) {
        r++;
        continue;
      }
      const start = r;
      while (r < n && this.bits[r >> 3] & (1 << (r & 7))) r++;
      const offset = start * this.regionSize;
      out.push({ offset, length: Math.min(r * this.regionSize, this.diskSize) - offset });
    }
    return out;
  }

  get dirtyBytes(): number {
    return this.regions().reduce((s, r) => s + r.length, 0);
  }

  async sync(): Promise<void> {
    if (!this.dirtySinceSync) return;
    this.dirtySinceSync = false;
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.sync();
    await this.fh.close();
  }
}

