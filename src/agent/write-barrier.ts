// The group barrier of a replication group: while held, new writes of this agent's
// disks wait before their log record (not completed, not logged), so a coordinator can
// hold every member, take one bookmark on each, and release: the bookmarks then form a
// crash-consistent point common to all of them (a write that depends on another machine's
// completed write cannot be on the wrong side). A hold always ends by itself after its
// timeout: a lost coordinator never leaves a workload stuck.

export const DEFAULT_HOLD_MS = 10_000;
export const MAX_HOLD_MS = 60_000;

export interface BarrierStatus {
  held: boolean;
  /** ISO times, while held. */
  since?: string;
  releaseAt?: string;
  /** Writes waiting now. */
  waiting: number;
  /** Holds that ended by their timeout rather than a release, since the start. */
  timedOut: number;
}

interface Hold {
  since: number;
  until: number;
  timer: NodeJS.Timeout;
  released: Promise<void>;
  release: () => void;
}

export class WriteBarrier {
  private current: Hold | undefined;
  private waiting = 0;
  private timedOut = 0;

  constructor(private readonly onTimeout?: (heldMs: number) => void) {}

  get held(): boolean {
    return this.current !== undefined;
  }

  /** Holds new writes for at most timeoutMs (a hold already in place is extended to now + timeoutMs). */
  hold(timeoutMs = DEFAULT_HOLD_MS): BarrierStatus {
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_HOLD_MS) {
      throw new RangeError(
        `the hold timeout must be an integer from 1 to ${MAX_HOLD_MS} ms, not ${timeoutMs}`,
      );
    }
    const now = Date.now();
    if (this.current) clearTimeout(this.current.timer);
    else {
      let release!: () => void;
      const released = new Promise<void>((r) => {
        release = r;
      });
      this.current = {
        since: now,
        until: 0,
        timer: undefined as unknown as NodeJS.Timeout,
        released,
        release,
      };
    }
    const h = this.current;
    h.until = now + timeoutMs;
    h.timer = setTimeout(() => {
      this.timedOut++;
      this.onTimeout?.(Date.now() - h.since);
      this.release();
    }, timeoutMs);
    h.timer.unref();
    return this.status();
  }

  /** Lets the held writes go; false when nothing was held. */
  release(): boolean {
    const h = this.current;
    if (!h) return false;
    this.current = undefined;
    clearTimeout(h.timer);
    h.release();
    return true;
  }

  /** Resolves at once when not held, otherwise when the hold ends. */
  async wait(): Promise<void> {
    const h = this.current;
    if (!h) return;
    this.waiting++;
    try {
      await h.released;
    } finally {
      this.waiting--;
    }
  }

  status(): BarrierStatus {
    const h = this.current;
    return {
      held: h !== undefined,
      ...(h ? { since: new Date(h.since).toISOString(), releaseAt: new Date(h.until).toISOString() } : {}),
      waiting: this.waiting,
      timedOut: this.timedOut,
    };
  }
}
