// A plain NBD export over a block store, without change capture.
import { NBD_ERR } from '../nbd/constants.js';
import { NbdError } from '../nbd/errors.js';
import type { NbdExport } from '../nbd/export.js';
import type { BlockStore, Extent } from './block-store.js';

export class FileExport implements NbdExport {
  constructor(
    readonly name: string,
    private readonly store: BlockStore,
    readonly readOnly: boolean,
  ) {}

  get size(): number {
    return this.store.size;
  }
  get fastZero(): boolean {
    return this.store.fastZero;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.store.readInto(buf, offset);
    return buf;
  }

  private writable(): void {
    if (this.readOnly) throw new NbdError(NBD_ERR.EPERM, `export '${this.name}' is read-only`);
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.writable();
    await this.store.write(data, offset);
    if (fua) await this.store.sync();
  }

  async writeZeroes(offset: number, length: number, opts: { noHole: boolean; fua: boolean }): Promise<void> {
    this.writable();
    await this.store.zero(offset, length, opts.noHole);
    if (opts.fua) await this.store.sync();
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.writable();
    await this.store.trim(offset, length);
    if (fua) await this.store.sync();
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.store.sync();
  }

  blockStatus(offset: number, length: number): Extent[] {
    return this.store.extents(offset, length);
  }
}
