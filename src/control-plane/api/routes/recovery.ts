// Routes: the recovery cycle of a replicated item. Test failover and its clean-up, failover
// (planned or unplanned), commit, reprotect and failback are jobs; a refused request creates
// nothing and changes nothing, and its message names the rule (S13, S19-S20, S23, S26).
import { Type } from '@sinclair/typebox';
import type { ServerContext } from '../../context.js';
import type { Item, Site } from '../../db/schema.js';
import * as inventory from '../../items/inventory-lookups.js';
import { findItem, withRows } from '../../items/item-rows.js';
import { itemViews } from '../../items/item-view.js';
import { jobSignals } from '../../jobs/job-signals.js';
import { activeJobFor } from '../../jobs/job-store.js';
import { queueJob } from '../../jobs/kinds.js';
import { COMMIT } from '../../recovery/commit-job.js';
import { FAILBACK, type FailbackParams } from '../../recovery/failback-job.js';
import { FAILOVER, type FailoverParams } from '../../recovery/failover-job.js';
import { machineById } from '../../recovery/machine-ops.js';
import { parseFailover, parseTestFailover } from '../../recovery/recovery-records.js';
import { REPROTECT, type ReprotectParams } from '../../recovery/reprotect-job.js';
import { decideReprotect } from '../../recovery/reprotect-rules.js';
import { adapterFor } from '../../recovery/site-registry.js';
import {
  CLEANUP_TEST_FAILOVER,
  TEST_FAILOVER,
  type TestFailoverParams,
} from '../../recovery/test-failover-job.js';
import type { Api } from '../app.js';
import { badRequest, conflict, notFound, refusalError } from '../errors.js';
import { describePrincipal } from '../principal.js';
import { ErrorSchema } from '../schemas.js';
import { ItemSchema } from './items.js';
import { JobSchema, jobJson } from './jobs.js';

