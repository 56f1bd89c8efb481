// How jobs read in a terminal: the list, one job with its steps, the lines `--watch` prints as
// steps change, and the exit code a watched job ends with. Pure.
import { EXIT } from './exit-codes.js';
import { type Column, formatTable } from './output.js';

export interface StepJson {
  ordinal: number;
  name: string;
  state: string;
  progress_pct: number;
  message: string | null;
  error: string | null;
  started_at: string | null;
  ended_at: string | null;
}

export interface JobJson {
  id: string;
  kind: string;
  target_id: string | null;
  state: string;
  progress_pct: number;
  error: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  requested_by: string;
  cancel_requested_at: string | null;
  steps: StepJson[];
}

const FINAL = ['Succeeded', 'Warning', 'Failed', 'Cancelled'];
export const isEnded = (j: Pick<JobJson, 'state'>) => FINAL.includes(j.state);

/** The step a job is at: the first not yet done, else the one that failed, else the last. */
export function currentStep(j: JobJson): StepJson | undefined {
  const done = ['Succeeded', 'Warning', 'Skipped', 'Failed', 'Cancelled'];
  return (
    j.steps.find((s) => !done.includes(s.state)) ??
    j.steps.find((s) => s.state === 'Failed') ??
    j.steps.at(-1)
  );
}

const pct = (n: number) => `${Math.floor(n)}%`;
const shortId = (id: string | null) => (id ? id.slice(0, 8) : null);

export const JOB_COLUMNS: Column<JobJson>[] = [
  { header: 'id', value: (j) => shortId(j.id) },
  { header: 'kind', value: (j) => j.kind },
  { header: 'target', value: (j) => shortId(j.target_id) },
  { header: 'state', value: (j) => j.state },
  { header: 'progress', value: (j) => pct(j.progress_pct) },
  {
    header: 'step',
    value: (j) => {
      const s = currentStep(j);
      return s ? `${s.ordinal}/${j.steps.length} ${s.name}` : null;
    },
  },
  { header: 'created', value: (j) => j.created_at },
];

export function formatJob(j: JobJson): string {
  const lines = [
    `job ${j.id}: ${j.kind}, ${j.state} ${pct(j.progress_pct)}`,
    `target: ${j.target_id ?? '-'}; requested by ${j.requested_by} at ${j.created_at}`,
  ];
  if (j.started_at) lines.push(`started: ${j.started_at}${j.ended_at ? `; ended: ${j.ended_at}` : ''}`);
  if (j.cancel_requested_at && !isEnded(j)) lines.push(`cancellation requested at ${j.cancel_requested_at}`);
  if (j.error) lines.push(`error: ${j.error}`);
  lines.push(
    formatTable(j.steps, [
      { header: '#', value: (s) => s.ordinal },
      { header: 'step', value: (s) => s.name },
      { header: 'state', value: (s) => s.state },
      { header: 'progress', value: (s) => pct(s.progress_pct) },
      { header: 'started', value: (s) => s.started_at },
      { header: 'ended', value: (s) => s.ended_at },
      { header: 'message', value: (s) => s.error ?? s.message },
    ]),
  );
  return lines.join('\n');
}

/** What a watcher remembers of a step, to print only what changed. */
export function stepKey(s: StepJson): string {
  return `${s.state}|${Math.floor(s.progress_pct)}|${s.message ?? ''}|${s.error ?? ''}`;
}

export function stepLine(j: JobJson, s: StepJson): string {
  const detail = s.error ?? s.message;
  return (
    `job ${shortId(j.id)} ${j.kind}: step ${s.ordinal}/${j.steps.length} '${s.name}' ${s.state}` +
    (s.state === 'Running' ? ` ${pct(s.progress_pct)}` : '') +
    (detail ? `: ${detail}` : '')
  );
}

export function endLine(j: JobJson): string {
  return `job ${shortId(j.id)} ${j.kind}: ${j.state}${j.error ? `: ${j.error}` : ''}`;
}

/** 0 when every job did what it was asked (Succeeded or Warning); else Failed beats Cancelled. */
export function watchExitCode(states: readonly string[]): number {
  if (states.includes('Failed')) return EXIT.jobFailed;
  if (states.includes('Cancelled')) return EXIT.jobCancelled;
  return EXIT.ok;
}
