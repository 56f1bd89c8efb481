// What a change does when the change log is full (the next hop is behind or away):
// `pull-ahead` (default) marks its range in the dirty bitmap at once (resync required
// later, the workload never waits); `block` holds the writer until trimming makes room
// (the log stays the bounded queue), at most the block timeout; after a timeout, changes
// pull ahead without waiting until the log has room again (a remote that is gone must not
// cost every write the whole timeout).
import type { Logger } from 'pino';

export const CONGESTION_POLICIES = ['pull-ahead', 'block'] as const;
export type CongestionPolicy = (typeof CONGESTION_POLICIES)[number];

/** How often blocked writers look for room again (trims free whole segments). */
const RECHECK_MS = 10;

export interface CongestionStatus {
  policy: CongestionPolicy;
  /** none; blocking: writers wait for room now; pulled-ahead: changes went to the bitmap since start. */
  state: 'none' | 'blocking' | 'pulled-ahead';
  blockedNow: number;
  /** Changes that waited for room, and those that went to the dirty bitmap, since start. */
  blockedTotal: number;
  pulledAhead: number;
  blockTimeoutSeconds: number;
}

export class Congestion {
  private readonly waiters = new Set<() => void>();
  private ticker: NodeJS.Timeout | undefined;
  private blockedNow = 0;
  private blockedTotal = 0;
  private pulledAhead = 0;
  /** A block timed out and the log has had no room since: do not block. */
  private pullingAhead = false;

  constructor(
    readonly policy: CongestionPolicy,
    private readonly blockTimeoutMs: number,
    private readonly logger: Logger,
  ) {}

  /** A change found room in the log: blocking applies again. */
  noteRoom(): void {
    this.pullingAhead = false;
  }

  /**
   * Called when the log has no room for a change: under `block`, waits until hasRoom()
   * or the timeout; returns whether there is room now.
   */
  async waitForRoom(hasRoom: () => boolean): Promise<boolean> {
    if (this.policy !== 'block' || this.pullingAhead) return hasRoom();
    this.blockedTotal++;
    this.blockedNow++;
    try {
      return await this.block(hasRoom);
    } finally {
      this.blockedNow--;
    }
  }

  private async block(hasRoom: () => boolean): Promise<boolean> {
    const deadline = Date.now() + this.blockTimeoutMs;
    while (!hasRoom()) {
      if (Date.now() >= deadline) {
        if (!this.pullingAhead) {
          this.pullingAhead = true;
          this.logger.warn(
            { blockTimeoutSeconds: this.blockTimeoutMs / 1000 },
            'change log still full after the block timeout: changes are pulled ahead into the dirty bitmap',
          );
        }
        return false;
      }
      await new Promise<void>((resolve) => {
        this.waiters.add(resolve);
        this.ticker ??= setInterval(() => this.tick(), RECHECK_MS);
      });
    }
    this.pullingAhead = false;
    return true;
  }

  private tick(): void {
    const ready = [...this.waiters];
    this.waiters.clear();
    for (const w of ready) w();
    if (this.waiters.size === 0 && ready.length === 0) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  /** A change went to the dirty bitmap because the log could not take it. */
  notePulledAhead(): void {
    this.pulledAhead++;
  }

  status(): CongestionStatus {
    return {
      policy: this.policy,
      state: this.blockedNow > 0 ? 'blocking' : this.pulledAhead > 0 ? 'pulled-ahead' : 'none',
      blockedNow: this.blockedNow,
      blockedTotal: this.blockedTotal,
      pulledAhead: this.pulledAhead,
      blockTimeoutSeconds: this.blockTimeoutMs / 1000,
    };
  }
}
