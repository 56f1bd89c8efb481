// Acknowledgement modes: where a FLUSH (or FUA write) must be durable before the workload
// hears it is done. `async`: the agent's change log (always true once the log is synced).
// `process-server`: also the process server's cache. `sync`: also the master target's journal.
// A remote that does not answer within the timeout degrades the gate: acknowledgements are
// then made on local durability only, logged and visible, until the remote has caught up.
// A remote durability that did not happen is never reported. See docs/architecture.md.
import type { Logger } from 'pino';

export const ACK_MODES = ['async', 'process-server', 'sync'] as const;
export type AckMode = (typeof ACK_MODES)[number];
export const DEFAULT_ACK_TIMEOUT_MS = 10_000;

const PLACE: Record<AckMode, string> = {
  async: "the agent's change log",
  'process-server': "the process server's cache",
  sync: "the master target's journal",
};

export interface AckGateStatus {
  mode: AckMode;
  /** Where an acknowledged FLUSH is durable while the state is `ok`. */
  durableAt: string;
  /** ok: acknowledgements wait for the mode's place; degraded: only for the local log. */
  state: 'ok' | 'degraded';
  /** Highest seq the mode's remote place has confirmed durable (process server or master target). */
  remoteDurableThrough: number;
  /** Highest seq acknowledged on local durability only and not yet confirmed remotely (0: none). */
  owedThrough: number;
  /** FLUSH/FUA requests waiting for the remote now, and how long the oldest has waited. */
  waiting: number;
  oldestWaitMs: number;
  timeoutSeconds: number;
  /** Times the gate degraded since the agent started. */
  degradations: number;
  degradedSince?: string;
  reason?: string;
}

interface Waiter {
  seq: number;
  since: number;
  resolve: () => void;
  timer: NodeJS.Timeout;
}

export interface AckGateOptions {
  mode: AckMode;
  timeoutMs?: number;
  logger: Logger;
}

export class AckGate {
  readonly mode: AckMode;
  readonly timeoutMs: number;
  private remote = 0;
  private owed = 0;
  /** While degraded: the gate returns to the mode once the remote has this seq. */
  private catchUpTarget = 0;
  private degraded: { since: number; reason: string } | undefined;
  private degradations = 0;
  private waiters: Waiter[] = [];
  private closed = false;
  /** Why the remote may not be answering (set by the shipper), for the degrade reason. */
  remoteProblem: (() => string | undefined) | undefined;

  constructor(private readonly opts: AckGateOptions) {
    this.mode = opts.mode;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
  }

  /** Whether acknowledgements involve a remote place at all. */
  get remoteMode(): boolean {
    return this.mode !== 'async';
  }

  /**
   * Resolves when the change or marker at seq (and so everything before it, which is
   * already durable in the local log) may be acknowledged under this mode.
   */
  wait(seq: number): Promise<void> {
    this.opts.logger.debug({ seq, remoteDurableThrough: this.remote }, 'ack gate: wait');
    if (!this.remoteMode || this.closed || seq <= this.remote) return Promise.resolve();
    if (this.degraded) {
      this.owed = Math.max(this.owed, seq);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const w: Waiter = {
        seq,
        since: Date.now(),
        resolve,
        timer: setTimeout(() => this.timedOut(w), this.timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** The remote place confirms everything <= seq durable. */
  remoteDurable(seq: number): void {
    this.opts.logger.debug({ seq, remoteDurableThrough: this.remote }, 'ack gate: remote durable');
    if (seq <= this.remote) return;
    this.remote = seq;
    if (this.waiters.some((w) => w.seq <= seq)) {
      this.waiters = this.waiters.filter((w) => {
        if (w.seq > seq) return true;
        clearTimeout(w.timer);
        w.resolve();
        return false;
      });
    }
    if (this.degraded && seq >= this.catchUpTarget) {
      const was = this.degraded;
      this.degraded = undefined;
      this.opts.logger.info(
        {
          ackMode: this.mode,
          remoteDurableThrough: seq,
          degradedForMs: Date.now() - was.since,
          owedThrough: this.owed > seq ? this.owed : 0,
        },
        `acknowledgements wait for ${PLACE[this.mode]} again: it has caught up`,
      );
    }
    if (this.owed <= seq) this.owed = 0;
  }

  /** Acknowledgements cannot wait for the remote at all (e.g. it cannot relay): degrade now. */
  degrade(reason: string): void {
    if (!this.remoteMode) return;
    if (!this.degraded) {
      this.degraded = { since: Date.now(), reason };
      this.degradations++;
      this.opts.logger.warn(
        {
          ackMode: this.mode,
          reason,
          remoteDurableThrough: this.remote,
          timeoutSeconds: this.timeoutMs / 1000,
        },
        `acknowledgement mode ${this.mode} degraded to async: flushes are acknowledged once durable in the agent's change log only`,
      );
    }
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      this.owed = Math.max(this.owed, w.seq);
      w.resolve();
    }
    this.waiters = [];
    this.catchUpTarget = Math.max(this.catchUpTarget, this.owed);
  }

  private timedOut(w: Waiter): void {
    if (!this.waiters.includes(w)) return;
    const problem = this.remoteProblem?.();
    this.degrade(
      `no acknowledgement from ${PLACE[this.mode]} for seq ${w.seq} within ${this.timeoutMs / 1000} s` +
        (problem ? ` (${problem})` : ''),
    );
  }

  /** Stopping: every waiter is answered on local durability (the stop flushes the log). */
  close(): void {
    this.closed = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.waiters = [];
  }

  status(): AckGateStatus {
    const now = Date.now();
    const oldest = this.waiters.reduce((t, w) => Math.min(t, w.since), now);
    return {
      mode: this.mode,
      durableAt: PLACE[this.mode],
      state: this.degraded ? 'degraded' : 'ok',
      remoteDurableThrough: this.remote,
      owedThrough: this.owed > this.remote ? this.owed : 0,
      waiting: this.waiters.length,
      oldestWaitMs: now - oldest,
      timeoutSeconds: this.timeoutMs / 1000,
      degradations: this.degradations,
      ...(this.degraded
        ? { degradedSince: new Date(this.degraded.since).toISOString(), reason: this.degraded.reason }
        : {}),
    };
  }
}
