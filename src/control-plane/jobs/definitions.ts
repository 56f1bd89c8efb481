// How a kind of job is written: a list of named steps run in order by the job runner
// (runner.ts). A step is either work (run) or a manual confirmation the job waits for
// (`rebound jobs confirm JOB STEP`). Every step says whether it may be run again after the
// configuration server stopped in its middle: a resumable step is idempotent and is re-run;
// any other fails the job with the reason.
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';

export interface StepContext<P> {
  ctx: ServerContext;
  job: Job;
  params: P;
  /** Aborted when the job is cancelled or the server stops: long waits must honour it. */
  signal: AbortSignal;
  /** True when this step is run again after a restart of the server interrupted it. */
  resumed: boolean;
  /** Records the step's progress (0-100) and, optionally, what it is doing now. */
  progress(pct: number, message?: string): Promise<void>;
  /** Records what the step is doing now. */
  message(text: string): Promise<void>;
}

/** How a step ended when it did not throw: succeeded (default), with a warning, or skipped. */
export type StepResult = undefined | { warning?: string; skipped?: string; message?: string };

export interface WorkStep<P> {
  name: string;
  /** Share of the job's work, for its progress (default 1). */
  weight?: number;
  /** Idempotent: re-run after the server stopped in its middle (otherwise the job fails). */
  resumable: boolean;
  run(s: StepContext<P>): Promise<StepResult>;
}

export interface ConfirmationStep<P> {
  name: string;
  weight?: number;
  /** What the operator must do or check before confirming (shown as the step's message). */
  confirmation: (params: P) => string;
}

export type StepDefinition<P> = WorkStep<P> | ConfirmationStep<P>;

export function isConfirmation<P>(s: StepDefinition<P>): s is ConfirmationStep<P> {
  return 'confirmation' in s;
}

export interface JobOutcome {
  state: 'Succeeded' | 'Warning' | 'Failed' | 'Cancelled';
  error: string | null;
}

export interface JobDefinition<P = unknown> {
  kind: string;
  /** The steps of a job with these parameters; must give the same names every time. */
  steps(params: P): StepDefinition<P>[];
  /** Called once the job has ended, to leave what it acted on consistent (e.g. an item failed). */
  finish?(ctx: ServerContext, job: Job, outcome: JobOutcome): Promise<void>;
}

/** The job kinds a server knows. Built-in kinds are added by jobs/kinds.ts. */
export class JobRegistry {
  private readonly kinds = new Map<string, JobDefinition<unknown>>();

  register<P>(def: JobDefinition<P>): void {
    if (this.kinds.has(def.kind)) throw new Error(`job kind '${def.kind}' is registered twice`);
    this.kinds.set(def.kind, def as JobDefinition<unknown>);
  }

  get(kind: string): JobDefinition<unknown> | undefined {
    return this.kinds.get(kind);
  }

  list(): string[] {
    return [...this.kinds.keys()];
  }
}

/** Resolves after ms, or rejects with the signal's reason when it is aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
