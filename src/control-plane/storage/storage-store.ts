// Datastores (where a master target creates replica disks) and retention volumes (where it keeps
// undo journals, S24) in the database, with what the last probe found. Paths of the built-in
// master target are probed here, on this host; a remote master target probes its own and
// reports (applyStorageReport). Invalid retention volumes are kept, with every broken rule.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { installDir, probeVolume, type ReservedPaths } from '../../volumes/probe.js';
import {
  DEFAULT_RETENTION_PATH,
  datastoreProblem,
  invalidReason,
  retentionVolumeProblems,
} from '../../volumes/retention-rules.js';
import { unprobedFacts, type VolumeFacts } from '../../volumes/volume-facts.js';
import { badRequest, conflict, notFound } from '../api/errors.js';
import { findMasterTarget, requireMasterTarget } from '../components/component-store.js';
import type { ServerContext } from '../context.js';
import type { Datastore, MasterTargetRow, RetentionVolume } from '../db/schema.js';

export interface DatastoreView {
  id: string;
  master_target: string;
  name: string;
  path: string;
  fs_type: string | null;
  mount_point: string | null;
  capacity_bytes: number;
  free_bytes: number;
  /** Why replica disks cannot go there; null when they can. */
  problem: string | null;
  refreshed_at: string;
}

export interface RetentionVolumeView {
  id: string;
  master_target: string;
  path: string;
  fs_type: string | null;
  mount_point: string | null;
  capacity_bytes: number;
  free_bytes: number;
  /** S24 passed. */
  valid: boolean;
  /** Every S24 rule it breaks, when not valid. */
  invalid_reason: string | null;
  facts: VolumeFacts | null;
  refreshed_at: string;
}

/**
 * What a retention volume on this host must not share a file system with: the built-in process
 * server's cache, the installation and the server's data dir, and every local datastore (the
 * built-in master target's replica dir is its datastore 'default').
 */
export async function localReservedPaths(ctx: ServerContext): Promise<ReservedPaths> {
  const local = await ctx.db
    .selectFrom('datastores')
    .innerJoin('master_targets', 'master_targets.id', 'datastores.master_target_id')
    .select('datastores.path')
    .where('master_targets.builtin', '=', 1)
    .execute();
  return {
    cache: [join(ctx.dataDir, 'process-server')],
    install: [installDir(), ctx.dataDir],
    replicas: local.map((d) => d.path),
  };
}

function parseFacts(json: string | null): VolumeFacts | null {
  if (!json) return null;
  try {
    return JSON.parse(json) as VolumeFacts;
  } catch {
    return null;
  }
}

export async function listDatastores(ctx: ServerContext): Promise<DatastoreView[]> {
  const rows = await ctx.db
    .selectFrom('datastores')
    .innerJoin('master_targets', 'master_targets.id', 'datastores.master_target_id')
    .selectAll('datastores')
    .select('master_targets.name as master_target')
    .orderBy('master_targets.name')
    .orderBy('datastores.name')
    .execute();
  return rows.map((d) => ({
    id: d.id,
    master_target: d.master_target,
    name: d.name,
    path: d.path,
    fs_type: d.fs_type,
    mount_point: d.mount_point,
    capacity_bytes: d.capacity_bytes,
    free_bytes: d.free_bytes,
    problem: d.problem,
    refreshed_at: d.refreshed_at,
  }));
}

function retentionView(v: RetentionVolume, masterTarget: string): RetentionVolumeView {
  return {
    id: v.id,
    master_target: masterTarget,
    path: v.path,
    fs_type: v.fs_type,
    mount_point: v.mount_point,
    capacity_bytes: v.capacity_bytes,
    free_bytes: v.free_bytes,
    valid: v.valid === 1,
    invalid_reason: v.invalid_reason,
    facts: parseFacts(v.facts_json),
    refreshed_at: v.refreshed_at,
  };
}

export async function listRetentionVolumes(ctx: ServerContext): Promise<RetentionVolumeView[]> {
  const rows = await ctx.db
    .selectFrom('retention_volumes')
    .innerJoin('master_targets', 'master_targets.id', 'retention_volumes.master_target_id')
    .selectAll('retention_volumes')
    .select('master_targets.name as master_target')
    .orderBy('master_targets.name')
    .orderBy('retention_volumes.path')
    .execute();
  return rows.map((r) => retentionView(r, r.master_target));
}

