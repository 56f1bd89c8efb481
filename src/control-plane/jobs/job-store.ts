// Jobs and their steps in the database (tables jobs and job_steps). Every change the runner
// makes is written here as it happens, so the API, `rebound jobs --watch` and a restarted
// server all see the same thing.
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database, Job, JobStep } from '../db/schema.js';
import { FINAL_JOB_STATES, type JobState } from './job-model.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface NewJob {
  kind: string;
  targetId: string | null;
  params: unknown;
  /** The names of its steps, in order. */
  steps: string[];
  requestedBy: string;
}

export type JobWithSteps = Job & { steps: JobStep[] };

/** Records a new job, Queued, with its steps Pending. Use inside the transaction that asks for it. */
export async function createJob(db: Db, input: NewJob, now: string): Promise<JobWithSteps> {
  const job: Job = {
    id: randomUUID(),
    kind: input.kind,
    target_id: input.targetId,
    state: 'Queued',
    progress_pct: 0,
    params_json: JSON.stringify(input.params ?? {}),
    error: null,
    created_at: now,
    started_at: null,
    ended_at: null,
    requested_by: input.requestedBy,
    cancel_requested_at: null,
  };
  await db.insertInto('jobs').values(job).execute();
  const steps: JobStep[] = input.steps.map((name, i) => ({
    id: randomUUID(),
    job_id: job.id,
    ordinal: i + 1,
    name,
    state: 'Pending',
    progress_pct: 0,
    message: null,
    error: null,
    started_at: null,
    ended_at: null,
  }));
  if (steps.length) await db.insertInto('job_steps').values(steps).execute();
  return { ...job, steps };
}

export async function stepsOf(db: Db, jobId: string): Promise<JobStep[]> {
  return db.selectFrom('job_steps').selectAll().where('job_id', '=', jobId).orderBy('ordinal').execute();
}

export async function jobWithSteps(db: Db, id: string): Promise<JobWithSteps | undefined> {
  const job = await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  return job && { ...job, steps: await stepsOf(db, id) };
}

/** The shortest prefix of a job id the API accepts in place of the whole id. */
export const MIN_ID_PREFIX = 8;

export type FindResult = { job: JobWithSteps } | { ambiguous: string[] } | undefined;

/** A job by its id or a unique prefix of at least MIN_ID_PREFIX characters. */
export async function findJob(db: Db, idOrPrefix: string): Promise<FindResult> {
  const exact = await jobWithSteps(db, idOrPrefix);
  if (exact) return { job: exact };
  if (idOrPrefix.length < MIN_ID_PREFIX || !/^[0-9a-f-]+$/.test(idOrPrefix)) return undefined;
  const rows = await db
    .selectFrom('jobs')
    .select('id')
    .where('id', 'like', `${idOrPrefix}%`)
    .limit(5)
    .execute();
  if (rows.length === 0) return undefined;
  if (rows.length > 1) return { ambiguous: rows.map((r) => r.id) };
  return { job: (await jobWithSteps(db, rows[0]!.id))! };
}

export interface JobFilter {
  states?: readonly JobState[];
  kind?: string;
  targetId?: string;
  /** Only jobs still active or that ended at or after this time (ISO). */
  since?: string;
  limit: number;
}

/** Jobs newest first, with their steps. */
export async function listJobs(db: Db, f: JobFilter): Promise<JobWithSteps[]> {
  let q = db.selectFrom('jobs').selectAll();
  if (f.states?.length) q = q.where('state', 'in', [...f.states]);
  if (f.kind) q = q.where('kind', '=', f.kind);
  if (f.targetId) q = q.where('target_id', '=', f.targetId);
  if (f.since) {
    const since = f.since;
    q = q.where((eb) => eb.or([eb('state', 'not in', [...FINAL_JOB_STATES]), eb('ended_at', '>=', since)]));
  }
  const jobs = await q.orderBy('created_at', 'desc').orderBy('id').limit(f.limit).execute();
  if (jobs.length === 0) return [];
  const steps = await db
    .selectFrom('job_steps')
    .selectAll()
    .where(
      'job_id',
      'in',
      jobs.map((j) => j.id),
    )
    .orderBy('ordinal')
    .execute();
  const byJob = new Map<string, JobStep[]>();
  for (const s of steps) {
    const list = byJob.get(s.job_id) ?? [];
    list.push(s);
    byJob.set(s.job_id, list);
  }
  return jobs.map((j) => ({ ...j, steps: byJob.get(j.id) ?? [] }));
}

/** The job not yet ended that acts on this target, if any (one at a time per item). */
export async function activeJobFor(db: Db, targetId: string): Promise<Job | undefined> {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('target_id', '=', targetId)
    .where('state', 'not in', [...FINAL_JOB_STATES])
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
}

export async function updateJob(
  db: Db,
  id: string,
  set: Partial<Omit<Job, 'id' | 'kind' | 'created_at'>>,
): Promise<void> {
  await db.updateTable('jobs').set(set).where('id', '=', id).execute();
}

export async function updateStep(
  db: Db,
  id: string,
  set: Partial<Omit<JobStep, 'id' | 'job_id' | 'ordinal' | 'name'>>,
): Promise<void> {
  await db.updateTable('job_steps').set(set).where('id', '=', id).execute();
}
