// Routes: replicated items. Enabling replication (protect) and disabling it (unprotect) are
// jobs; a refused request creates nothing. An item is named by its id or its machine's name.
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { thinPoints } from '../../../master-target/point-thinning.js';
import type { ServerContext } from '../../context.js';
import { builtinMasterTarget, dataPlaneId, replicaStatus } from '../../items/data-plane.js';
import { DISABLE_REPLICATION, type DisableParams } from '../../items/disable-job.js';
import { ENABLE_REPLICATION, type EnableParams } from '../../items/enable-job.js';
import * as inventory from '../../items/inventory-lookups.js';
import { findItem, withRows } from '../../items/item-rows.js';
import { itemViews } from '../../items/item-view.js';
import { decideProtect } from '../../items/protect-choices.js';
import { jobSignals } from '../../jobs/job-signals.js';
import { activeJobFor, listJobs } from '../../jobs/job-store.js';
import { queueJob } from '../../jobs/kinds.js';
import type { Api } from '../app.js';
import { ApiError, conflict, notFound, refusalError } from '../errors.js';
import { PageQuery, pageLimit } from '../paging.js';
import { describePrincipal } from '../principal.js';
import { ErrorSchema } from '../schemas.js';
import { JobSchema, jobJson } from './jobs.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const HealthSchema = Type.Array(Type.Object({ code: Type.String(), message: Type.String() }));

export const ItemSchema = Type.Object({
  id: Type.String(),
  machine_id: Type.String(),
  machine_name: Type.String(),
  policy_id: Type.String(),
  policy_name: Type.String(),
  process_server_id: Type.String(),
  process_server_name: Type.String(),
  master_target_id: Type.String(),
  master_target_name: Type.String(),
  datastore_id: Nullable(Type.String()),
  datastore_name: Nullable(Type.String()),
  retention_volume_id: Nullable(Type.String()),
  retention_volume_path: Nullable(Type.String()),
  state: Type.String(),
  progress_pct: Type.Number(),
  rpo_seconds: Nullable(Type.Number()),
  health: HealthSchema,
  direction: Type.String(),
  group_id: Nullable(Type.String()),
  created_at: Type.String(),
  updated_at: Type.String(),
  last_job: Nullable(
    Type.Object({
      id: Type.String(),
      kind: Type.String(),
      state: Type.String(),
      progress_pct: Type.Number(),
    }),
  ),
});

const ItemJobSchema = Type.Object({ item: ItemSchema, job: JobSchema });

