// Application-consistent points: run the freeze hook, and while the workload is frozen
// make the log durable and insert a bookmark (the master target keeps bookmarks as `app`
// points); then always run the thaw hook, whatever the freeze did. A freeze that fails
// gives no app point: its reason is logged and a crash-consistent flush is taken instead.
// Taken at the policy's frequency and on request (`rebound agent app-point`).
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Agent } from './agent.js';
import { runHook } from './hook-runner.js';

export const DEFAULT_APP_CONSISTENT_MINUTES = 60;
export const MAX_APP_CONSISTENT_MINUTES = 720;
export const DEFAULT_HOOK_TIMEOUT_MS = 60_000;

export interface FreezeHooks {
  /** Run with /bin/sh -c; exit 0 means the workload is quiesced until the thaw. */
  freeze: string;
  thaw: string;
  timeoutMs: number;
}

export interface AppPointsOptions {
  hooks: FreezeHooks | undefined;
  /** How often to take one; 0: only on request. */
  intervalMs: number;
  logger: Logger;
}

export interface AppPointResult {
  /** `app`: a bookmark taken while frozen; `crash`: the freeze failed, a flush was taken instead. */
  kind: 'app' | 'crash';
  /** The bookmark's (or the fallback flush's) sequence number; absent if the log took none. */
  seq?: number;
  tag: string;
  time: string;
  /** Why this is not an app-consistent point. */
  reason?: string;
  /** How long the workload stayed frozen (freeze start to thaw end). */
  frozenMs?: number;
  /** The thaw failed: the workload may still be frozen. */
  thawError?: string;
}

export interface AppPointsStatus {
  intervalMinutes: number;
  hooks?: { freeze: string; thaw: string; timeoutSeconds: number };
  /** Why no points are scheduled, when they are not. */
  off?: string;
  next?: string;
  taken: number;
  failed: number;
  last?: AppPointResult;
}

/** A request that cannot be served: no hooks (HTTP 409) or a bad tag (400). */
export class AppPointRefused extends Error {
  constructor(
    readonly status: 400 | 409,
    message: string,
  ) {
    super(message);
  }
}

export class AppPoints {
  private timer: NodeJS.Timeout | undefined;
  private nextAt: number | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private taken = 0;
  private failed = 0;
  private last: AppPointResult | undefined;

  constructor(
    private readonly agent: Agent,
    private readonly opts: AppPointsOptions,
  ) {}

  /** Exists from just before a freeze until its thaw has run: a thaw the agent owes. */
  private get freezingPath(): string {
    return join(this.agent.dataDir, 'app-point.freezing');
  }

  /**
   * Schedules points at the interval (if hooks are configured and the interval is not 0),
   * after running the thaw a killed agent may have left undone.
   */
  async start(): Promise<void> {
    if (existsSync(this.freezingPath)) {
      const thaw = this.opts.hooks
        ? await runHook('thaw', this.opts.hooks.thaw, this.opts.hooks.timeoutMs, {
            REBOUND_DATA_DIR: this.agent.dataDir,
          })
        : { ok: false as const, reason: 'no --thaw-script given' };
      if (thaw.ok) this.opts.logger.warn('the agent stopped during a freeze: ran the thaw hook now');
      else
        this.opts.logger.error(
          { reason: thaw.reason },
          'the agent stopped during a freeze and the thaw failed: the workload may still be frozen',
        );
      unlinkSync(this.freezingPath);
    }
    if (this.opts.intervalMs > 0 && this.opts.hooks) this.schedule();
    else if (this.opts.intervalMs > 0)
      this.opts.logger.info('app-consistent points are off: no --freeze-script/--thaw-script given');
  }

