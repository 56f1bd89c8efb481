// Recovery plans in the database (recovery_plans): created from what an operator writes
// (plan-model.ts checks it), shown with their machines' current names and states.
import { randomUUID } from 'node:crypto';
import { badRequest, conflict, notFound } from '../api/errors.js';
import type { ServerContext } from '../context.js';
import type { Job, RecoveryPlanTable } from '../db/schema.js';
import { findItem } from '../items/item-rows.js';
import { FINAL_JOB_STATES } from '../jobs/job-model.js';
import { groupById } from './groups.js';
import { checkPlan, type PlanGroupInput, parsePlanGroups } from './plan-model.js';

export type RecoveryPlan = RecoveryPlanTable;

export const PLAN_JOB_PREFIX = 'plan-';

export interface PlanView {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  groups: {
    name: string;
    machines: { name: string; item_id: string; state: string; group: string | null }[];
    pre: string | null;
    post: string | null;
    manual: string[];
  }[];
}

export async function planByName(ctx: ServerContext, name: string): Promise<RecoveryPlan> {
  const p = await ctx.db.selectFrom('recovery_plans').selectAll().where('name', '=', name).executeTakeFirst();
  if (!p) throw notFound(`recovery plan '${name}'`);
  return p;
}

export async function createPlan(
  ctx: ServerContext,
  name: string,
  groups: PlanGroupInput[],
): Promise<PlanView> {
  const machines = groups.flatMap((g) => g.machines);
  const items = new Map<string, { id: string; group: string | undefined }>();
  const groupMachines = new Map<string, string[]>();
  for (const m of new Set(machines)) {
    const item = await findItem(ctx.db, m);
    if (!item) continue;
    const group = item.group_id ? await groupById(ctx, item.group_id) : undefined;
    items.set(m, { id: item.id, group: group?.name });
    if (group && !groupMachines.has(group.name)) {
      const members = await ctx.db
        .selectFrom('items')
        .innerJoin('machines', 'machines.id', 'items.machine_id')
        .select('machines.name')
        .where('items.group_id', '=', group.id)
        .orderBy('machines.name')
        .execute();
      groupMachines.set(
        group.name,
        members.map((x) => x.name),
      );
    }
  }
  const check = checkPlan(name, groups, {
    itemOf: (m) => items.get(m),
    groupMachines: (g) => groupMachines.get(g) ?? [],
  });
  if (!check.ok) {
    throw check.status === 404
      ? notFound(check.message.replace(/ not found$/, ''))
      : badRequest(check.message);
  }
  if (await ctx.db.selectFrom('recovery_plans').select('id').where('name', '=', name).executeTakeFirst()) {
    throw conflict(`recovery plan '${name}' exists already`);
  }
  const now = ctx.now();
  const id = randomUUID();
  await ctx.db
    .insertInto('recovery_plans')
    .values({ id, name, groups_json: JSON.stringify(check.groups), created_at: now, updated_at: now })
    .execute();
  return planView(ctx, await planByName(ctx, name));
}

export async function deletePlan(ctx: ServerContext, name: string): Promise<void> {
  const plan = await planByName(ctx, name);
  const active = await ctx.db
    .selectFrom('jobs')
    .select(['id', 'kind'])
    .where('target_id', '=', plan.id)
    .where('state', 'not in', [...FINAL_JOB_STATES])
    .executeTakeFirst();
  if (active) throw conflict(`recovery plan '${name}' has a job in progress (${active.kind} ${active.id})`);
  await ctx.db.deleteFrom('recovery_plans').where('id', '=', plan.id).execute();
}

export async function planView(ctx: ServerContext, plan: RecoveryPlan): Promise<PlanView> {
  const groups = parsePlanGroups(plan.groups_json);
  const out: PlanView['groups'] = [];
  for (const g of groups) {
    const machines: PlanView['groups'][number]['machines'] = [];
    for (const id of g.items) {
      const row = await ctx.db
        .selectFrom('items')
        .innerJoin('machines', 'machines.id', 'items.machine_id')
        .leftJoin('replication_groups', 'replication_groups.id', 'items.group_id')
        .select(['items.id', 'items.state', 'machines.name', 'replication_groups.name as group'])
        .where('items.id', '=', id)
        .executeTakeFirst();
      machines.push(
        row
          ? { name: row.name, item_id: row.id, state: row.state, group: row.group ?? null }
          : { name: '(item removed)', item_id: id, state: 'removed', group: null },
      );
    }
    out.push({ name: g.name, machines, pre: g.pre ?? null, post: g.post ?? null, manual: g.manual });
  }
  return {
    id: plan.id,
    name: plan.name,
    created_at: plan.created_at,
    updated_at: plan.updated_at,
    groups: out,
  };
}

export async function listPlans(ctx: ServerContext): Promise<PlanView[]> {
  const plans = await ctx.db.selectFrom('recovery_plans').selectAll().orderBy('name').execute();
  return Promise.all(plans.map((p) => planView(ctx, p)));
}

/** A plan job in progress that acts on the item, if any. */
export async function activePlanJobWith(ctx: ServerContext, itemId: string): Promise<Job | undefined> {
  const jobs = await ctx.db
    .selectFrom('jobs')
    .selectAll()
    .where('kind', 'like', `${PLAN_JOB_PREFIX}%`)
    .where('state', 'not in', [...FINAL_JOB_STATES])
    .execute();
  return jobs.find((j) => j.params_json.includes(`"${itemId}"`));
}
