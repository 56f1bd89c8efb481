// The job runner: a background service of the configuration server that runs each job's steps
// in order and writes every change (state, progress, message, times, error) to the database
// as it happens.
//
// Crash semantics (S17: never left Running forever). On start, every job the database shows
// Running was interrupted by the server stopping:
//   - a cancellation was asked for: the job ends Cancelled;
//   - a step was Running: if it is resumable (idempotent) it is run again, otherwise the step
//     and the job fail with "the configuration server stopped while step 'X' was running";
//   - a step waits for a confirmation, or the server stopped between steps: the job goes on.
// A graceful stop (SIGTERM) aborts the steps in progress and leaves the same state behind, so
// a stop and a crash are handled alike on the next start.
import type { ServerContext } from '../context.js';
import type { Job, JobStep } from '../db/schema.js';
import {
  isConfirmation,
  type JobDefinition,
  type JobOutcome,
  type JobRegistry,
  type StepContext,
  type StepDefinition,
} from './definitions.js';
import {
  clampProgress,
  completedJobState,
  interruptedReason,
  isFinalStepState,
  jobProgress,
} from './job-model.js';
import { jobSignals } from './job-signals.js';
import { stepsOf, updateJob, updateStep } from './job-store.js';

/** The abort reason when a job is cancelled. */
export class JobCancelled extends Error {
  constructor() {
    super('the job was cancelled');
  }
}

/** The abort reason when the server stops: the step stays Running for the next start. */
export class ServerStopping extends Error {
  constructor() {
    super('the configuration server is stopping');
  }
}

export interface JobRunnerOptions {
  /** How often the database is looked at for new jobs and cancellations (default 1000 ms). */
  pollMs?: number;
  /** How long a stop waits for steps to end after aborting them (default 10 s). */
  stopGraceMs?: number;
}

interface Active {
  controller: AbortController;
  done: Promise<void>;
}

type StepEnd = 'done' | 'failed' | 'cancelled' | 'stopped';

export class JobRunner {
  private readonly active = new Map<string, Active>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private again = false;
  private stopping = false;
  private unsubscribe: (() => void) | undefined;
  private readonly pollMs: number;
  /** Waiters for a job's wake-up (a confirmation arrived), by job id. */
  private readonly wakers = new Map<string, Set<() => void>>();

  constructor(
    private readonly ctx: ServerContext,
    private readonly registry: JobRegistry,
    private readonly opts: JobRunnerOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 1000;
  }