  private schedule(): void {
    if (this.stopped) return;
    this.nextAt = Date.now() + this.opts.intervalMs;
    this.timer = setTimeout(() => {
      this.nextAt = undefined;
      void this.take()
        .catch(() => undefined)
        .finally(() => this.schedule());
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /** Takes one point now (after any point in progress). */
  take(tag?: string): Promise<AppPointResult> {
    if (!this.opts.hooks) {
      return Promise.reject(
        new AppPointRefused(
          409,
          'no app-consistent hooks: start the agent with --freeze-script and --thaw-script ' +
            '(or quiesce the workload yourself and use rebound agent bookmark)',
        ),
      );
    }
    if (tag !== undefined && Buffer.byteLength(tag) > 4096)
      return Promise.reject(new AppPointRefused(400, 'tag longer than 4096 bytes'));
    const hooks = this.opts.hooks;
    const p = this.running.then(() => this.takeNow(hooks, tag ?? `app:${new Date().toISOString()}`));
    this.running = p.catch(() => undefined);
    return p;
  }

  private async takeNow(hooks: FreezeHooks, tag: string): Promise<AppPointResult> {
    const { agent, opts } = this;
    const logger = opts.logger;
    const env = { REBOUND_DATA_DIR: agent.dataDir, REBOUND_TAG: tag };
    const frozeAt = Date.now();
    writeFileSync(this.freezingPath, `${tag}\n`);
    const freeze = await runHook('freeze', hooks.freeze, hooks.timeoutMs, env);
    let seq: number | undefined;
    let time = new Date().toISOString();
    let inWindowError: string | undefined;
    let thawError: string | undefined;
    try {
      if (freeze.ok) {
        // Inside the window: everything the workload wrote is made durable, then the point.
        // Locally only: the thaw must not wait for a remote acknowledgement.
        await agent.flush({ localOnly: true });
        time = new Date().toISOString();
        seq = await agent.bookmark(tag, { localOnly: true });
        if (seq === undefined) inWindowError = 'the change log is full or failing: bookmark not recorded';
      }
    } catch (e) {
      inWindowError = `the bookmark failed: ${(e as Error).message}`;
    } finally {
      const thaw = await runHook('thaw', hooks.thaw, hooks.timeoutMs, env);
      unlinkSync(this.freezingPath);
      if (!thaw.ok) {
        thawError = thaw.reason;
        logger.error({ reason: thaw.reason, tag }, 'thaw hook failed: the workload may still be frozen');
      }
    }
    const frozenMs = Date.now() - frozeAt;
    if (!freeze.ok || seq === undefined) {
      const reason = freeze.ok ? inWindowError! : freeze.reason;
      this.failed++;
      logger.warn({ reason, tag }, 'no app-consistent point: taking a crash-consistent flush instead');
      const crashSeq = await agent.flush();
      const result: AppPointResult = {
        kind: 'crash',
        seq: crashSeq,
        tag,
        time: new Date().toISOString(),
        reason,
        ...(thawError ? { thawError } : {}),
      };
      this.last = result;
      return result;
    }
    // The point is taken; it is acknowledged under the agent's acknowledgement mode.
    await agent.acknowledged(seq);
    this.taken++;
    const result: AppPointResult = {
      kind: 'app',
      seq,
      tag,
      time,
      frozenMs,
      ...(thawError ? { thawError } : {}),
    };
    this.last = result;
    logger.info({ seq, tag, frozenMs }, 'app-consistent point taken');
    return result;
  }

  status(): AppPointsStatus {
    const h = this.opts.hooks;
    return {
      intervalMinutes: this.opts.intervalMs / 60_000,
      ...(h ? { hooks: { freeze: h.freeze, thaw: h.thaw, timeoutSeconds: h.timeoutMs / 1000 } } : {}),
      ...(!h
        ? { off: 'no freeze/thaw hooks' }
        : this.opts.intervalMs === 0
          ? { off: 'interval 0: only on request' }
          : {}),
      ...(this.nextAt ? { next: new Date(this.nextAt).toISOString() } : {}),
      taken: this.taken,
      failed: this.failed,
      ...(this.last ? { last: this.last } : {}),
    };
  }

  /** No more scheduled points; a point in progress finishes (its thaw runs) first. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.nextAt = undefined;
    await this.running;
  }
}