/** Columns of a retention volume from its facts (S24 decides valid). */
function retentionColumns(f: VolumeFacts) {
  const reason = invalidReason(retentionVolumeProblems(f));
  return {
    fs_type: f.fs_type,
    mount_point: f.mount_point,
    capacity_bytes: f.capacity_bytes,
    free_bytes: f.free_bytes,
    valid: (reason === null ? 1 : 0) as 0 | 1,
    invalid_reason: reason,
    facts_json: JSON.stringify(f),
    refreshed_at: f.probed_at,
  };
}

function datastoreColumns(f: VolumeFacts) {
  return {
    fs_type: f.fs_type,
    mount_point: f.mount_point,
    capacity_bytes: f.capacity_bytes,
    free_bytes: f.free_bytes,
    problem: datastoreProblem(f),
    facts_json: JSON.stringify(f),
    refreshed_at: f.probed_at,
  };
}

function awaitingReport(mt: MasterTargetRow, path: string, now: string): VolumeFacts {
  return unprobedFacts(
    path,
    `not reported yet by master target '${mt.name}' (it probes its own volumes)`,
    now,
  );
}

/** The master target named, or the built-in one when none is named. */
async function masterTargetFor(ctx: ServerContext, name: string | undefined): Promise<MasterTargetRow> {
  if (name !== undefined) return requireMasterTarget(ctx, name);
  const builtin = await ctx.db
    .selectFrom('master_targets')
    .selectAll()
    .where('builtin', '=', 1)
    .executeTakeFirst();
  if (!builtin) throw badRequest('no built-in master target: name the master target');
  return builtin;
}

function checkAbsolute(path: string): void {
  if (!path.startsWith('/')) throw badRequest(`path '${path}' is not absolute`);
}

export async function addDatastore(
  ctx: ServerContext,
  input: { master_target?: string; name: string; path: string },
): Promise<DatastoreView> {
  checkAbsolute(input.path);
  const mt = await masterTargetFor(ctx, input.master_target);
  const taken = await ctx.db
    .selectFrom('datastores')
    .select('id')
    .where('master_target_id', '=', mt.id)
    .where('name', '=', input.name)
    .executeTakeFirst();
  if (taken) throw conflict(`master target '${mt.name}' already has a datastore '${input.name}'`);
  const facts = mt.builtin
    ? await probeVolume(input.path, await localReservedPaths(ctx))
    : awaitingReport(mt, input.path, ctx.now());
  await ctx.db
    .insertInto('datastores')
    .values({
      id: randomUUID(),
      master_target_id: mt.id,
      name: input.name,
      path: input.path,
      ...datastoreColumns(facts),
    })
    .execute();
  // A new datastore is a replication target: retention volumes on its file system become invalid.
  if (mt.builtin) await refreshMasterTargetStorage(ctx, mt);
  const all = await listDatastores(ctx);
  return all.find((d) => d.master_target === mt.name && d.name === input.name)!;
}

export async function addRetentionVolume(
  ctx: ServerContext,
  input: { master_target?: string; path?: string },
): Promise<RetentionVolumeView> {
  const path = input.path ?? DEFAULT_RETENTION_PATH;
  checkAbsolute(path);
  const mt = await masterTargetFor(ctx, input.master_target);
  const taken = await ctx.db
    .selectFrom('retention_volumes')
    .select('id')
    .where('master_target_id', '=', mt.id)
    .where('path', '=', path)
    .executeTakeFirst();
  if (taken) throw conflict(`master target '${mt.name}' already has the retention volume ${path}`);
  const facts = mt.builtin
    ? await probeVolume(path, await localReservedPaths(ctx))
    : awaitingReport(mt, path, ctx.now());
  const row = { id: randomUUID(), master_target_id: mt.id, path, ...retentionColumns(facts) };
  await ctx.db.insertInto('retention_volumes').values(row).execute();
  return retentionView({ ...row }, mt.name);
}