  async start(): Promise<void> {
    await this.recover();
    this.unsubscribe = jobSignals(this.ctx).onWake((id) => {
      for (const w of this.wakers.get(id) ?? []) w();
      this.tickSoon();
    });
    this.tickSoon();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    for (const a of this.active.values()) a.controller.abort(new ServerStopping());
    const all = Promise.all([...this.active.values()].map((a) => a.done));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      all,
      new Promise((r) => {
        timer = setTimeout(r, this.opts.stopGraceMs ?? 10_000);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Settles what the last run of the server left behind (see the top of this file). */
  private async recover(): Promise<void> {
    const running = await this.ctx.db.selectFrom('jobs').selectAll().where('state', '=', 'Running').execute();
    for (const job of running) {
      const steps = await stepsOf(this.ctx.db, job.id);
      const def = this.registry.get(job.kind);
      if (job.cancel_requested_at) {
        await this.end(job, steps, def, { state: 'Cancelled', error: null });
        continue;
      }
      const interrupted = steps.find((s) => s.state === 'Running');
      if (!interrupted) continue;
      const sd = def ? this.definitions(def, job)?.[interrupted.ordinal - 1] : undefined;
      const resumable = sd !== undefined && (isConfirmation(sd) || sd.resumable);
      if (resumable) {
        this.ctx.logger.info({ job: job.id, step: interrupted.name }, 'job: resuming an interrupted step');
        continue;
      }
      const reason = interruptedReason(interrupted.name);
      this.ctx.logger.warn({ job: job.id, step: interrupted.name }, `job failed: ${reason}`);
      await updateStep(this.ctx.db, interrupted.id, {
        state: 'Failed',
        error: reason,
        ended_at: this.ctx.now(),
      });
      interrupted.state = 'Failed';
      await this.end(job, steps, def, { state: 'Failed', error: reason });
    }
  }

  private tickSoon(): void {
    if (this.stopping) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
  }

  /** Starts queued (and resumable running) jobs, passes on cancellations; then again after pollMs. */
  private async tick(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    try {
      const jobs = await this.ctx.db
        .selectFrom('jobs')
        .select(['id', 'state', 'cancel_requested_at'])
        .where('state', 'in', ['Queued', 'Running'])
        .orderBy('created_at')
        .execute();
      for (const j of jobs) {
        if (this.stopping) return;
        const a = this.active.get(j.id);
        if (a) {
          if (j.cancel_requested_at && !a.controller.signal.aborted) a.controller.abort(new JobCancelled());
          continue;
        }
        this.launch(j.id);
      }
    } catch (e) {
      if (!this.stopping) this.ctx.logger.error({ err: e }, 'job runner: cannot read the jobs');
    } finally {
      this.ticking = false;
      if (!this.stopping) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.tick(), this.again ? 0 : this.pollMs);
        this.again = false;
      }
    }
  }

  private launch(jobId: string): void {
    const controller = new AbortController();
    const entry: Active = { controller, done: Promise.resolve() };
    this.active.set(jobId, entry);
    entry.done = this.run(jobId, controller)
      .catch((e) => this.ctx.logger.error({ err: e, job: jobId }, 'job runner: a job could not be run'))
      .finally(() => this.active.delete(jobId));
  }

  private definitions(def: JobDefinition<unknown>, job: Job): StepDefinition<unknown>[] | undefined {
    try {
      return def.steps(JSON.parse(job.params_json));
    } catch {
      return undefined;
    }
  }

  private async run(jobId: string, controller: AbortController): Promise<void> {
    const { db } = this.ctx;
    let job = await db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
    if (!job || (job.state !== 'Queued' && job.state !== 'Running')) return;
    const steps = await stepsOf(db, jobId);
    const def = this.registry.get(job.kind);
    if (!def) {
      return this.end(job, steps, def, {
        state: 'Failed',
        error: `job kind '${job.kind}' is not known to this configuration server`,
      });
    }
    const defs = this.definitions(def, job);
    if (!defs || defs.length !== steps.length || defs.some((d, i) => d.name !== steps[i]!.name)) {
      return this.end(job, steps, def, {
        state: 'Failed',
        error: `the steps of job kind '${job.kind}' changed since this job was created`,
      });
    }
    if (job.state === 'Queued') {
      const now = this.ctx.now();
      const claimed = await db
        .updateTable('jobs')
        .set({ state: 'Running', started_at: now })
        .where('id', '=', jobId)
        .where('state', '=', 'Queued')
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 0) return;
      job = { ...job, state: 'Running', started_at: now };
      this.ctx.logger.info({ job: jobId, kind: job.kind }, 'job started');
    }
    const weights = defs.map((d) => d.weight ?? 1);
    const progress = async () => {
      const pct = jobProgress(steps.map((s, i) => ({ ...s, weight: weights[i]! })));
      if (pct !== job!.progress_pct) {
        job!.progress_pct = pct;
        await updateJob(db, jobId, { progress_pct: pct });
      }
    };
    for (let i = 0; i < steps.length; i++) {
      const row = steps[i]!;
      if (isFinalStepState(row.state)) continue;
      if (this.stopping) return;
      const fresh = await db
        .selectFrom('jobs')
        .select('cancel_requested_at')
        .where('id', '=', jobId)
        .executeTakeFirst();
      if (fresh?.cancel_requested_at || controller.signal.reason instanceof JobCancelled) {
        return this.end(job, steps, def, { state: 'Cancelled', error: null });
      }
      const sd = defs[i]!;
      const end = isConfirmation(sd)
        ? await this.awaitConfirmation(job, row, sd.confirmation(JSON.parse(job.params_json)), controller)
        : await this.runStep(job, row, sd, controller, progress);
      if (end === 'stopped') return;
      await progress();
      if (end === 'cancelled') return this.end(job, steps, def, { state: 'Cancelled', error: null });
      if (end === 'failed') {
        return this.end(job, steps, def, {
          state: 'Failed',
          error: `step '${row.name}' failed: ${row.error}`,
        });
      }
    }
    await this.end(job, steps, def, { state: completedJobState(steps), error: null });
  }

