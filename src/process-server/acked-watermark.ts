// The highest seq a process server has acknowledged to an agent for one machine, kept
// in a small file so that a restart can tell a torn cache tail (never acknowledged,
// safe to cut) from corruption of acknowledged records (never cut, never forwarded).
// Written at most once a second, without fsync: a process crash keeps the page cache,
// and an older value after a power loss only makes that check less strict.
import type { Logger } from 'pino';
import { readJsonFile, writeJsonFile } from '../util/json-file.js';

const WRITE_EVERY_MS = 1000;

export class AckedWatermark {
  private value: number;
  private written: number;
  private lastWrite = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly path: string,
    start: number,
    private readonly logger: Logger,
  ) {
    this.value = start;
    this.written = start;
  }

  static async open(path: string, logger: Logger): Promise<AckedWatermark> {
    const stored = await readJsonFile<{ ackedThrough?: number }>(path);
    const n = stored?.ackedThrough;
    return new AckedWatermark(path, Number.isSafeInteger(n) && n! > 0 ? n! : 0, logger);
  }

  /** The value read at open, or the latest set. */
  get ackedThrough(): number {
    return this.value;
  }

  set(seq: number): void {
    if (seq <= this.value || this.closed) return;
    this.value = seq;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.writing || this.closed) return;
    const wait = Math.max(0, this.lastWrite + WRITE_EVERY_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write(false);
    }, wait);
    this.timer.unref();
  }

  private async write(durable: boolean): Promise<void> {
    while (this.writing) await this.writing;
    if (this.value === this.written && !durable) return;
    const v = this.value;
    this.writing = writeJsonFile(this.path, { ackedThrough: v }, { durable })
      .then(() => {
        this.written = v;
        this.lastWrite = Date.now();
      })
      .catch((e: Error) =>
        this.logger.warn({ err: e.message, path: this.path }, 'cannot record the acked seq'),
      )
      .finally(() => {
        this.writing = undefined;
        if (this.value !== this.written) this.schedule();
      });
    await this.writing;
  }

  /** Writes the last value durably and stops. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.write(true);
  }
}
