// The NBD face of a captured disk: every change goes through the agent.
import { RecordType } from '../changelog/record.js';
import type { NbdExport } from '../nbd/export.js';
import type { Extent } from '../storage/block-store.js';
import type { Agent, CapturedDisk } from './agent.js';

export class CaptureExport implements NbdExport {
  readonly readOnly = false;

  constructor(
    private readonly agent: Agent,
    private readonly disk: CapturedDisk,
  ) {}

  get name(): string {
    return this.disk.record.name;
  }
  get size(): number {
    return this.disk.store.size;
  }
  get fastZero(): boolean {
    return this.disk.store.fastZero;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    // A write may be acknowledged before it reaches the disk (ChangeOptions.ack).
    if (!this.disk.locks.isFree(offset, length)) await this.disk.locks.waitFree(offset, length);
    const buf = Buffer.allocUnsafe(length);
    await this.disk.store.readInto(buf, offset);
    return buf;
  }

  write(offset: number, data: Buffer, fua: boolean, ack?: () => void): Promise<void> {
    return this.agent.change(this.disk, RecordType.Write, offset, data.length, { data, fua, ack });
  }

  writeNow(offset: number, data: Buffer, ack: () => void): boolean {
    return this.agent.writeNow(this.disk, offset, data, ack);
  }

  writeZeroes(offset: number, length: number, opts: { noHole: boolean; fua: boolean }): Promise<void> {
    return this.agent.change(this.disk, RecordType.Zero, offset, length, opts);
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    // Block devices do not discard (see BlockStore.trim), so nothing changes and nothing is logged.
    if (this.disk.store.isBlockDevice) return;
    await this.agent.change(this.disk, RecordType.Trim, offset, length, { fua });
  }

  async flush(): Promise<void> {
    await this.agent.flush();
    const late = this.agent.takeLateWriteError();
    if (late) throw late;
  }

  blockStatus(offset: number, length: number): Extent[] | Promise<Extent[]> {
    if (this.disk.locks.isFree(offset, length)) return this.disk.store.extents(offset, length);
    return this.disk.locks.waitFree(offset, length).then(() => this.disk.store.extents(offset, length));
  }
}