  /** Runs one work step; row is kept in step with what is written. */
  private async runStep(
    job: Job,
    row: JobStep,
    sd: Extract<StepDefinition<unknown>, { run: unknown }>,
    controller: AbortController,
    jobProgressChanged: () => Promise<void>,
  ): Promise<StepEnd> {
    const { db } = this.ctx;
    const resumed = row.state === 'Running';
    const set = async (s: Partial<JobStep>) => {
      Object.assign(row, s);
      await updateStep(db, row.id, s);
    };
    await set({
      state: 'Running',
      started_at: resumed ? (row.started_at ?? this.ctx.now()) : this.ctx.now(),
      message: resumed ? 'resumed after the configuration server restarted' : null,
      error: null,
      progress_pct: resumed ? row.progress_pct : 0,
    });
    const sc: StepContext<unknown> = {
      ctx: this.ctx,
      job,
      params: JSON.parse(job.params_json),
      signal: controller.signal,
      resumed,
      progress: async (pct, message) => {
        const p = clampProgress(pct);
        if (p === row.progress_pct && (message === undefined || message === row.message)) return;
        await set(message === undefined ? { progress_pct: p } : { progress_pct: p, message });
        await jobProgressChanged();
      },
      message: async (text) => {
        if (text !== row.message) await set({ message: text });
      },
    };
    try {
      const r = await sd.run(sc);
      const state = r?.skipped ? 'Skipped' : r?.warning ? 'Warning' : 'Succeeded';
      await set({
        state,
        progress_pct: 100,
        message: r?.skipped ?? r?.warning ?? r?.message ?? row.message,
        ended_at: this.ctx.now(),
      });
      return 'done';
    } catch (e) {
      const reason = controller.signal.aborted ? controller.signal.reason : undefined;
      if (reason instanceof ServerStopping) return 'stopped';
      if (reason instanceof JobCancelled) {
        await set({ state: 'Cancelled', message: 'cancelled while running', ended_at: this.ctx.now() });
        return 'cancelled';
      }
      const message = (e as Error).message ?? String(e);
      this.ctx.logger.warn({ job: job.id, step: row.name, err: e }, `job step failed: ${message}`);
      await set({ state: 'Failed', error: message, ended_at: this.ctx.now() });
      return 'failed';
    }
  }

  /** Waits until the step is confirmed (the API marks it Succeeded), cancelled or the server stops. */
  private async awaitConfirmation(
    job: Job,
    row: JobStep,
    prompt: string,
    controller: AbortController,
  ): Promise<StepEnd> {
    const { db } = this.ctx;
    if (row.state !== 'WaitingForConfirmation') {
      const s = {
        state: 'WaitingForConfirmation',
        started_at: this.ctx.now(),
        message: prompt,
        error: null,
      } as const;
      Object.assign(row, s);
      await updateStep(db, row.id, s);
      this.ctx.logger.info({ job: job.id, step: row.name }, `job waits for a confirmation: ${prompt}`);
    }
    const signal = controller.signal;
    for (;;) {
      const now = await db.selectFrom('job_steps').selectAll().where('id', '=', row.id).executeTakeFirst();
      if (now && now.state !== 'WaitingForConfirmation') {
        Object.assign(row, now);
        return 'done';
      }
      if (signal.aborted) {
        if (signal.reason instanceof ServerStopping) return 'stopped';
        Object.assign(row, { state: 'Cancelled', ended_at: this.ctx.now() });
        await updateStep(db, row.id, { state: 'Cancelled', ended_at: row.ended_at });
        return 'cancelled';
      }
      await this.waitForWake(job.id, signal);
    }
  }

  /** Resolves on a wake-up for this job, an abort, or after pollMs. */
  private waitForWake(jobId: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const set = this.wakers.get(jobId) ?? new Set();
      this.wakers.set(jobId, set);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0) this.wakers.delete(jobId);
        resolve();
      };
      const timer = setTimeout(done, this.pollMs);
      signal.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Writes the job's final state; steps left behind are Skipped (after a failure) or Cancelled. */
  private async end(
    job: Job,
    steps: JobStep[],
    def: JobDefinition<unknown> | undefined,
    outcome: JobOutcome,
  ): Promise<void> {
    const { db } = this.ctx;
    const now = this.ctx.now();
    const failedStep = steps.find((s) => s.state === 'Failed');
    for (const s of steps) {
      if (isFinalStepState(s.state)) continue;
      const set: Partial<JobStep> =
        outcome.state === 'Cancelled'
          ? { state: 'Cancelled', ended_at: s.started_at ? now : null }
          : {
              state: 'Skipped',
              message: failedStep ? `not run: step '${failedStep.name}' failed` : 'not run: the job failed',
            };
      Object.assign(s, set);
      await updateStep(db, s.id, set);
    }
    // A job that did not complete keeps the progress it had made.
    const pct = outcome.state === 'Succeeded' || outcome.state === 'Warning' ? 100 : job.progress_pct;
    await updateJob(db, job.id, {
      state: outcome.state,
      error: outcome.error,
      ended_at: now,
      started_at: job.started_at ?? now,
      progress_pct: pct,
    });
    const log = outcome.state === 'Failed' ? 'warn' : 'info';
    this.ctx.logger[log]({ job: job.id, kind: job.kind, error: outcome.error }, `job ${outcome.state}`);
    if (def?.finish) {
      try {
        await def.finish(this.ctx, { ...job, state: outcome.state, error: outcome.error }, outcome);
      } catch (e) {
        this.ctx.logger.error({ err: e, job: job.id }, 'job: its clean-up after the end failed');
      }
    }
  }
}
