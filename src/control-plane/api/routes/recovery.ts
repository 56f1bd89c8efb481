// Routes: the recovery cycle of a replicated item. Test failover and its clean-up, failover
// (planned or unplanned), commit, reprotect and failback are jobs; a refused request creates
// nothing and changes nothing, and its message names the rule (S13, S19-S20, S23, S26).
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import type { Item } from '../../db/schema.js';
import { findItem } from '../../items/item-rows.js';
import { itemViews } from '../../items/item-view.js';
import { jobSignals } from '../../jobs/job-signals.js';
import { activeJobFor } from '../../jobs/job-store.js';
import { queueJob } from '../../jobs/kinds.js';
import { activePlanJobWith } from '../../recovery/plan-store.js';
import {
  cleanupTestFailoverRequest,
  commitRequest,
  failbackRequest,
  failoverRequest,
  type JobRequest,
  reprotectRequest,
  testFailoverRequest,
} from '../../recovery/requests.js';
import type { Api } from '../app.js';
import { conflict, notFound } from '../errors.js';
import { describePrincipal } from '../principal.js';
import { ErrorSchema } from '../schemas.js';
import { ItemSchema } from './items.js';
import { JobSchema, jobJson } from './jobs.js';

const ItemJobSchema = Type.Object({ item: ItemSchema, job: JobSchema });
const responses = { 202: ItemJobSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
export const PointSchema = Type.String({
  minLength: 1,
  description: 'latest | latest-processed | latest-app | a recovery point id | an ISO-8601 time',
});
export const FailoverBodySchema = Type.Object(
  {
    planned: Type.Optional(Type.Boolean()),
    point: Type.Optional(PointSchema),
    site: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);
export const ReprotectValuesSchema = Type.Object(
  {
    masterTarget: Type.Optional(Type.String({ minLength: 1 })),
    processServer: Type.Optional(Type.String({ minLength: 1 })),
    datastore: Type.Optional(Type.String({ minLength: 1 })),
    retentionVolume: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);
const ReprotectBodySchema = ReprotectValuesSchema;

export async function registerRecoveryRoutes(app: Api, ctx: ServerContext): Promise<void> {
  /** The item an operator names (its machine's name, its partner's name, or its id). */
  const load = async (ref: string): Promise<Item> => {
    const item =
      (await findItem(ctx.db, ref)) ??
      (await ctx.db
        .selectFrom('items')
        .innerJoin('machines', 'machines.id', 'items.partner_machine_id')
        .selectAll('items')
        .where('machines.name', '=', ref)
        .executeTakeFirst());
    if (!item) throw notFound(`replicated item '${ref}'`);
    await refuseIfBusy(ctx, item, ref);
    return item;
  };

  const queue = async (
    req: { principal: Parameters<typeof describePrincipal>[0] },
    item: Item,
    request: JobRequest,
  ) => {
    const job = await queueJob(ctx, ctx.db, {
      kind: request.kind,
      targetId: item.id,
      params: request.params,
      requestedBy: describePrincipal(req.principal),
    });
    jobSignals(ctx).wake(job.id);
    return { item: (await itemViews(ctx.db, item.id))[0]!, job: jobJson(job) };
  };

  const ItemParams = Type.Object({ item: Type.String() });

  app.post(
    '/api/v1/items/:item/test-failover',
    {
      schema: {
        tags: ['recovery'],
        description:
          'Boots the machine at the recovery site, on an isolated network, from a copy-on-write view of a point; replication goes on.',
        params: ItemParams,
        body: Type.Object(
          { point: Type.Optional(PointSchema), site: Type.Optional(Type.String({ minLength: 1 })) },
          { additionalProperties: false },
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      return reply
        .status(202)
        .send(await queue(req, item, await testFailoverRequest(ctx, item, req.body ?? {})));
    },
  );

  app.post(
    '/api/v1/items/:item/cleanup-test-failover',
    { schema: { tags: ['recovery'], params: ItemParams, response: responses } },
    async (req, reply) => {
      const item = await load(req.params.item);
      return reply.status(202).send(await queue(req, item, await cleanupTestFailoverRequest(ctx, item)));
    },
  );

  app.post(
    '/api/v1/items/:item/failover',
    {
      schema: {
        tags: ['recovery'],
        description:
          'Brings the machine up at the recovery site. Planned: shut down, drained, nothing lost. Unplanned: from a point.',
        params: ItemParams,
        body: FailoverBodySchema,
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      return reply.status(202).send(await queue(req, item, await failoverRequest(ctx, item, req.body ?? {})));
    },
  );

  app.post(
    '/api/v1/items/:item/commit',
    { schema: { tags: ['recovery'], params: ItemParams, response: responses } },
    async (req, reply) => {
      const item = await load(req.params.item);
      return reply.status(202).send(await queue(req, item, await commitRequest(ctx, item)));
    },
  );

  app.post(
    '/api/v1/items/:item/reprotect',
    {
      schema: {
        tags: ['recovery'],
        description:
          'Reverses replication after a failover (or restores it after a failback) with the failback policy (S15); ' +
          'the target machine stays off until it completes (S21) and its existing disks are reused (S22).',
        params: ItemParams,
        body: ReprotectBodySchema,
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      return reply
        .status(202)
        .send(await queue(req, item, await reprotectRequest(ctx, item, req.body ?? {})));
    },
  );

  app.post(
    '/api/v1/items/:item/failback',
    {
      schema: {
        tags: ['recovery'],
        description:
          'S27: shuts the recovered machine down, drains replication and boots the original machine on the same data.',
        params: ItemParams,
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      return reply.status(202).send(await queue(req, item, await failbackRequest(ctx, item)));
    },
  );
}

/** A request for an item with a job in progress (its own or a plan's) is refused. */
export async function refuseIfBusy(ctx: ServerContext, item: Item, ref: string): Promise<void> {
  const active = await activeJobFor(ctx.db, item.id);
  if (active) {
    throw conflict(
      `item '${ref}' has a job in progress (${active.kind} ${active.id}, ${active.state}): wait for it or cancel it`,
    );
  }
  const plan = await activePlanJobWith(ctx, item.id);
  if (plan) {
    throw conflict(
      `item '${ref}' is in recovery plan job ${plan.kind} ${plan.id} (${plan.state}): wait for it or cancel it`,
    );
  }
}
