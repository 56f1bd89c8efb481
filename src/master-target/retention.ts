// Retention: on a timer, each replica's undo journal loses the whole segments that only
// hold records older than the window (default 24 h). Every second of the window stays
// choosable: the point at the window's start, and its record, are kept (see
// Replica.pruneOlderThan). An open view holds back pruning of what it needs, but only
// while it is younger than the window: a view open longer than that, whose point has
// fallen behind the window's start, is closed with a logged reason, so a forgotten view
// cannot make the retention volume fill up.
import type { Logger } from 'pino';
import type { PruneResult, Replica } from './replica.js';

export const DEFAULT_RETENTION_HOURS = 24;
/** Ten years: anything longer is more likely a typo than a policy. */
const MAX_RETENTION_HOURS = 87_600;
const HOUR_MS = 3_600_000;

/** `--retention-hours`: a positive number of hours (fractions allowed). */
export function parseRetentionHours(text: string, flag = '--retention-hours'): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(n > 0) || n > MAX_RETENTION_HOURS) {
    throw new Error(`${flag} '${text}' is not a number of hours above 0 and at most ${MAX_RETENTION_HOURS}`);
  }
  return n;
}

export interface RetentionOptions {
  /** Points older than this may be pruned. */
  windowMs: number;
  /** How often to prune (default: a 24th of the window, between 1 s and 60 s). */
  intervalMs?: number;
  /** The master target's clock (tests move it). */
  now?: () => number;
  logger: Logger;
}

export interface MachinePruneResult extends PruneResult {
  machineId: string;
  /** Views closed because they were open longer than the window and held back pruning. */
  closedViews: number;
}

/** One retention pass over one replica; what it deleted. */
export async function pruneReplica(
  machineId: string,
  replica: Replica,
  opts: RetentionOptions,
): Promise<MachinePruneResult> {
  const now = (opts.now ?? Date.now)();
  const windowStart = now - opts.windowMs;
  const keep = replica.pointAtTime(windowStart);
  let closedViews = 0;
  if (keep !== undefined) {
    for (const v of replica.openViews()) {
      // A view of an older point holds back records outside the window: allowed while
      // it is younger than the window itself.
      if (v.point >= keep || now - v.openedAt <= opts.windowMs) continue;
      const hours = Number((opts.windowMs / HOUR_MS).toFixed(4));
      const reason =
        `closed by retention: open for longer than the retention window (${hours} h) ` +
        `while holding back pruning of records older than the window`;
      opts.logger.warn(
        { machineId, point: v.point, openedAt: new Date(v.openedAt).toISOString() },
        `retention: view of point ${v.point} ${reason}`,
      );
      v.close(reason);
      closedViews++;
    }
  }
  const r = await replica.pruneOlderThan(windowStart);
  const held = replica.openViews().filter((v) => keep !== undefined && v.point < keep);
  if (r.segments > 0) {
    opts.logger.info({ machineId, ...r }, 'retention: pruned undo-journal segments older than the window');
  }
  if (held.length) {
    opts.logger.debug(
      { machineId, views: held.map((v) => v.point) },
      'retention: open views hold back pruning',
    );
  }
  return { machineId, ...r, closedViews };
}

/** Prunes every replica on a timer. */
export class RetentionPruner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly replicas: () => Iterable<[string, Replica]>,
    private readonly opts: RetentionOptions,
  ) {}

  get intervalMs(): number {
    return this.opts.intervalMs ?? Math.min(60_000, Math.max(1_000, this.opts.windowMs / 24));
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.pruneNow(), this.intervalMs);
    this.timer.unref();
  }

  /** One pass over every replica (a pass already running is joined, not doubled). */
  pruneNow(): Promise<MachinePruneResult[]> {
    if (this.running) return this.running as Promise<MachinePruneResult[]>;
    const run = (async () => {
      const out: MachinePruneResult[] = [];
      for (const [machineId, replica] of this.replicas()) {
        if (this.stopped) break;
        try {
          out.push(await pruneReplica(machineId, replica, this.opts));
        } catch (e) {
          // A closed replica, or a deletion that failed: the next pass tries again.
          if (!this.stopped)
            this.opts.logger.error({ machineId, err: (e as Error).message }, 'retention: pruning failed');
        }
      }
      return out;
    })();
    this.running = run.finally(() => {
      this.running = undefined;
    });
    return run;
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