const ItemJobSchema = Type.Object({ item: ItemSchema, job: JobSchema });
const responses = { 202: ItemJobSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
const PointSchema = Type.String({
  minLength: 1,
  description: 'latest | latest-processed | latest-app | a recovery point id | an ISO-8601 time',
});

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
    const active = await activeJobFor(ctx.db, item.id);
    if (active) {
      throw conflict(
        `item '${ref}' has a job in progress (${active.kind} ${active.id}, ${active.state}): wait for it or cancel it`,
      );
    }
    return item;
  };

  const queue = async <P>(
    req: { principal: Parameters<typeof describePrincipal>[0] },
    item: Item,
    kind: string,
    params: P,
    patch?: Partial<Item>,
  ) => {
    const job = await ctx.db.transaction().execute(async (trx) => {
      if (patch) {
        await trx
          .updateTable('items')
          .set({ ...patch, updated_at: ctx.now() })
          .where('id', '=', item.id)
          .execute();
      }
      return queueJob<P>(ctx, trx, {
        kind,
        targetId: item.id,
        params,
        requestedBy: describePrincipal(req.principal),
      });
    });
    jobSignals(ctx).wake(job.id);
    return { item: (await itemViews(ctx.db, item.id))[0]!, job: jobJson(job) };
  };

  /** The recovery site: the one asked for, the item's, or the only site the machine is not at. */
  const recoverySite = async (
    item: Item,
    wanted: string | undefined,
    machineSiteId: string | null,
  ): Promise<Site> => {
    const sites = await ctx.db.selectFrom('sites').selectAll().orderBy('name').execute();
    if (wanted !== undefined) {
      const s = sites.find((x) => x.name === wanted || x.id === wanted);
      if (!s) throw notFound(`site '${wanted}'`);
      return s;
    }
    const known = sites.find((x) => x.id === item.recovery_site_id);
    if (known) return known;
    const others = sites.filter((x) => x.id !== machineSiteId);
    if (others.length === 1) return others[0]!;
    throw badRequest(
      others.length === 0
        ? 'no recovery site: add one with `rebound sites add NAME --adapter qemu`'
        : `several sites could be the recovery site (${others.map((x) => x.name).join(', ')}): choose one with site`,
    );
  };

  app.post(
    '/api/v1/items/:item/test-failover',
    {
      schema: {
        tags: ['recovery'],
        description:
          'Boots the machine at the recovery site, on an isolated network, from a copy-on-write view of a point; replication goes on.',
        params: Type.Object({ item: Type.String() }),
        body: Type.Object(
          { point: Type.Optional(PointSchema), site: Type.Optional(Type.String({ minLength: 1 })) },
          { additionalProperties: false },
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      if (item.state !== 'protected') {
        throw conflict(
          `machine '${r.machine.name}' is ${item.state}: only a protected machine can be tested`,
        );
      }
      if (parseTestFailover(item.test_failover_json)) {
        throw conflict(`a test failover of '${r.machine.name}' is running: clean it up first`);
      }
      const site = await recoverySite(item, req.body?.site, r.machine.site_id);
      if (site.adapter !== 'qemu') {
        throw conflict(`site '${site.name}' is a ${site.adapter} site: a test failover needs a qemu site`);
      }
      const params: TestFailoverParams = {
        itemId: item.id,
        point: req.body?.point ?? 'latest',
        siteId: site.id,
        machineName: `${r.machine.name}-test`,
      };
      return reply.status(202).send(await queue(req, item, TEST_FAILOVER, params));
    },
  );

  app.post(
    '/api/v1/items/:item/cleanup-test-failover',
    {
      schema: { tags: ['recovery'], params: Type.Object({ item: Type.String() }), response: responses },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      if (!parseTestFailover(item.test_failover_json)) {
        const r = await withRows(ctx.db, item);
        throw conflict(`no test failover of '${r.machine.name}' is running`);
      }
      return reply.status(202).send(await queue(req, item, CLEANUP_TEST_FAILOVER, { itemId: item.id }));
    },
  );

  app.post(
    '/api/v1/items/:item/failover',
    {
      schema: {
        tags: ['recovery'],
        description:
          'Brings the machine up at the recovery site. Planned: shut down, drained, nothing lost. Unplanned: from a point.',
        params: Type.Object({ item: Type.String() }),
        body: Type.Object(
          {
            planned: Type.Optional(Type.Boolean()),
            point: Type.Optional(PointSchema),
            site: Type.Optional(Type.String({ minLength: 1 })),
          },
          { additionalProperties: false },
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      const body = req.body ?? {};
      if (item.state !== 'protected') {
        throw conflict(`machine '${r.machine.name}' is ${item.state}: only a protected machine fails over`);
      }
      if (parseTestFailover(item.test_failover_json)) {
        throw conflict(`a test failover of '${r.machine.name}' is running: clean it up first`);
      }
      if (body.planned && body.point !== undefined) {
        throw badRequest(
          'a planned failover has no point to choose: it drains replication and uses the last write',
        );
      }
      const site = await recoverySite(item, body.site, r.machine.site_id);
      const source = await siteOfMachine(r.machine.site_id);
      const partner = await machineById(ctx, item.partner_machine_id);
      const params: FailoverParams = {
        itemId: item.id,
        planned: body.planned ?? false,
        point: body.point ?? 'latest',
        recoverySiteId: site.id,
        recoveredName: partner?.name ?? `${r.machine.name}-recovered`,
        sourceManual: source?.adapter === 'physical',
        recoveryManual: site.adapter === 'physical',
      };
      return reply.status(202).send(await queue(req, item, FAILOVER, params));
    },
  );

  const siteOfMachine = async (siteId: string | null) =>
    siteId ? ctx.db.selectFrom('sites').selectAll().where('id', '=', siteId).executeTakeFirst() : undefined;

  app.post(
    '/api/v1/items/:item/commit',
    { schema: { tags: ['recovery'], params: Type.Object({ item: Type.String() }), response: responses } },
    async (req, reply) => {
      const item = await load(req.params.item);
      const rec = parseFailover(item.failover_json);
      if (item.state !== 'failed-over' || !rec) {
        const r = await withRows(ctx.db, item);
        throw conflict(`machine '${r.machine.name}' is ${item.state}: there is no failover to commit`);
      }
      if (rec.committed) {
        const r = await withRows(ctx.db, item);
        throw conflict(`the failover of '${r.machine.name}' is committed already`);
      }
      return reply.status(202).send(await queue(req, item, COMMIT, { itemId: item.id }));
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
        params: Type.Object({ item: Type.String() }),
        body: Type.Object(
          {
            masterTarget: Type.Optional(Type.String({ minLength: 1 })),
            processServer: Type.Optional(Type.String({ minLength: 1 })),
            datastore: Type.Optional(Type.String({ minLength: 1 })),
            retentionVolume: Type.Optional(Type.String({ minLength: 1 })),
          },
          { additionalProperties: false },
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      const after = item.state === 'failed-back';
      const source = await machineById(ctx, item.partner_machine_id);
      const target = r.machine;
      const attached = new Map<string, number>();
      for (const mt of await inventory.masterTargets(ctx.db)) {
        attached.set(mt.id, await inventory.disksAttachedTo(ctx.db, mt.id));
      }
      const sourceAtSite = source ? await existsAtSite(source.site_id, source.name) : false;
      const decision = decideReprotect(req.body ?? {}, {
        item,
        machine: target,
        source,
        recoverySite: await siteOfMachine(item.recovery_site_id),
        sourceAtSite,
        sourceDisks: source
          ? await ctx.db.selectFrom('disks').selectAll().where('machine_id', '=', source.id).execute()
          : [],
        otherDisks: await ctx.db
          .selectFrom('disks')
          .innerJoin('machines', 'machines.id', 'disks.machine_id')
          .selectAll('disks')
          .select('machines.name as machine_name')
          .execute(),
        groupName: item.group_id
          ? (
              await ctx.db
                .selectFrom('replication_groups')
                .select('name')
                .where('id', '=', item.group_id)
                .executeTakeFirst()
            )?.name
          : undefined,
        processServers: await inventory.processServers(ctx.db),
        masterTargets: await inventory.masterTargets(ctx.db),
        datastores: await inventory.datastores(ctx.db),
        retentionVolumes: await inventory.retentionVolumes(ctx.db),
        attachedDisks: (id) => attached.get(id) ?? 0,
      });
      if (!decision.ok) throw refusalError(decision.refusal);
      const c = decision.choices;
      // S15: away from the original site the failback policy; back to it, its own policy again.
      const direction = after ? 'forward' : item.direction === 'forward' ? 'reverse' : 'forward';
      const policyId =
        direction === 'reverse'
          ? ((
              await ctx.db
                .selectFrom('policies')
                .select('id')
                .where('parent_policy_id', '=', r.policy.id)
                .where('is_failback', '=', 1)
                .executeTakeFirst()
            )?.id ?? r.policy.id)
          : (r.policy.parent_policy_id ?? r.policy.id);
      const targetSite = await siteOfMachine(target.site_id);
      const params: ReprotectParams = {
        itemId: item.id,
        sourceId: c.source.id,
        targetId: target.id,
        processServerId: c.processServer.id,
        masterTargetId: c.masterTarget.id,
        datastoreId: c.datastore.id,
        retentionVolumeId: c.retentionVolume?.id ?? null,
        policyId,
        direction,
        previousState: item.state,
        targetManual: targetSite?.adapter === 'physical',
      };
      return reply.status(202).send(await queue(req, item, REPROTECT, params));
    },
  );

  const existsAtSite = async (siteId: string | null, name: string): Promise<boolean> => {
    const site = await siteOfMachine(siteId);
    if (!site) return false;
    return (await (await adapterFor(ctx, site)).get(name)) !== undefined;
  };

  app.post(
    '/api/v1/items/:item/failback',
    {
      schema: {
        tags: ['recovery'],
        description:
          'S27: shuts the recovered machine down, drains replication and boots the original machine on the same data.',
        params: Type.Object({ item: Type.String() }),
        response: responses,
      },
    },
    async (req, reply) => {
      const item = await load(req.params.item);
      const r = await withRows(ctx.db, item);
      if (item.state !== 'protected' || item.direction !== 'reverse') {
        throw conflict(
          `machine '${r.machine.name}' is ${item.state}${item.direction === 'reverse' ? '' : ', replicating from its original site'}: ` +
            'failback needs an item reprotected to the original site',
        );
      }
      const original = await machineById(ctx, item.partner_machine_id);
      if (!original || !(await existsAtSite(original.site_id, original.name))) {
        throw conflict(
          `the original machine of '${r.machine.name}' was deleted: failback is impossible (S26)`,
        );
      }
      const params: FailbackParams = { itemId: item.id, originalId: original.id };
      return reply.status(202).send(await queue(req, item, FAILBACK, params));
    },
  );
}
