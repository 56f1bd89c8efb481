// A copy-on-write export over a read-only one (a point-in-time view): a test failover
// can boot and write to the recovered disks while the view, the replica and the journal
// stay untouched. Written 4 KiB blocks live in a sparse scratch file, deleted on close;
// every other block is read from the view.
import { rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { RangeLock } from '../agent/range-lock.js';
import type { NbdExport } from '../nbd/export.js';
import { BlockStore, type Extent } from '../storage/block-store.js';

const BLOCK = 4096;

export class CowExport implements NbdExport {
  readonly readOnly = false;
  readonly fastZero = false;
  /** One bit per 4 KiB block: set once the block lives in the scratch file. */
  private readonly written: Uint8Array;
  private readonly locks = new RangeLock();
  private closed = false;

  private constructor(
    private readonly base: NbdExport,
    private readonly scratch: BlockStore,
  ) {
    this.written = new Uint8Array(Math.ceil(Math.ceil(base.size / BLOCK) / 8));
  }

  /** The scratch file is created sparse at the export's size; it must not exist. */
  static async open(base: NbdExport, scratchPath: string): Promise<CowExport> {
    const fh = await open(scratchPath, 'wx');
    try {
      await fh.truncate(base.size);
    } finally {
      await fh.close();
    }
    return new CowExport(base, await BlockStore.open(scratchPath));
  }

  get name(): string {
    return this.base.name;
  }
  get size(): number {
    return this.base.size;
  }
  get description(): string | undefined {
    return this.base.description && `${this.base.description} (copy-on-write: writes are discarded)`;
  }

  private has(block: number): boolean {
    return (this.written[block >> 3]! & (1 << (block & 7))) !== 0;
  }

  /** Runs of consecutive blocks in [first, last] that are (or are not) in the scratch file. */
  private runs(first: number, last: number): { first: number; last: number; mine: boolean }[] {
    const out: { first: number; last: number; mine: boolean }[] = [];
    for (let b = first; b <= last; b++) {
      const mine = this.has(b);
      const prev = out.at(-1);
      if (prev && prev.mine === mine) prev.last = b;
      else out.push({ first: b, last: b, mine });
    }
    return out;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(length);
    const end = offset + length;
    for (const r of this.runs(Math.floor(offset / BLOCK), Math.floor((end - 1) / BLOCK))) {
      const from = Math.max(offset, r.first * BLOCK);
      const to = Math.min(end, (r.last + 1) * BLOCK);
      if (r.mine) await this.scratch.readInto(out.subarray(from - offset, to - offset), from);
      else (await this.base.read(from, to - from)).copy(out, from - offset);
    }
    return out;
  }

  /** Writes data at offset: partial edge blocks not yet copied are filled from the view first. */
  private async put(offset: number, data: Buffer): Promise<void> {
    const first = Math.floor(offset / BLOCK);
    const last = Math.floor((offset + data.length - 1) / BLOCK);
    const release = await this.locks.acquire(first * BLOCK, (last - first + 1) * BLOCK);
    try {
      const start = first * BLOCK;
      const span = Math.min((last + 1) * BLOCK, this.size) - start;
      let buf = data;
      if (offset !== start || data.length !== span) {
        // Read-modify-write of the whole blocks (only their edges need the old bytes).
        buf = await this.read(start, span);
        data.copy(buf, offset - start);
      }
      await this.scratch.write(buf, start);
      for (let b = first; b <= last; b++) this.written[b >> 3]! |= 1 << (b & 7);
    } finally {
      release();
    }
  }

  private check(offset: number, length: number): void {
    if (this.closed) throw new Error(`export '${this.name}' is closed`);
    if (offset + length > this.size) throw new Error(`range ${offset}+${length} is past the end`);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.check(offset, data.length);
    if (data.length) await this.put(offset, Buffer.from(data)); // the server reuses data
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.check(offset, length);
    for (let at = offset; at < offset + length; at += 1024 * 1024) {
      await this.put(at, Buffer.alloc(Math.min(1024 * 1024, offset + length - at)));
    }
  }

  trim(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length);
  }

  /** The scratch data is discarded with the export: nothing to make durable. */
  async flush(): Promise<void> {}

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const end = Math.min(offset + length, this.size);
    const out: Extent[] = [];
    for (const r of this.runs(Math.floor(offset / BLOCK), Math.floor((end - 1) / BLOCK))) {
      const from = Math.max(offset, r.first * BLOCK);
      const to = Math.min(end, (r.last + 1) * BLOCK);
      if (r.mine) out.push({ offset: from, length: to - from, hole: false });
      else out.push(...(await this.base.blockStatus(from, to - from)));
    }
    return out;
  }

  /** Closes the view underneath and deletes the scratch file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.scratch.close();
    rmSync(this.scratch.path, { force: true });
    await (this.base as { close?: () => Promise<void> }).close?.();
  }
}
