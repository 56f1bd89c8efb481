// One disk of a point-in-time view, served read-only over NBD (mount, copy or boot a
// recovery point without touching the replica). Replication goes on underneath: the
// view keeps returning the point's bytes.
import { NBD_ERR } from '../nbd/constants.js';
import { NbdError } from '../nbd/errors.js';
import type { NbdExport } from '../nbd/export.js';
import { BlockStore, type Extent } from '../storage/block-store.js';
import type { PointView } from './point-view.js';
import type { Replica } from './replica.js';
import { isZeroBeforeImage } from './undo-journal.js';

export interface ViewExportOptions {
  /** The NBD export name. */
  name: string;
  /** The replica the view was opened on (only its journal and disk sizes are used). */
  replica: Pick<Replica, 'journal' | 'diskSize'>;
  /** Closed by the export's close(). */
  view: PointView;
  disk: number;
  /**
   * The replica disk's image file. Its holes let blockStatus report holes, so clients
   * skip reading them; without it every range is reported as data (correct, slower).
   */
  replicaPath?: string;
  description?: string;
}

export class ViewExport implements NbdExport {
  readonly readOnly = true;
  readonly fastZero = false;
  private closed = false;

  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly opts: ViewExportOptions,
    /** A second, read-only handle on the replica file, used only for SEEK_DATA/SEEK_HOLE. */
    private readonly store: BlockStore | undefined,
  ) {}

  get description(): string | undefined {
    return this.opts.description;
  }

  static async open(opts: ViewExportOptions): Promise<ViewExport> {
    const size = opts.replica.diskSize(opts.disk);
    let store: BlockStore | undefined;
    if (opts.replicaPath !== undefined) {
      store = await BlockStore.open(opts.replicaPath, { readOnly: true });
      // A wrong path would map another disk's holes onto this one: refuse it.
      if (store.size !== size) {
        await store.close();
        throw new Error(
          `${opts.replicaPath} is ${store.size} bytes, but replica disk ${opts.disk} is ${size} bytes`,
        );
      }
    }
    return new ViewExport(opts.name, size, opts, store);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.opts.view.read(this.opts.disk, offset, length);
  }

  private refuse(): Promise<never> {
    return Promise.reject(new NbdError(NBD_ERR.EPERM, `export '${this.name}' is read-only`));
  }
  write(): Promise<void> {
    return this.refuse();
  }
  writeZeroes(): Promise<void> {
    return this.refuse();
  }
  trim(): Promise<void> {
    return this.refuse();
  }

  /** Nothing is ever written through a view. */
  async flush(): Promise<void> {}

  /**
   * Holes where the point reads as zeroes for sure: the replica file has a hole there
   * and no change after the point has a non-zero before-image there (the point's bytes
   * are the replica's, overlaid with those before-images). Everything else is data.
   */
  blockStatus(offset: number, length: number): Extent[] {
    if (this.closed) throw new Error(`export '${this.name}' is closed`);
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return [];
    if (!this.store) return [{ offset, length: end - offset, hole: false }];
    const { replica, disk, view } = this.opts;
    const out: Extent[] = [];
    // Replica first, journal after, in one synchronous turn, as PointView.read does: a
    // change is indexed before its replica write, so any change that made this hole is
    // found below.
    for (const x of this.store.extents(offset, end - offset)) {
      if (!x.hole) {
        push(out, x.offset, x.offset + x.length, false);
        continue;
      }
      const xEnd = x.offset + x.length;
      const data = replica.journal
        .overlapping(disk, x.offset, x.length, view.point)
        .filter((e) => !isZeroBeforeImage(e))
        .map((e) => [Math.max(e.offset, x.offset), Math.min(e.offset + e.length, xEnd)])
        .sort((a, b) => a[0] - b[0]);
      let pos = x.offset;
      for (const [from, to] of data) {
        if (to <= pos) continue;
        if (from > pos) push(out, pos, from, true);
        push(out, Math.max(from, pos), to, false);
        pos = to;
      }
      if (pos < xEnd) push(out, pos, xEnd, true);
    }
    return out;
  }

  /** Closes the view (it no longer holds back pruning) and the extents handle. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.opts.view.close();
    await this.store?.close();
  }
}

/** Appends [from, to), merged into the previous extent when it is of the same kind. */
function push(out: Extent[], from: number, to: number, hole: boolean): void {
  if (to <= from) return;
  const last = out.at(-1);
  if (last && last.hole === hole && last.offset + last.length === from) last.length += to - from;
  else out.push({ offset: from, length: to - from, hole });
}
