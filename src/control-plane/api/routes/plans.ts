// Routes: recovery plans (ordered groups of machines with pre/post scripts and manual
// actions) and their operations, each one job over every machine of the plan. A refused
// operation (any machine refused) queues nothing.
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import { jobSignals } from '../../jobs/job-signals.js';
import { queueJob } from '../../jobs/kinds.js';
import { planJobKind } from '../../recovery/plan-job.js';
import { type PlanBody, planJobParams } from '../../recovery/plan-requests.js';
import { createPlan, deletePlan, listPlans, planByName, planView } from '../../recovery/plan-store.js';
import { RECOVERY_OPERATIONS, type RecoveryOperation } from '../../recovery/requests.js';
import type { Api } from '../app.js';
import { describePrincipal } from '../principal.js';
import { ErrorSchema } from '../schemas.js';
import { JobSchema, jobJson } from './jobs.js';
import { PointSchema, ReprotectValuesSchema, refuseIfBusy } from './recovery.js';

const Nullable = (t: ReturnType<typeof Type.String>) => Type.Union([t, Type.Null()]);

const PlanSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  created_at: Type.String(),
  updated_at: Type.String(),
  groups: Type.Array(
    Type.Object({
      name: Type.String(),
      machines: Type.Array(
        Type.Object({
          name: Type.String(),
          item_id: Type.String(),
          state: Type.String(),
          group: Nullable(Type.String()),
        }),
      ),
      pre: Nullable(Type.String()),
      post: Nullable(Type.String()),
      manual: Type.Array(Type.String()),
    }),
  ),
});

const PlanGroupInputSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    machines: Type.Array(Type.String({ minLength: 1 })),
    pre: Type.Optional(Type.String({ description: 'run with /bin/sh -c on the configuration server first' })),
    post: Type.Optional(Type.String({ description: 'run after the group’s machines' })),
    manual: Type.Optional(
      Type.Array(Type.String(), { description: 'actions the job waits to be confirmed' }),
    ),
  },
  { additionalProperties: false },
);

const PlanParams = Type.Object({ plan: Type.String() });
const PlanJobSchema = Type.Object({ plan: PlanSchema, job: JobSchema });

const BODIES: Record<RecoveryOperation, ReturnType<typeof Type.Object> | undefined> = {
  'test-failover': Type.Object(
    { point: Type.Optional(PointSchema), site: Type.Optional(Type.String({ minLength: 1 })) },
    { additionalProperties: false },
  ),
  'cleanup-test-failover': undefined,
  failover: Type.Object(
    {
      planned: Type.Optional(Type.Boolean()),
      point: Type.Optional(PointSchema),
      site: Type.Optional(Type.String({ minLength: 1 })),
    },
    { additionalProperties: false },
  ),
  commit: undefined,
  reprotect: Type.Object(
    {
      machines: Type.Record(Type.String(), ReprotectValuesSchema, {
        description:
          'every machine of the plan by name: its master target, process server, datastore, retention volume',
      }),
    },
    { additionalProperties: false },
  ),
  failback: undefined,
};

export async function registerPlanRoutes(app: Api, ctx: ServerContext): Promise<void> {
  app.get(
    '/api/v1/plans',
    { schema: { tags: ['plans'], response: { 200: Type.Array(PlanSchema) } } },
    async () => listPlans(ctx),
  );

  app.post(
    '/api/v1/plans',
    {
      schema: {
        tags: ['plans'],
        description:
          'Ordered groups of machines; a replication group’s machines must be in one plan group (they recover at a common point).',
        body: Type.Object(
          { name: Type.String({ minLength: 1 }), groups: Type.Array(PlanGroupInputSchema) },
          { additionalProperties: false },
        ),
        response: { 201: PlanSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => reply.status(201).send(await createPlan(ctx, req.body.name, req.body.groups)),
  );

  app.get(
    '/api/v1/plans/:plan',
    { schema: { tags: ['plans'], params: PlanParams, response: { 200: PlanSchema, 404: ErrorSchema } } },
    async (req) => planView(ctx, await planByName(ctx, req.params.plan)),
  );

  app.delete(
    '/api/v1/plans/:plan',
    {
      schema: {
        tags: ['plans'],
        params: PlanParams,
        response: { 204: Type.Null(), 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      await deletePlan(ctx, req.params.plan);
      return reply.status(204).send(null);
    },
  );

  for (const op of RECOVERY_OPERATIONS) {
    const body = BODIES[op];
    app.post(
      `/api/v1/plans/:plan/${op}`,
      {
        schema: {
          tags: ['plans'],
          description: `The ${op} of every machine of the plan, group by group: one job.`,
          params: PlanParams,
          ...(body ? { body } : {}),
          response: { 202: PlanJobSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
        },
      },
      async (req, reply) => {
        const plan = await planByName(ctx, (req.params as { plan: string }).plan);
        const params = await planJobParams(ctx, plan, op, (req.body ?? {}) as PlanBody, (item, ref) =>
          refuseIfBusy(ctx, item, ref),
        );
        const job = await queueJob(ctx, ctx.db, {
          kind: planJobKind(op),
          targetId: plan.id,
          params,
          requestedBy: describePrincipal(req.principal),
        });
        jobSignals(ctx).wake(job.id);
        return reply.status(202).send({ plan: await planView(ctx, plan), job: jobJson(job) });
      },
    );
  }
}
