// Items as the API answers them: the item with the names of what it refers to, its health
// parsed, and its latest job.
import type { Kysely } from 'kysely';
import type { HealthProblem } from '../../util/health.js';
import type { Database, Item } from '../db/schema.js';

export interface ItemView {
  id: string;
  machine_id: string;
  machine_name: string;
  policy_id: string;
  policy_name: string;
  process_server_id: string;
  process_server_name: string;
  master_target_id: string;
  master_target_name: string;
  datastore_id: string | null;
  datastore_name: string | null;
  retention_volume_id: string | null;
  retention_volume_path: string | null;
  state: string;
  progress_pct: number;
  rpo_seconds: number | null;
  health: HealthProblem[];
  direction: string;
  group_id: string | null;
  created_at: string;
  updated_at: string;
  last_job: { id: string; kind: string; state: string; progress_pct: number } | null;
}

/** One item (`only`), or a page of items ordered by machine name. */
export async function itemViews(
  db: Kysely<Database>,
  only?: Item['id'],
  page: { limit?: number; after?: string } = {},
): Promise<ItemView[]> {
  let q = db
    .selectFrom('items')
    .innerJoin('machines', 'machines.id', 'items.machine_id')
    .innerJoin('policies', 'policies.id', 'items.policy_id')
    .innerJoin('process_servers', 'process_servers.id', 'items.process_server_id')
    .innerJoin('master_targets', 'master_targets.id', 'items.master_target_id')
    .leftJoin('datastores', 'datastores.id', 'items.datastore_id')
    .leftJoin('retention_volumes', 'retention_volumes.id', 'items.retention_volume_id')
    .select([
      'items.id',
      'items.machine_id',
      'items.policy_id',
      'items.process_server_id',
      'items.master_target_id',
      'items.datastore_id',
      'items.retention_volume_id',
      'items.state',
      'items.progress_pct',
      'items.rpo_seconds',
      'items.health_json',
      'items.direction',
      'items.group_id',
      'items.created_at',
      'items.updated_at',
      'machines.name as machine_name',
      'policies.name as policy_name',
      'process_servers.name as process_server_name',
      'master_targets.name as master_target_name',
      'datastores.name as datastore_name',
      'retention_volumes.path as retention_volume_path',
    ]);
  if (only) q = q.where('items.id', '=', only);
  if (page.after !== undefined) q = q.where('machines.name', '>', page.after);
  q = q.orderBy('machines.name');
  if (page.limit !== undefined) q = q.limit(page.limit);
  const rows = await q.execute();
  if (rows.length === 0) return [];
  const jobs = await db
    .selectFrom('jobs')
    .select(['id', 'kind', 'state', 'progress_pct', 'target_id', 'created_at'])
    .where(
      'target_id',
      'in',
      rows.map((r) => r.id),
    )
    .orderBy('created_at', 'desc')
    .execute();
  // Newest first: the first job seen for a target is its latest.
  const latest = new Map<string, (typeof jobs)[number]>();
  for (const j of jobs) if (j.target_id !== null && !latest.has(j.target_id)) latest.set(j.target_id, j);
  // Fields named one by one: object rest over a thousand rows costs tens of milliseconds.
  return rows.map((r) => {
    const j = latest.get(r.id);
    return {
      id: r.id,
      machine_id: r.machine_id,
      machine_name: r.machine_name,
      policy_id: r.policy_id,
      policy_name: r.policy_name,
      process_server_id: r.process_server_id,
      process_server_name: r.process_server_name,
      master_target_id: r.master_target_id,
      master_target_name: r.master_target_name,
      datastore_id: r.datastore_id,
      datastore_name: r.datastore_name ?? null,
      retention_volume_id: r.retention_volume_id,
      retention_volume_path: r.retention_volume_path ?? null,
      state: r.state,
      progress_pct: r.progress_pct,
      rpo_seconds: r.rpo_seconds,
      health: JSON.parse(r.health_json) as HealthProblem[],
      direction: r.direction,
      group_id: r.group_id,
      created_at: r.created_at,
      updated_at: r.updated_at,
      last_job: j ? { id: j.id, kind: j.kind, state: j.state, progress_pct: j.progress_pct } : null,
    };
  });
}
