// What each recovery request of an item becomes: the job's kind and parameters, or a refusal
// (an ApiError naming the rule) before anything is written. Shared by the item routes and the
// recovery plans, so a plan refuses exactly what the items would.

import { badRequest, conflict, notFound, refusalError } from '../api/errors.js';
import type { ServerContext } from '../context.js';
import type { Item, Site } from '../db/schema.js';
import * as inventory from '../items/inventory-lookups.js';
import { withRows } from '../items/item-rows.js';
import { COMMIT } from './commit-job.js';
import { FAILBACK, type FailbackParams } from './failback-job.js';
import { FAILOVER, type FailoverParams } from './failover-job.js';
import { groupNameOf } from './groups.js';
import { machineById } from './machine-ops.js';
import { notReady, parseFailover, parseTestFailover } from './recovery-records.js';
import { REPROTECT, type ReprotectParams } from './reprotect-job.js';
import { decideReprotect, type ReprotectRequest } from './reprotect-rules.js';
import { adapterFor } from './site-registry.js';
import { CLEANUP_TEST_FAILOVER, TEST_FAILOVER, type TestFailoverParams } from './test-failover-job.js';

export interface JobRequest<P = unknown> {
  kind: string;
  params: P;
}

export const RECOVERY_OPERATIONS = [
  'test-failover',
  'cleanup-test-failover',
  'failover',
  'commit',
  'reprotect',
  'failback',
] as const;
export type RecoveryOperation = (typeof RECOVERY_OPERATIONS)[number];

export interface TestFailoverBody {
  point?: string;
  site?: string;
}
export interface FailoverBody {
  planned?: boolean;
  point?: string;
  site?: string;
}
export type ReprotectBody = Omit<ReprotectRequest, 'viaPlan'>;

const siteOf = async (ctx: ServerContext, siteId: string | null) =>
  siteId ? ctx.db.selectFrom('sites').selectAll().where('id', '=', siteId).executeTakeFirst() : undefined;

/** The recovery site: the one asked for, the item's, or the only site the machine is not at. */
async function recoverySite(
  ctx: ServerContext,
  item: Item,
  wanted: string | undefined,
  machineSiteId: string | null,
): Promise<Site> {
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
}

async function existsAtSite(ctx: ServerContext, siteId: string | null, name: string): Promise<boolean> {
  const site = await siteOf(ctx, siteId);
  if (!site) return false;
  return (await (await adapterFor(ctx, site)).get(name)) !== undefined;
}

export async function testFailoverRequest(
  ctx: ServerContext,
  item: Item,
  body: TestFailoverBody,
): Promise<JobRequest<TestFailoverParams>> {
  const r = await withRows(ctx.db, item);
  const problem = notReady(r.machine.name, item, 'can be tested');
  if (problem) throw conflict(problem);
  const site = await recoverySite(ctx, item, body.site, r.machine.site_id);
  if (site.adapter !== 'qemu') {
    throw conflict(`site '${site.name}' is a ${site.adapter} site: a test failover needs a qemu site`);
  }
  return {
    kind: TEST_FAILOVER,
    params: {
      itemId: item.id,
      point: body.point ?? 'latest',
      siteId: site.id,
      machineName: `${r.machine.name}-test`,
    },
  };
}

export async function cleanupTestFailoverRequest(ctx: ServerContext, item: Item): Promise<JobRequest> {
  if (!parseTestFailover(item.test_failover_json)) {
    const r = await withRows(ctx.db, item);
    throw conflict(`no test failover of '${r.machine.name}' is running`);
  }
  return { kind: CLEANUP_TEST_FAILOVER, params: { itemId: item.id } };
}

export async function failoverRequest(
  ctx: ServerContext,
  item: Item,
  body: FailoverBody,
): Promise<JobRequest<FailoverParams>> {
  const r = await withRows(ctx.db, item);
  const problem = notReady(r.machine.name, item, 'fails over');
  if (problem) throw conflict(problem);
  if (body.planned && body.point !== undefined) {
    throw badRequest(
      'a planned failover has no point to choose: it drains replication and uses the last write',
    );
  }
  const site = await recoverySite(ctx, item, body.site, r.machine.site_id);
  const source = await siteOf(ctx, r.machine.site_id);
  const partner = await machineById(ctx, item.partner_machine_id);
  return {
    kind: FAILOVER,
    params: {
      itemId: item.id,
      planned: body.planned ?? false,
      point: body.point ?? 'latest',
      recoverySiteId: site.id,
      recoveredName: partner?.name ?? `${r.machine.name}-recovered`,
      sourceManual: source?.adapter === 'physical',
      recoveryManual: site.adapter === 'physical',
    },
  };
}

export async function commitRequest(ctx: ServerContext, item: Item): Promise<JobRequest> {
  const rec = parseFailover(item.failover_json);
  if (item.state !== 'failed-over' || !rec) {
    const r = await withRows(ctx.db, item);
    throw conflict(`machine '${r.machine.name}' is ${item.state}: there is no failover to commit`);
  }
  if (rec.committed) {
    const r = await withRows(ctx.db, item);
    throw conflict(`the failover of '${r.machine.name}' is committed already`);
  }
  return { kind: COMMIT, params: { itemId: item.id } };
}

export async function reprotectRequest(
  ctx: ServerContext,
  item: Item,
  body: ReprotectRequest,
): Promise<JobRequest<ReprotectParams>> {
  const r = await withRows(ctx.db, item);
  const after = item.state === 'failed-back';
  const source = await machineById(ctx, item.partner_machine_id);
  const target = r.machine;
  const attached = new Map<string, number>();
  for (const mt of await inventory.masterTargets(ctx.db)) {
    attached.set(mt.id, await inventory.disksAttachedTo(ctx.db, mt.id));
  }
  const sourceAtSite = source ? await existsAtSite(ctx, source.site_id, source.name) : false;
  const decision = decideReprotect(body, {
    item,
    machine: target,
    source,
    recoverySite: await siteOf(ctx, item.recovery_site_id),
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
    groupName: await groupNameOf(ctx, item),
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
  const targetSite = await siteOf(ctx, target.site_id);
  return {
    kind: REPROTECT,
    params: {
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
    },
  };
}

export async function failbackRequest(ctx: ServerContext, item: Item): Promise<JobRequest<FailbackParams>> {
  const r = await withRows(ctx.db, item);
  if (item.state !== 'protected' || item.direction !== 'reverse') {
    throw conflict(
      `machine '${r.machine.name}' is ${item.state}${item.direction === 'reverse' ? '' : ', replicating from its original site'}: ` +
        'failback needs an item reprotected to the original site',
    );
  }
  const original = await machineById(ctx, item.partner_machine_id);
  if (!original || !(await existsAtSite(ctx, original.site_id, original.name))) {
    throw conflict(`the original machine of '${r.machine.name}' was deleted: failback is impossible (S26)`);
  }
  return { kind: FAILBACK, params: { itemId: item.id, originalId: original.id } };
}
