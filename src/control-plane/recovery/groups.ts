// Replication groups: machines replicated together, which share recovery points (taken across
// their agents at once, group-points.ts) and fail over at one of them. A group's machines share
// one OS type and one master target (S20); a machine is in at most one group; a group is
// reprotected only through a recovery plan (S19, reprotect-rules.ts).
import { randomUUID } from 'node:crypto';
import { badRequest, conflict, notFound } from '../api/errors.js';
import type { ServerContext } from '../context.js';
import type { Item, ReplicationGroupTable } from '../db/schema.js';
import { findItem, type ItemRows, withRows } from '../items/item-rows.js';
import { groupProblem } from './reprotect-rules.js';

export type ReplicationGroup = ReplicationGroupTable;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface GroupView {
  id: string;
  name: string;
  created_at: string;
  machines: { name: string; item_id: string; state: string }[];
  latest_point: { id: string; kind: string; taken_at: string } | null;
}

export async function groupByName(ctx: ServerContext, name: string): Promise<ReplicationGroup> {
  const g = await ctx.db
    .selectFrom('replication_groups')
    .selectAll()
    .where('name', '=', name)
    .executeTakeFirst();
  if (!g) throw notFound(`replication group '${name}'`);
  return g;
}

export async function groupById(ctx: ServerContext, id: string): Promise<ReplicationGroup | undefined> {
  return ctx.db.selectFrom('replication_groups').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The group's items with their rows, by machine name. */
export async function groupMembers(ctx: ServerContext, groupId: string): Promise<ItemRows[]> {
  const items = await ctx.db.selectFrom('items').selectAll().where('group_id', '=', groupId).execute();
  const rows = await Promise.all(items.map((i) => withRows(ctx.db, i)));
  return rows.sort((a, b) => a.machine.name.localeCompare(b.machine.name));
}

/** Creates the group of the named machines' items; refused (nothing written) naming the rule. */
export async function createGroup(ctx: ServerContext, name: string, machines: string[]): Promise<GroupView> {
  if (!NAME.test(name)) {
    throw badRequest(
      `group name '${name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  if (machines.length === 0) throw badRequest(`replication group '${name}' needs at least one machine`);
  const twice = machines.find((m, i) => machines.indexOf(m) !== i);
  if (twice) throw badRequest(`machine '${twice}' is named twice`);
  if (
    await ctx.db.selectFrom('replication_groups').select('id').where('name', '=', name).executeTakeFirst()
  ) {
    throw conflict(`replication group '${name}' exists already`);
  }
  const members: ItemRows[] = [];
  for (const m of machines) {
    const item = await findItem(ctx.db, m);
    if (!item) throw notFound(`replicated item of machine '${m}'`);
    if (item.group_id) {
      const other = await groupById(ctx, item.group_id);
      throw conflict(`machine '${m}' is already in replication group '${other?.name ?? item.group_id}'`);
    }
    members.push(await withRows(ctx.db, item));
  }
  const problem = groupProblem(
    name,
    members.map((r) => ({
      name: r.machine.name,
      os_type: r.machine.os_type,
      masterTarget: r.masterTarget.name,
    })),
  );
  if (problem) throw conflict(problem);
  const id = randomUUID();
  await ctx.db.transaction().execute(async (trx) => {
    await trx.insertInto('replication_groups').values({ id, name, created_at: ctx.now() }).execute();
    await trx
      .updateTable('items')
      .set({ group_id: id, updated_at: ctx.now() })
      .where(
        'id',
        'in',
        members.map((r) => r.item.id),
      )
      .execute();
  });
  return groupView(ctx, (await groupById(ctx, id))!);
}

export async function deleteGroup(ctx: ServerContext, name: string): Promise<void> {
  const g = await groupByName(ctx, name);
  const plans = await ctx.db.selectFrom('recovery_plans').select(['name', 'groups_json']).execute();
  const items = (await ctx.db.selectFrom('items').select('id').where('group_id', '=', g.id).execute()).map(
    (i) => i.id,
  );
  const usedBy = plans.filter((p) => items.some((i) => p.groups_json.includes(i))).map((p) => p.name);
  if (usedBy.length > 0) {
    throw conflict(
      `replication group '${name}' is in recovery plan${usedBy.length > 1 ? 's' : ''} ${usedBy.map((p) => `'${p}'`).join(', ')}: remove its machines from the plan first`,
    );
  }
  await ctx.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('items')
      .set({ group_id: null, updated_at: ctx.now() })
      .where('group_id', '=', g.id)
      .execute();
    await trx.deleteFrom('group_points').where('group_id', '=', g.id).execute();
    await trx.deleteFrom('replication_groups').where('id', '=', g.id).execute();
  });
}

export async function groupView(ctx: ServerContext, g: ReplicationGroup): Promise<GroupView> {
  const members = await groupMembers(ctx, g.id);
  const latest = await ctx.db
    .selectFrom('group_points')
    .select(['id', 'kind', 'taken_at'])
    .where('group_id', '=', g.id)
    .orderBy('taken_at', 'desc')
    .executeTakeFirst();
  return {
    id: g.id,
    name: g.name,
    created_at: g.created_at,
    machines: members.map((r) => ({ name: r.machine.name, item_id: r.item.id, state: r.item.state })),
    latest_point: latest ?? null,
  };
}

export async function listGroups(ctx: ServerContext): Promise<GroupView[]> {
  const groups = await ctx.db.selectFrom('replication_groups').selectAll().orderBy('name').execute();
  return Promise.all(groups.map((g) => groupView(ctx, g)));
}

/** The group name of an item, if it is in one. */
export async function groupNameOf(
  ctx: ServerContext,
  item: Pick<Item, 'group_id'>,
): Promise<string | undefined> {
  return item.group_id ? (await groupById(ctx, item.group_id))?.name : undefined;
}
