// A persistent bitmap of disk regions that changed without being logged (the
// log was full or failed, or the agent cannot prove the disk matches the log).
// Those regions are "resync required". Its size is bounded: the region size
// grows with the disk so the bitmap never exceeds MAX_BITMAP_BYTES.
import { type FileHandle, open } from 'node:fs/promises';
import { crc32c } from '@node-rs/crc32';

const MAGIC = 0x42445242; // bytes on disk "BRDB" (little-endian)
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

/** Header: magic u32, region size u32, disk size u64, CRC32C of bytes 0..16 u32, CRC32C of the bits u32. */
const BODY_CRC_OFFSET = 20;

function bodyCrcBuffer(bits: Uint8Array): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(crc32c(Buffer.from(bits.buffer, bits.byteOffset, bits.length)), 0);
  return b;
}

function headerValid(header: Buffer, regionSize: number, diskSize: number): boolean {
  return (
    header.readUInt32LE(0) === MAGIC &&
    header.readUInt32LE(4) === regionSize &&
    Number(header.readBigUInt64LE(8)) === diskSize &&
    header.readUInt32LE(16) === crc32c(header.subarray(0, 16))
  );
}

/** Set bits in a byte, by byte value. */
const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v; v &= v - 1) n++;
  return n;
});

export class DirtyBitmap {
  private dirtySinceSync = false;
  /** Regions marked now: kept as bits change, so dirtyBytes costs nothing on hot paths. */
  private marked = 0;
  private writes: Promise<void> = Promise.resolve();

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
    let valid = bytesRead === HEADER && headerValid(header, regionSize, diskSize);
    const bm = new DirtyBitmap(fh, diskSize, regionSize, bits);
    // A file cut short after a valid header lost bits: it is as unreadable as a bad header.
    if (valid) valid = (await fh.read(Buffer.from(bits.buffer), 0, nbytes, HEADER)).bytesRead === nbytes;
    // Flipped bits are as untrustworthy as missing ones.
    if (valid) valid = header.readUInt32LE(BODY_CRC_OFFSET) === bodyCrcBuffer(bits).readUInt32LE(0);
    if (!valid) {
      if (bytesRead > 0) bits.fill(0xff); // unreadable or resized bitmap: trust nothing
      // The bits are made durable before the header that validates them, so a crash
      // in between leaves an invalid (everything dirty) file, never a short or empty one.
      await fh.write(Buffer.from(bits.buffer), 0, nbytes, HEADER);
      await fh.truncate(HEADER + nbytes);
      await fh.sync();
      header.writeUInt32LE(MAGIC, 0);
      header.writeUInt32LE(regionSize, 4);
      header.writeBigUInt64LE(BigInt(diskSize), 8);
      header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
      bodyCrcBuffer(bits).copy(header, BODY_CRC_OFFSET);
      await fh.write(header, 0, HEADER, 0);
      await fh.sync();
    }
    bm.marked = bm.countMarked();
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
      const valid =
        bytesRead === HEADER &&
        headerValid(header, regionSize, diskSize) &&
        (await fh.read(Buffer.from(bits.buffer), 0, bits.length, HEADER)).bytesRead === bits.length &&
        header.readUInt32LE(BODY_CRC_OFFSET) === bodyCrcBuffer(bits).readUInt32LE(0);
      if (!valid) bits.fill(0xff);
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
        this.marked++;
        lo = Math.min(lo, byte);
        hi = Math.max(hi, byte);
      }
    }
    if (hi < 0) return;
    this.dirtySinceSync = true;
    await this.persist(lo, hi - lo + 1);
  }

  /**
   * Writes changed bitmap bytes, then the CRC of the whole bitmap. Writes are
   * serialised; a crash between the two leaves a CRC mismatch, which reads as
   * "everything dirty": the safe direction.
   */
  private persist(from: number, length: number): Promise<void> {
    const run = async () => {
      await this.fh.write(Buffer.from(this.bits.buffer, from, length), 0, length, HEADER + from);
      await this.fh.write(bodyCrcBuffer(this.bits), 0, 4, BODY_CRC_OFFSET);
    };
    const p = this.writes.then(run, run);
    this.writes = p.catch(() => undefined);
    return p;
  }

  markAll(): Promise<void> {
    return this.mark(0, this.diskSize);
  }

  /** Clears a range once it has been resynchronised (whole regions only). */
  async clear(offset: number, length: number): Promise<void> {
    const first = Math.ceil(offset / this.regionSize);
    const end =
      offset + length >= this.diskSize
        ? this.bits.length * 8
        : Math.floor((offset + length) / this.regionSize);
    if (end <= first) return;
    const regions = Math.ceil(this.diskSize / this.regionSize);
    for (let r = first; r < end; r++) {
      const bit = 1 << (r & 7);
      if (r < regions && this.bits[r >> 3]! & bit) this.marked--;
      this.bits[r >> 3]! &= ~bit;
    }
    this.dirtySinceSync = true;
    // Only the bytes that changed (a resync clears 16 MiB at a time on disks of any size).
    const lo = first >> 3;
    await this.persist(lo, ((end - 1) >> 3) - lo + 1);
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

  /** Regions marked, counted from the bits (the padding bits of the last byte excluded). */
  private countMarked(): number {
    const n = Math.ceil(this.diskSize / this.regionSize);
    let count = 0;
    for (let i = 0; i < n >> 3; i++) count += POPCOUNT[this.bits[i]!]!;
    for (let r = n & ~7; r < n; r++) if (this.bits[r >> 3]! & (1 << (r & 7))) count++;
    return count;
  }

  get dirtyBytes(): number {
    if (this.marked === 0) return 0;
    // The last region may extend past the disk's end: count only what is on the disk.
    const n = Math.ceil(this.diskSize / this.regionSize);
    const last = n - 1;
    const lastMarked = (this.bits[last >> 3]! & (1 << (last & 7))) !== 0;
    return this.marked * this.regionSize - (lastMarked ? n * this.regionSize - this.diskSize : 0);
  }

  async sync(): Promise<void> {
    if (!this.dirtySinceSync) return;
    this.dirtySinceSync = false;
    await this.writes;
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.writes;
    await this.fh.sync();
    await this.fh.close();
  }
}
