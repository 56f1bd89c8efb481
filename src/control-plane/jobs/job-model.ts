// What a job and its steps can be, and the rules that derive a job's progress and final state
// from its steps. Pure: the runner and the API share it, and the unit tests pin it down.

export const JOB_STATES = ['Queued', 'Running', 'Succeeded', 'Warning', 'Failed', 'Cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** A job in one of these has ended and never changes again. */
export const FINAL_JOB_STATES: readonly JobState[] = ['Succeeded', 'Warning', 'Failed', 'Cancelled'];

export const STEP_STATES = [
  'Pending',
  'Running',
  'WaitingForConfirmation',
  'Succeeded',
  'Warning',
  'Failed',
  'Skipped',
  'Cancelled',
] as const;
export type StepState = (typeof STEP_STATES)[number];

/** A step in one of these is done; the runner moves on (or the job has ended). */
export const FINAL_STEP_STATES: readonly StepState[] = [
  'Succeeded',
  'Warning',
  'Failed',
  'Skipped',
  'Cancelled',
];

export function isFinalJobState(s: string): boolean {
  return (FINAL_JOB_STATES as readonly string[]).includes(s);
}

export function isFinalStepState(s: string): boolean {
  return (FINAL_STEP_STATES as readonly string[]).includes(s);
}

/** A job that ended Succeeded or Warning did what it was asked. */
export function jobSucceeded(s: string): boolean {
  return s === 'Succeeded' || s === 'Warning';
}

/** Steps whose work counts as done in full. */
const DONE_STEP_STATES: readonly string[] = ['Succeeded', 'Warning', 'Skipped'];

/**
 * The job's progress, 0-100: each step's progress weighted by its share of the work (a step
 * that succeeded, warned or was skipped counts in full; a failed or cancelled one as far as it got).
 */
export function jobProgress(
  steps: readonly { state: string; progress_pct: number; weight: number }[],
): number {
  const total = steps.reduce((n, s) => n + s.weight, 0);
  if (total <= 0) return 0;
  const done = steps.reduce(
    (n, s) =>
      n + s.weight * (DONE_STEP_STATES.includes(s.state) ? 100 : Math.min(100, Math.max(0, s.progress_pct))),
    0,
  );
  return Math.round((done / total) * 10) / 10;
}

/** The final state of a job all of whose steps ran to their end: Warning if any step warned. */
export function completedJobState(steps: readonly { state: string }[]): 'Succeeded' | 'Warning' {
  return steps.some((s) => s.state === 'Warning') ? 'Warning' : 'Succeeded';
}

/** Why a job is failed when the server stopped in the middle of a step that cannot be re-run. */
export function interruptedReason(step: string): string {
  return `the configuration server stopped while step '${step}' was running`;
}

/** Clamps a reported progress to 0-100 with one decimal. */
export function clampProgress(pct: number): number {
  if (!Number.isFinite(pct)) return 0;
  return Math.round(Math.min(100, Math.max(0, pct)) * 10) / 10;
}
