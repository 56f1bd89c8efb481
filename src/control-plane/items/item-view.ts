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

export async function itemViews(db: Kysely<Database>, only?: Item['id']): Promise<ItemView[]> {
  let q = db
    .selectFrom('items')
    .innerJoin('machines', 'machines.id', 'items.machine_id')
    .innerJoin('policies', 'policies.id', 'items.policy_id')
    .innerJoin('process_servers', 'process_servers.id', 'items.process_server_id')
    .innerJoin('master_targets', 'master_targets.id', 'items.master_target_id')
    .leftJoin('datastores', 'datastores.id', 'items.datastore_id')
    .leftJoin('retention_volumes', 'retention_volumes.id', 'items.retention_volume_id')
    .selectAll('items')
    .select([
      'machines.name as machine_name',
      'policies.name as policy_name',
      'process_servers.name as process_server_name',
      'master_targets.name as master_target_name',
      'datastores.name as datastore_name',
      'retention_volumes.path as retention_volume_path',
    ]);
  if (only) q = q.where('items.id', '=', only);
  const rows = await q.orderBy('machines.name').execute();
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
  return rows.map(({ health_json, ...r }) => {
    const j = jobs.find((x) => x.target_id === r.id);
    return {
      ...r,
      datastore_name: r.datastore_name ?? null,
      retention_volume_path: r.retention_volume_path ?? null,
      health: JSON.parse(health_json) as HealthProblem[],
      last_job: j ? { id: j.id, kind: j.kind, state: j.state, progress_pct: j.progress_pct } : null,
    };
  });
}
