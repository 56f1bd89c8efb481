// Process servers and master targets as the inventory shows them: built in or registered, their
// last heartbeat, and for a master target the disks attached to it against its limit (S23).
// Rows are written by registration and heartbeats; this module reads them (and the few settings
// an operator may change). Replicated items and reprotect ask masterTargetProblems here.
import type { Kysely, Transaction } from 'kysely';
import { badRequest, conflict, notFound } from '../api/errors.js';
import type { ServerContext } from '../context.js';
import type { Database, MasterTargetRow, ProcessServerRow } from '../db/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** S23: a master target takes at most 60 disks (the original's SCSI limit; kept as ours). */
export const MAX_ATTACHED_DISKS = 60;

export interface ComponentView {
  id: string;
  name: string;
  address: string | null;
  builtin: boolean;
  registered_at: string;
  last_heartbeat_at: string | null;
  /** Seconds since the last heartbeat, as of the answer. */
  heartbeat_age_seconds: number | null;
  /** What the component last reported (free-form JSON), if anything. */
  status: unknown;
}

export interface MasterTargetView extends ComponentView {
  max_disks: number;
  /** Disks of the replicated items whose master target it is. */
  attached_disks: number;
  /** S23: a master target with snapshots cannot be a reprotect target. */
  has_snapshots: boolean;
}

function parseStatus(json: string | null): unknown {
  if (json === null) return null;
  try {
    return JSON.parse(json);
  } catch {
    return json;
  }
}

function componentView(row: ProcessServerRow | MasterTargetRow, now: string): ComponentView {
  const age =
    row.last_heartbeat_at === null
      ? null
      : Math.max(0, Math.round((Date.parse(now) - Date.parse(row.last_heartbeat_at)) / 1000));
  return {
    id: row.id,
    name: row.name,
    address: row.address,
    builtin: row.builtin === 1,
    registered_at: row.registered_at,
    last_heartbeat_at: row.last_heartbeat_at,
    heartbeat_age_seconds: age,
    status: parseStatus(row.status_json),
  };
}

/** Disks attached to each master target (or to the one given): its items' machines' disks. */
export async function attachedDiskCounts(
  ctx: { db: Db },
  masterTargetId?: string,
): Promise<Map<string, number>> {
  let q = ctx.db
    .selectFrom('items')
    .innerJoin('disks', 'disks.machine_id', 'items.machine_id')
    .select(['items.master_target_id as mt', (eb) => eb.fn.count<number>('disks.id').as('n')])
    .groupBy('items.master_target_id');
  if (masterTargetId) q = q.where('items.master_target_id', '=', masterTargetId);
  const rows = await q.execute();
  return new Map(rows.map((r) => [r.mt, Number(r.n)]));
}

function masterTargetView(row: MasterTargetRow, attached: number, now: string): MasterTargetView {
  return {
    ...componentView(row, now),
    max_disks: row.max_disks,
    attached_disks: attached,
    has_snapshots: row.has_snapshots === 1,
  };
}

export async function listProcessServers(ctx: ServerContext): Promise<ComponentView[]> {
  const rows = await ctx.db.selectFrom('process_servers').selectAll().orderBy('name').execute();
  const now = ctx.now();
  return rows.map((r) => componentView(r, now));
}

export async function listMasterTargets(ctx: ServerContext): Promise<MasterTargetView[]> {
  const rows = await ctx.db.selectFrom('master_targets').selectAll().orderBy('name').execute();
  const counts = await attachedDiskCounts(ctx);
  const now = ctx.now();
  return rows.map((r) => masterTargetView(r, counts.get(r.id) ?? 0, now));
}

export async function findProcessServer(
  ctx: { db: Db },
  name: string,
): Promise<ProcessServerRow | undefined> {
  return ctx.db.selectFrom('process_servers').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function findMasterTarget(ctx: { db: Db }, name: string): Promise<MasterTargetRow | undefined> {
  return ctx.db.selectFrom('master_targets').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function requireMasterTarget(ctx: { db: Db }, name: string): Promise<MasterTargetRow> {
  const mt = await findMasterTarget(ctx, name);
  if (!mt) throw notFound(`master target '${name}'`);
  return mt;
}

export async function showProcessServer(ctx: ServerContext, name: string): Promise<ComponentView> {
  const row = await findProcessServer(ctx, name);
  if (!row) throw notFound(`process server '${name}'`);
  return componentView(row, ctx.now());
}

export async function showMasterTarget(ctx: ServerContext, name: string): Promise<MasterTargetView> {
  const row = await requireMasterTarget(ctx, name);
  const counts = await attachedDiskCounts(ctx, row.id);
  return masterTargetView(row, counts.get(row.id) ?? 0, ctx.now());
}

/**
 * Why this master target cannot take `addingDisks` more disks (S23): it holds snapshots, or it
 * would go over its limit. Empty when it can.
 */
export async function masterTargetProblems(
  ctx: { db: Db },
  mt: MasterTargetRow,
  addingDisks: number,
): Promise<string[]> {
  const problems: string[] = [];
  if (mt.has_snapshots === 1) {
    problems.push(`master target '${mt.name}' has snapshots: delete them first (S23)`);
  }
  const attached = (await attachedDiskCounts(ctx, mt.id)).get(mt.id) ?? 0;
  if (attached + addingDisks > mt.max_disks) {
    problems.push(
      `master target '${mt.name}' would have ${attached + addingDisks} disks attached, over its limit of ${mt.max_disks} (S23): ${attached} attached, ${addingDisks} to add`,
    );
  }
  return problems;
}

export interface MasterTargetSettings {
  max_disks?: number;
  has_snapshots?: boolean;
}

/** An operator's settings: a lower disk limit, or whether the master target has snapshots. */
export async function updateMasterTarget(
  ctx: ServerContext,
  name: string,
  s: MasterTargetSettings,
): Promise<MasterTargetView> {
  const mt = await requireMasterTarget(ctx, name);
  if (s.max_disks === undefined && s.has_snapshots === undefined) {
    throw badRequest('nothing to change: give max_disks or has_snapshots');
  }
  if (s.max_disks !== undefined) {
    if (!Number.isInteger(s.max_disks) || s.max_disks < 1 || s.max_disks > MAX_ATTACHED_DISKS) {
      throw badRequest(
        `max_disks ${JSON.stringify(s.max_disks)} is not valid: use a whole number from 1 to ${MAX_ATTACHED_DISKS} (S23)`,
      );
    }
    const attached = (await attachedDiskCounts(ctx, mt.id)).get(mt.id) ?? 0;
    if (s.max_disks < attached) {
      throw conflict(
        `max_disks ${s.max_disks} is below the ${attached} disks already attached to master target '${name}'`,
      );
    }
  }
  await ctx.db
    .updateTable('master_targets')
    .set({
      ...(s.max_disks !== undefined ? { max_disks: s.max_disks } : {}),
      ...(s.has_snapshots !== undefined ? { has_snapshots: s.has_snapshots ? 1 : 0 } : {}),
    })
    .where('id', '=', mt.id)
    .execute();
  return showMasterTarget(ctx, name);
}
