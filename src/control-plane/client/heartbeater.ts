// A component's heartbeat to the configuration server: one at start, then every 15 s
// (REBOUND_HEARTBEAT_SECONDS overrides it, for tests). A server that cannot be reached or that
// refuses a heartbeat is logged and tried again at the next beat: the component keeps working.
import type { Logger } from 'pino';
import { type HeartbeatAnswer, type HeartbeatRequest, heartbeatSeconds } from '../heartbeat-contract.js';
import type { ApiClient } from './api-client.js';

export interface HeartbeaterOptions {
  client: ApiClient;
  logger: Logger;
  /** What to send, computed at each beat. */
  payload: () => HeartbeatRequest;
  /** Every answer, for settings the server hands out (e.g. a future `replication` field). */
  onAnswer?: (answer: HeartbeatAnswer & Record<string, unknown>) => void;
}

export class Heartbeater {
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> = Promise.resolve();
  private stopped = false;
  private failing = false;
  private intervalSeconds = heartbeatSeconds();
  /** Heartbeats the server accepted (for status and tests). */
  accepted = 0;

  constructor(private readonly opts: HeartbeaterOptions) {}

  start(): void {
    this.beat();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.beat(), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  private beat(): void {
    this.inflight = this.send().finally(() => this.schedule());
  }

  private async send(): Promise<void> {
    const { client, logger } = this.opts;
    try {
      const answer = await client.post<HeartbeatAnswer & Record<string, unknown>>(
        '/api/v1/heartbeats',
        this.opts.payload(),
      );
      this.accepted++;
      this.intervalSeconds = heartbeatSeconds(answer.nextHeartbeatSeconds);
      if (this.failing) logger.info('heartbeats to the configuration server accepted again');
      this.failing = false;
      this.opts.onAnswer?.(answer);
    } catch (e) {
      this.failing = true;
      logger.warn({ err: (e as Error).message }, `heartbeat failed: ${(e as Error).message}`);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.inflight;
  }
}
