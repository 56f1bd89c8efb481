// Replication policies in the database: a policy and its failback policy (S15) are created,
// and deleted, together; the failback policy is never edited or deleted on its own; a policy
// an item uses stays. Other parts (replicated items, reprotect) look policies up here.
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { type ApiError, badRequest, conflict, notFound } from '../api/errors.js';
import type { ServerContext } from '../context.js';
import type { Database, Policy } from '../db/schema.js';
import {
  applyPolicyChanges,
  DEFAULT_POLICY,
  FAILBACK_POLICY,
  FAILBACK_SUFFIX,
  failbackPolicyName,
  type PolicyField,
  type PolicyValues,
} from './policy-rules.js';

type Db = Kysely<Database> | Transaction<Database>;

/** A policy as the API shows it: its values, and how it and its failback policy relate. */
export interface PolicyView extends PolicyValues {
  id: string;
  name: string;
  /** S15: a failback policy (made with its policy, not editable). */
  failback: boolean;
  /** For a policy: its failback policy's name. */
  failback_policy: string | null;
  /** For a failback policy: the policy it belongs to. */
  failback_of: string | null;
  created_at: string;
  updated_at: string;
}

export async function findPolicy(ctx: { db: Db }, name: string): Promise<Policy | undefined> {
  return ctx.db.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function findPolicyById(ctx: { db: Db }, id: string): Promise<Policy | undefined> {
  return ctx.db.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The policy named, or a 404 naming it. */
export async function requirePolicy(ctx: { db: Db }, name: string): Promise<Policy> {
  const p = await findPolicy(ctx, name);
  if (!p) throw notFound(`policy '${name}'`);
  return p;
}

/** The failback policy made with `policy` (S15: reprotect selects it automatically). */
export async function failbackPolicyOf(ctx: { db: Db }, policy: Policy): Promise<Policy | undefined> {
  if (policy.is_failback) return policy;
  return ctx.db
    .selectFrom('policies')
    .selectAll()
    .where('parent_policy_id', '=', policy.id)
    .where('is_failback', '=', 1)
    .executeTakeFirst();
}

export function policyValues(p: Policy): PolicyValues {
  return {
    rpo_threshold_minutes: p.rpo_threshold_minutes,
    retention_hours: p.retention_hours,
    app_consistent_minutes: p.app_consistent_minutes,
    crash_consistent_minutes: p.crash_consistent_minutes,
    ack_mode: p.ack_mode as PolicyValues['ack_mode'],
  };
}

export async function listPolicies(ctx: { db: Db }): Promise<PolicyView[]> {
  const rows = await ctx.db.selectFrom('policies').selectAll().orderBy('name').execute();
  return rows.map((p) => viewOf(p, rows));
}

export async function showPolicy(ctx: { db: Db }, name: string): Promise<PolicyView> {
  const p = await requirePolicy(ctx, name);
  const related = await ctx.db
    .selectFrom('policies')
    .selectAll()
    .where((eb) => eb.or([eb('parent_policy_id', '=', p.id), eb('id', '=', p.parent_policy_id ?? '')]))
    .execute();
  return viewOf(p, [p, ...related]);
}

function viewOf(p: Policy, all: readonly Policy[]): PolicyView {
  const parent = p.parent_policy_id ? all.find((q) => q.id === p.parent_policy_id) : undefined;
  const child = all.find((q) => q.parent_policy_id === p.id && q.is_failback === 1);
  return {
    id: p.id,
    name: p.name,
    ...policyValues(p),
    failback: p.is_failback === 1,
    failback_policy: child?.name ?? null,
    failback_of: parent?.name ?? null,
    created_at: p.created_at,
    updated_at: p.updated_at,
  };
}

function refuseProblems(r: ReturnType<typeof applyPolicyChanges>): PolicyValues {
  if (r.values) return r.values;
  throw badRequest(r.problems.map((p) => p.message).join('; '), {
    fields: r.problems.map((p) => p.field),
  });
}

/** Creates a policy (defaults for what is not given) and its failback policy, in one transaction. */
export async function createPolicy(
  ctx: ServerContext,
  name: string,
  changes: Partial<Record<PolicyField, unknown>>,
): Promise<PolicyView> {
  if (name.endsWith(FAILBACK_SUFFIX)) {
    throw badRequest(
      `policy name '${name}' is reserved: names ending in '${FAILBACK_SUFFIX}' belong to failback policies`,
    );
  }
  const values = refuseProblems(applyPolicyChanges(DEFAULT_POLICY, changes));
  const fbName = failbackPolicyName(name);
  await ctx.db.transaction().execute(async (trx) => {
    const taken = await trx
      .selectFrom('policies')
      .select('name')
      .where('name', 'in', [name, fbName])
      .executeTakeFirst();
    if (taken) throw conflict(`policy '${taken.name}' already exists`);
    const now = ctx.now();
    const id = randomUUID();
    await trx
      .insertInto('policies')
      .values([
        { id, name, ...values, is_failback: 0, parent_policy_id: null, created_at: now, updated_at: now },
        {
          id: randomUUID(),
          name: fbName,
          ...FAILBACK_POLICY,
          is_failback: 1,
          parent_policy_id: id,
          created_at: now,
          updated_at: now,
        },
      ])
      .execute();
  });
  return showPolicy(ctx, name);
}

function failbackRefusal(p: Policy, parentName: string, what: string): ApiError {
  return conflict(`policy '${p.name}' is the failback policy of '${parentName}' (S15): ${what}`, {
    failback_of: parentName,
  });
}

async function parentName(ctx: { db: Db }, p: Policy): Promise<string> {
  const parent = p.parent_policy_id ? await findPolicyById(ctx, p.parent_policy_id) : undefined;
  return parent?.name ?? '?';
}

export async function updatePolicy(
  ctx: ServerContext,
  name: string,
  changes: Partial<Record<PolicyField, unknown>>,
): Promise<PolicyView> {
  const p = await requirePolicy(ctx, name);
  if (p.is_failback) throw failbackRefusal(p, await parentName(ctx, p), 'it is not editable');
  const values = refuseProblems(applyPolicyChanges(policyValues(p), changes));
  await ctx.db
    .updateTable('policies')
    .set({ ...values, updated_at: ctx.now() })
    .where('id', '=', p.id)
    .execute();
  return showPolicy(ctx, name);
}

/** The machine name of an item that uses one of these policies, if any. */
async function userOf(
  ctx: { db: Db },
  policyIds: string[],
): Promise<{ machine: string; item: string } | undefined> {
  const row = await ctx.db
    .selectFrom('items')
    .innerJoin('machines', 'machines.id', 'items.machine_id')
    .select(['items.id as item', 'machines.name as machine'])
    .where('items.policy_id', 'in', policyIds)
    .orderBy('machines.name')
    .executeTakeFirst();
  return row;
}

/** Deletes a policy with its failback policy; refused while an item uses either. */
export async function deletePolicy(ctx: ServerContext, name: string): Promise<void> {
  const p = await requirePolicy(ctx, name);
  if (p.is_failback) {
    const parent = await parentName(ctx, p);
    throw failbackRefusal(p, parent, `it is deleted with '${parent}', not on its own`);
  }
  const fb = await failbackPolicyOf(ctx, p);
  const user = await userOf(ctx, [p.id]);
  if (user) {
    throw conflict(
      `policy '${name}' is used by the replicated item of machine '${user.machine}': disable its replication first`,
      { item: user.item },
    );
  }
  const fbUser = fb ? await userOf(ctx, [fb.id]) : undefined;
  if (fb && fbUser) {
    throw conflict(
      `policy '${name}' cannot be deleted: its failback policy '${fb.name}' is used by the replicated item of machine '${fbUser.machine}'`,
      { item: fbUser.item },
    );
  }
  await ctx.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('policies').where('parent_policy_id', '=', p.id).execute();
    await trx.deleteFrom('policies').where('id', '=', p.id).execute();
  });
}