export async function removeDatastore(ctx: ServerContext, masterTarget: string, name: string): Promise<void> {
  const mt = await requireMasterTarget(ctx, masterTarget);
  const ds = await ctx.db
    .selectFrom('datastores')
    .select('id')
    .where('master_target_id', '=', mt.id)
    .where('name', '=', name)
    .executeTakeFirst();
  if (!ds) throw notFound(`datastore '${name}' of master target '${masterTarget}'`);
  const user = await itemUsing(ctx, 'datastore_id', ds.id);
  if (user) throw conflict(`datastore '${name}' is used by the replicated item of machine '${user}'`);
  await ctx.db.deleteFrom('datastores').where('id', '=', ds.id).execute();
}

export async function removeRetentionVolume(
  ctx: ServerContext,
  masterTarget: string,
  path: string,
): Promise<void> {
  const mt = await requireMasterTarget(ctx, masterTarget);
  const rv = await ctx.db
    .selectFrom('retention_volumes')
    .select('id')
    .where('master_target_id', '=', mt.id)
    .where('path', '=', path)
    .executeTakeFirst();
  if (!rv) throw notFound(`retention volume ${path} of master target '${masterTarget}'`);
  const user = await itemUsing(ctx, 'retention_volume_id', rv.id);
  if (user) throw conflict(`retention volume ${path} is used by the replicated item of machine '${user}'`);
  await ctx.db.deleteFrom('retention_volumes').where('id', '=', rv.id).execute();
}

async function itemUsing(
  ctx: ServerContext,
  column: 'datastore_id' | 'retention_volume_id',
  id: string,
): Promise<string | undefined> {
  const row = await ctx.db
    .selectFrom('items')
    .innerJoin('machines', 'machines.id', 'items.machine_id')
    .select('machines.name')
    .where(`items.${column}`, '=', id)
    .executeTakeFirst();
  return row?.name;
}

/** Probes every datastore and retention volume of a master target on this host. */
async function refreshMasterTargetStorage(ctx: ServerContext, mt: MasterTargetRow): Promise<void> {
  const datastores = await ctx.db
    .selectFrom('datastores')
    .selectAll()
    .where('master_target_id', '=', mt.id)
    .execute();
  let reserved = await localReservedPaths(ctx);
  for (const d of datastores) {
    const facts = await probeVolume(d.path, reserved);
    await ctx.db.updateTable('datastores').set(datastoreColumns(facts)).where('id', '=', d.id).execute();
  }
  reserved = await localReservedPaths(ctx);
  const volumes = await ctx.db
    .selectFrom('retention_volumes')
    .selectAll()
    .where('master_target_id', '=', mt.id)
    .execute();
  for (const v of volumes) {
    const facts = await probeVolume(v.path, reserved);
    await ctx.db
      .updateTable('retention_volumes')
      .set(retentionColumns(facts))
      .where('id', '=', v.id)
      .execute();
  }
}

/**
 * Refreshes what this host can probe: the volumes of the built-in master target. Remote master
 * targets report their own (applyStorageReport); their names are returned so callers can say so.
 */
export async function refreshLocalStorage(
  ctx: ServerContext,
): Promise<{ probed: string[]; remote: string[] }> {
  const mts = await ctx.db.selectFrom('master_targets').selectAll().orderBy('name').execute();
  const probed: string[] = [];
  const remote: string[] = [];
  for (const mt of mts) {
    if (mt.builtin) {
      await refreshMasterTargetStorage(ctx, mt);
      probed.push(mt.name);
    } else {
      remote.push(mt.name);
    }
  }
  return { probed, remote };
}