const MiB = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export async function registerItemRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const load = async (ref: string) => {
    const item = await findItem(ctx.db, ref);
    if (!item) throw notFound(`replicated item '${ref}'`);
    return item;
  };
  const view = async (id: string) => (await itemViews(ctx.db, id))[0]!;

  app.get(
    '/api/v1/items',
    {
      schema: {
        tags: ['items'],
        description: 'Replicated items by machine name, a page at a time.',
        querystring: PageQuery,
        response: { 200: Type.Array(ItemSchema) },
      },
    },
    async (req) => itemViews(ctx.db, undefined, { limit: pageLimit(req.query), after: req.query.after }),
  );

  app.post(
    '/api/v1/items',
    {
      schema: {
        tags: ['items'],
        description:
          'Enables replication of a machine: a job (validate choices, prepare the replica, configure the agent, ' +
          'initial replication, protected). Left-out components default to the built-in one (or the only one).',
        body: Type.Object(
          {
            machine: Type.String({ minLength: 1 }),
            policy: Type.String({ minLength: 1 }),
            processServer: Type.Optional(Type.String({ minLength: 1 })),
            masterTarget: Type.Optional(Type.String({ minLength: 1 })),
            datastore: Type.Optional(Type.String({ minLength: 1 })),
            retentionVolume: Type.Optional(Type.String({ minLength: 1 })),
          },
          { additionalProperties: false },
        ),
        response: { 202: ItemJobSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const body = req.body;
      const created = await ctx.db.transaction().execute(async (trx) => {
        const machine = await inventory.findMachine(trx, body.machine);
        const existing = machine
          ? await trx
              .selectFrom('items')
              .select(['id', 'state'])
              .where('machine_id', '=', machine.id)
              .executeTakeFirst()
          : undefined;
        const attached = new Map<string, number>();
        for (const mt of await inventory.masterTargets(trx)) {
          attached.set(mt.id, await inventory.disksAttachedTo(trx, mt.id));
        }
        const decision = decideProtect(body, {
          machine,
          existingItem: existing,
          policy: await inventory.findPolicy(trx, body.policy),
          processServers: await inventory.processServers(trx),
          masterTargets: await inventory.masterTargets(trx),
          datastores: await inventory.datastores(trx),
          retentionVolumes: await inventory.retentionVolumes(trx),
          machineDisks: machine ? await inventory.diskCount(trx, machine.id) : 0,
          attachedDisks: (id) => attached.get(id) ?? 0,
        });
        if (!decision.ok) throw refusalError(decision.refusal);
        const c = decision.choices;
        if (!builtinMasterTarget(ctx, c.masterTarget)) {
          throw conflict(
            `master target '${c.masterTarget.name}' is not built into this configuration server: replicating to it is not supported yet`,
          );
        }
        const now = ctx.now();
        const item = {
          id: randomUUID(),
          machine_id: c.machine.id,
          policy_id: c.policy.id,
          process_server_id: c.processServer.id,
          master_target_id: c.masterTarget.id,
          datastore_id: c.datastore?.id ?? null,
          retention_volume_id: c.retentionVolume?.id ?? null,
          state: 'enabling',
          progress_pct: 0,
          rpo_seconds: null,
          health_json: '[]',
          direction: 'forward',
          group_id: null,
          created_at: now,
          updated_at: now,
        };
        try {
          await trx.insertInto('items').values(item).execute();
        } catch (e) {
          // Another request protected the machine in the meantime (items.machine_id is unique).
          const code = (e as { code?: string }).code;
          if (code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
            throw conflict(`machine '${c.machine.name}' is already protected`);
          }
          throw e;
        }
        const job = await queueJob<EnableParams>(ctx, trx, {
          kind: ENABLE_REPLICATION,
          targetId: item.id,
          params: { itemId: item.id },
          requestedBy: describePrincipal(req.principal),
        });
        return { itemId: item.id, job };
      });
      jobSignals(ctx).wake(created.job.id);
      return reply.status(202).send({ item: await view(created.itemId), job: jobJson(created.job) });
    },
  );

  app.get(
    '/api/v1/items/:item',
    {
      schema: {
        tags: ['items'],
        description:
          'An item, the master target’s live replication status of its machine, and its recent jobs.',
        params: Type.Object({ item: Type.String() }),
        response: {
          200: Type.Object({
            item: ItemSchema,
            replication: Type.Unknown({ description: 'the master target’s status of the machine, or null' }),
            jobs: Type.Array(JobSchema),
          }),
          404: ErrorSchema,
        },
      },
    },
    async (req) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      const jobs = await listJobs(ctx.db, { targetId: item.id, limit: 5 });
      return {
        item: await view(item.id),
        replication: replicaStatus(ctx, r.masterTarget, r.machine) ?? null,
        jobs: jobs.map(jobJson),
      };
    },
  );

  app.get(
    '/api/v1/items/:item/recovery-points',
    {
      schema: {
        tags: ['items'],
        description:
          'Recovery points of the item’s machine at its master target, oldest first; older points are thinned ' +
          'out of the list unless all=true (every point stays usable).',
        params: Type.Object({ item: Type.String() }),
        querystring: Type.Object({ all: Type.Optional(Type.Boolean()) }),
        response: {
          200: Type.Object({
            item_id: Type.String(),
            machine_name: Type.String(),
            applied_through: Type.Integer(),
            oldest_point: Type.Integer(),
            oldest_time: Nullable(Type.String()),
            total: Type.Integer(),
            points: Type.Array(
              Type.Object({
                seq: Type.Integer(),
                time: Type.String(),
                kind: Type.String(),
                tag: Type.String(),
              }),
            ),
          }),
          404: ErrorSchema,
          409: ErrorSchema,
        },
      },
    },
    async (req) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      const mt = builtinMasterTarget(ctx, r.masterTarget);
      if (!mt) {
        throw conflict(
          `master target '${r.masterTarget.name}' is not built into this configuration server: its recovery points are not available here`,
        );
      }
      const replica = mt.replica(dataPlaneId(r.machine));
      const all = replica?.recoveryPoints() ?? [];
      const listed = req.query.all ? all : thinPoints(all, Date.now());
      const oldest = replica?.oldestPointTime;
      return {
        item_id: item.id,
        machine_name: r.machine.name,
        applied_through: replica?.appliedThrough ?? 0,
        oldest_point: replica?.oldestPoint ?? 0,
        oldest_time: oldest === undefined ? null : new Date(oldest).toISOString(),
        total: all.length,
        points: listed.map((p) => ({
          seq: p.seq,
          time: new Date(p.time).toISOString(),
          kind: p.kind,
          tag: p.tag,
        })),
      };
    },
  );

  app.delete(
    '/api/v1/items/:item',
    {
      schema: {
        tags: ['items'],
        description:
          'Disables replication: a job that stops the agent’s shipping and deletes the replica and undo journal ' +
          'at the master target. Without confirm=true nothing happens and the answer says what would be deleted.',
        params: Type.Object({ item: Type.String() }),
        querystring: Type.Object({ confirm: Type.Optional(Type.Boolean()) }),
        response: { 202: ItemJobSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      const active = await activeJobFor(ctx.db, item.id);
      if (active) {
        throw conflict(
          `machine '${r.machine.name}' has a job in progress (${active.kind} ${active.id}, ${active.state}): ` +
            `cancel it first with 'rebound jobs cancel ${active.id}'`,
        );
      }
      if (!req.query.confirm) {
        const mt = builtinMasterTarget(ctx, r.masterTarget);
        const f = mt ? await mt.footprint(dataPlaneId(r.machine)) : undefined;
        const what = f
          ? `its replica (${f.disks} disk${f.disks === 1 ? '' : 's'}, ${MiB(f.replicaBytes)}) and its undo journal ` +
            `(${MiB(f.journalBytes)}, every recovery point) on master target '${r.masterTarget.name}'`
          : `its replica and its undo journal (every recovery point) on master target '${r.masterTarget.name}'`;
        throw new ApiError(
          400,
          'confirmation-required',
          `unprotecting machine '${r.machine.name}' deletes ${what}; nothing was changed: confirm to go on`,
          f ? { ...f } : undefined,
        );
      }
      const job = await ctx.db.transaction().execute(async (trx) => {
        await trx
          .updateTable('items')
          .set({ state: 'disabling', updated_at: ctx.now() })
          .where('id', '=', item.id)
          .execute();
        return queueJob<DisableParams>(ctx, trx, {
          kind: DISABLE_REPLICATION,
          targetId: item.id,
          params: { itemId: item.id, machineName: r.machine.name },
          requestedBy: describePrincipal(req.principal),
        });
      });
      jobSignals(ctx).wake(job.id);
      return reply.status(202).send({ item: await view(item.id), job: jobJson(job) });
    },
  );
}
