// Health as a list of named problems, so any part can add its own check (a retention
// volume filling up, a resync in progress) and operators, metrics and logs see the
// same codes. A monitor logs each problem when it appears and when it clears.
import type { Logger } from 'pino';

export interface HealthProblem {
  /** Stable, kebab-case name of the problem (alerts and scripts match on it). */
  code: string;
  /** What is wrong, for a person. */
  message: string;
}

/** A check of one replicated item (a protected machine): the problems it finds now. */
export type HealthCheck = (machineId: string) => HealthProblem[];

/** Named checks, run in the order added; a check that throws becomes a problem of its own. */
export class HealthChecks {
  private readonly checks: { name: string; check: HealthCheck }[] = [];

  add(name: string, check: HealthCheck): void {
    this.checks.push({ name, check });
  }

  run(machineId: string): HealthProblem[] {
    const out: HealthProblem[] = [];
    for (const { name, check } of this.checks) {
      try {
        out.push(...check(machineId));
      } catch (e) {
        out.push({
          code: 'health-check-failed',
          message: `health check ${name} failed: ${(e as Error).message}`,
        });
      }
    }
    return out;
  }
}

/** What a monitor reads each round, per machine. */
export interface MonitoredItem {
  machineId: string;
  seq: number;
  rpoSeconds?: number;
  health: HealthProblem[];
}

export interface HealthMonitorOptions {
  what: string;
  logger: Logger;
  items: () => MonitoredItem[];
  /** How often health is evaluated (default 5 s). */
  intervalMs?: number;
  /** How often a status line per machine is logged at info (default 60 s; 0 = never). */
  statusEveryMs?: number;
}

/** Logs problems as they appear (warn) and clear (info), and a periodic status line per machine. */
export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly known = new Map<string, Map<string, string>>();
  private lastStatus = 0;

  constructor(private readonly opts: HealthMonitorOptions) {}

  start(): void {
    this.timer ??= setInterval(() => this.round(), this.opts.intervalMs ?? 5000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One evaluation (exposed for tests). */
  round(now = Date.now()): void {
    const { logger, what } = this.opts;
    const statusEvery = this.opts.statusEveryMs ?? 60_000;
    const logStatus = statusEvery > 0 && now - this.lastStatus >= statusEvery;
    if (logStatus) this.lastStatus = now;
    for (const it of this.opts.items()) {
      const fields = { machineId: it.machineId, seq: it.seq, rpoSeconds: roundRpo(it.rpoSeconds) };
      const before = this.known.get(it.machineId) ?? new Map<string, string>();
      const current = new Map(it.health.map((p) => [p.code, p.message]));
      for (const [code, message] of current) {
        if (!before.has(code)) logger.warn({ ...fields, code, problem: message }, `${what}: health problem`);
      }
      for (const [code] of before) {
        if (!current.has(code)) logger.info({ ...fields, code }, `${what}: health problem cleared`);
      }
      this.known.set(it.machineId, current);
      if (logStatus) logger.info({ ...fields, problems: [...current.keys()] }, `${what}: replication status`);
    }
  }
}

/** RPO for logs and status: milliseconds are noise. */
export function roundRpo(rpo: number | undefined): number | undefined {
  return rpo === undefined ? undefined : Math.round(rpo * 10) / 10;
}