/** The built-in master target's own directories, recorded at start (then probed with the rest). */
export async function recordBuiltinStorage(
  ctx: ServerContext,
  masterTarget: string,
  dirs: { replicas: string; retention: string },
): Promise<void> {
  const mt = await findMasterTarget(ctx, masterTarget);
  if (!mt) return;
  const now = ctx.now();
  const ds = await ctx.db
    .selectFrom('datastores')
    .select('id')
    .where('master_target_id', '=', mt.id)
    .where('name', '=', 'default')
    .executeTakeFirst();
  if (!ds) {
    await ctx.db
      .insertInto('datastores')
      .values({
        id: randomUUID(),
        master_target_id: mt.id,
        name: 'default',
        path: dirs.replicas,
        ...datastoreColumns(unprobedFacts(dirs.replicas, 'not probed yet', now)),
      })
      .execute();
  }
  const rv = await ctx.db
    .selectFrom('retention_volumes')
    .select('id')
    .where('master_target_id', '=', mt.id)
    .where('path', '=', dirs.retention)
    .executeTakeFirst();
  if (!rv) {
    await ctx.db
      .insertInto('retention_volumes')
      .values({
        id: randomUUID(),
        master_target_id: mt.id,
        path: dirs.retention,
        ...retentionColumns(unprobedFacts(dirs.retention, 'not probed yet', now)),
      })
      .execute();
  }
}

/** The paths a remote master target should probe and report (see docs/control-plane.md). */
export async function storagePathsOf(
  ctx: ServerContext,
  masterTarget: string,
): Promise<{ datastores: { name: string; path: string }[]; retention_volumes: { path: string }[] }> {
  const mt = await requireMasterTarget(ctx, masterTarget);
  const datastores = await ctx.db
    .selectFrom('datastores')
    .select(['name', 'path'])
    .where('master_target_id', '=', mt.id)
    .orderBy('name')
    .execute();
  const retention_volumes = await ctx.db
    .selectFrom('retention_volumes')
    .select('path')
    .where('master_target_id', '=', mt.id)
    .orderBy('path')
    .execute();
  return { datastores, retention_volumes };
}

export interface StorageReport {
  datastores?: { name: string; facts: VolumeFacts }[];
  retention_volumes?: { facts: VolumeFacts }[];
}

/**
 * A remote master target's probe of its own volumes: known paths get the new facts, new ones
 * are added (a volume the master target was configured with). What it does not mention stays.
 */
export async function applyStorageReport(
  ctx: ServerContext,
  masterTarget: string,
  report: StorageReport,
): Promise<{ datastores: DatastoreView[]; retention_volumes: RetentionVolumeView[] }> {
  const mt = await requireMasterTarget(ctx, masterTarget);
  for (const f of [
    ...(report.datastores ?? []).map((d) => d.facts),
    ...(report.retention_volumes ?? []).map((r) => r.facts),
  ]) {
    checkAbsolute(f.path);
  }
  await ctx.db.transaction().execute(async (trx) => {
    for (const d of report.datastores ?? []) {
      const existing = await trx
        .selectFrom('datastores')
        .select('id')
        .where('master_target_id', '=', mt.id)
        .where('name', '=', d.name)
        .executeTakeFirst();
      const cols = { path: d.facts.path, ...datastoreColumns(d.facts) };
      if (existing) await trx.updateTable('datastores').set(cols).where('id', '=', existing.id).execute();
      else
        await trx
          .insertInto('datastores')
          .values({ id: randomUUID(), master_target_id: mt.id, name: d.name, ...cols })
          .execute();
    }
    for (const r of report.retention_volumes ?? []) {
      const existing = await trx
        .selectFrom('retention_volumes')
        .select('id')
        .where('master_target_id', '=', mt.id)
        .where('path', '=', r.facts.path)
        .executeTakeFirst();
      const cols = retentionColumns(r.facts);
      if (existing)
        await trx.updateTable('retention_volumes').set(cols).where('id', '=', existing.id).execute();
      else
        await trx
          .insertInto('retention_volumes')
          .values({ id: randomUUID(), master_target_id: mt.id, path: r.facts.path, ...cols })
          .execute();
    }
  });
  return {
    datastores: (await listDatastores(ctx)).filter((d) => d.master_target === mt.name),
    retention_volumes: (await listRetentionVolumes(ctx)).filter((r) => r.master_target === mt.name),
  };
}

/** Why this retention volume cannot be chosen for an item (null when it can): for items/reprotect. */
export function retentionVolumeRefusal(v: RetentionVolume): string | null {
  return v.valid === 1
    ? null
    : `retention volume ${v.path} is not usable: ${v.invalid_reason ?? 'not probed'}`;
}

export type { Datastore };
