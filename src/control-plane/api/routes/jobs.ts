// Routes: jobs and their steps (S17). Jobs are made by the operations that need them (protect,
// unprotect, failover...); here they are listed, shown, cancelled, and their manual steps
// confirmed.
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import { isFinalJobState, JOB_STATES, type JobState } from '../../jobs/job-model.js';
import { jobSignals } from '../../jobs/job-signals.js';
import { findJob, type JobWithSteps, jobWithSteps, listJobs, MIN_ID_PREFIX } from '../../jobs/job-store.js';
import type { Api } from '../app.js';
import { ApiError, badRequest, conflict, notFound } from '../errors.js';
import { describePrincipal } from '../principal.js';
import { ErrorSchema } from '../schemas.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const JobStepSchema = Type.Object({
  id: Type.String(),
  ordinal: Type.Integer(),
  name: Type.String(),
  state: Type.String(),
  progress_pct: Type.Number(),
  message: Nullable(Type.String()),
  error: Nullable(Type.String()),
  started_at: Nullable(Type.String()),
  ended_at: Nullable(Type.String()),
});

export const JobSchema = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  target_id: Nullable(Type.String()),
  state: Type.String(),
  progress_pct: Type.Number(),
  params: Type.Unknown(),
  error: Nullable(Type.String()),
  created_at: Type.String(),
  started_at: Nullable(Type.String()),
  ended_at: Nullable(Type.String()),
  requested_by: Type.String(),
  cancel_requested_at: Nullable(Type.String()),
  steps: Type.Array(JobStepSchema),
});

/** A job as the API answers it: parameters parsed, steps in order. */
export function jobJson(j: JobWithSteps) {
  const { params_json, steps, ...rest } = j;
  return {
    ...rest,
    params: JSON.parse(params_json) as unknown,
    steps: steps.map(({ job_id: _j, ...s }) => s),
  };
}

/** The default window of `GET /api/v1/jobs`: active jobs and those ended in the last day. */
const DEFAULT_WINDOW_HOURS = 24;

export async function registerJobRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const load = async (id: string): Promise<JobWithSteps> => {
    const found = await findJob(ctx.db, id);
    if (!found) throw notFound(`job '${id}'`);
    if ('ambiguous' in found) {
      throw badRequest(`job id prefix '${id}' matches several jobs: ${found.ambiguous.join(', ')}`);
    }
    return found.job;
  };

  app.get(
    '/api/v1/jobs',
    {
      schema: {
        tags: ['jobs'],
        description:
          `Jobs, newest first. By default the active ones and those that ended in the last ${DEFAULT_WINDOW_HOURS} h; ` +
          'all=true lists every job.',
        querystring: Type.Object({
          state: Type.Optional(Type.String({ description: `comma-separated: ${JOB_STATES.join(', ')}` })),
          kind: Type.Optional(Type.String()),
          target: Type.Optional(Type.String()),
          all: Type.Optional(Type.Boolean()),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        }),
        response: { 200: Type.Array(JobSchema), 400: ErrorSchema },
      },
    },
    async (req) => {
      const q = req.query;
      const states = q.state
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const unknown = states?.find((s) => !(JOB_STATES as readonly string[]).includes(s));
      if (unknown) throw badRequest(`job state '${unknown}' is not known: use ${JOB_STATES.join(', ')}`);
      const since = q.all
        ? undefined
        : new Date(Date.parse(ctx.now()) - DEFAULT_WINDOW_HOURS * 3_600_000).toISOString();
      const jobs = await listJobs(ctx.db, {
        states: states as JobState[] | undefined,
        kind: q.kind,
        targetId: q.target,
        since,
        limit: q.limit ?? 100,
      });
      return jobs.map(jobJson);
    },
  );

  app.get(
    '/api/v1/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        description: `A job with its steps; the id or a unique prefix of at least ${MIN_ID_PREFIX} characters.`,
        params: Type.Object({ id: Type.String() }),
        response: { 200: JobSchema, 400: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (req) => jobJson(await load(req.params.id)),
  );

  app.post(
    '/api/v1/jobs/:id/cancel',
    {
      schema: {
        tags: ['jobs'],
        description:
          'Cancels a job: a queued job at once, a running one before its next step (a step that waits, ' +
          'such as a confirmation or an initial replication, stops waiting).',
        params: Type.Object({ id: Type.String() }),
        response: { 202: JobSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const job = await load(req.params.id);
      if (isFinalJobState(job.state)) throw conflict(`job ${job.id} has already ended (${job.state})`);
      const now = ctx.now();
      // A queued job has not started: cancelled here. A running one: the runner ends it.
      const queued = await ctx.db
        .updateTable('jobs')
        .set({ state: 'Cancelled', cancel_requested_at: now, ended_at: now })
        .where('id', '=', job.id)
        .where('state', '=', 'Queued')
        .executeTakeFirst();
      if (Number(queued.numUpdatedRows) > 0) {
        await ctx.db
          .updateTable('job_steps')
          .set({ state: 'Cancelled' })
          .where('job_id', '=', job.id)
          .execute();
      } else {
        await ctx.db
          .updateTable('jobs')
          .set({ cancel_requested_at: now })
          .where('id', '=', job.id)
          .where('cancel_requested_at', 'is', null)
          .execute();
      }
      ctx.logger.info({ job: job.id, by: describePrincipal(req.principal) }, 'job cancellation requested');
      jobSignals(ctx).wake(job.id);
      return reply.status(202).send(jobJson((await jobWithSteps(ctx.db, job.id))!));
    },
  );

  app.post(
    '/api/v1/jobs/:id/steps/:step/confirm',
    {
      schema: {
        tags: ['jobs'],
        description: 'Confirms a manual step the job waits for; the step is named by its name or its number.',
        params: Type.Object({ id: Type.String(), step: Type.String() }),
        response: { 200: JobSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req) => {
      const job = await load(req.params.id);
      const key = req.params.step;
      const step = job.steps.find((s) => s.name === key) ?? job.steps.find((s) => String(s.ordinal) === key);
      if (!step) {
        const names = job.steps.map((s) => s.name).join(', ');
        throw new ApiError(404, 'not-found', `job ${job.id} has no step '${key}' (its steps: ${names})`);
      }
      if (isFinalJobState(job.state)) throw conflict(`job ${job.id} has already ended (${job.state})`);
      if (step.state !== 'WaitingForConfirmation') {
        throw conflict(
          `step '${step.name}' of job ${job.id} is not waiting for a confirmation (it is ${step.state})`,
        );
      }
      const who = describePrincipal(req.principal);
      const done = await ctx.db
        .updateTable('job_steps')
        .set({
          state: 'Succeeded',
          progress_pct: 100,
          message: `confirmed by ${who}`,
          ended_at: ctx.now(),
        })
        .where('id', '=', step.id)
        .where('state', '=', 'WaitingForConfirmation')
        .executeTakeFirst();
      if (Number(done.numUpdatedRows) === 0) {
        throw conflict(`step '${step.name}' of job ${job.id} is no longer waiting for a confirmation`);
      }
      ctx.logger.info({ job: job.id, step: step.name, by: who }, 'job step confirmed');
      jobSignals(ctx).wake(job.id);
      return jobJson((await jobWithSteps(ctx.db, job.id))!);
    },
  );
}
