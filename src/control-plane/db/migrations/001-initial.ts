// The first schema. Column types are the portable subset (text, integer/bigint, real) so the
// same migration runs on SQLite and PostgreSQL; see schema.ts for what each column means.
import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('meta')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('sites')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('adapter', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('machines')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('site_id', 'text', (c) => c.references('sites.id'))
    .addColumn('os_type', 'text', (c) => c.notNull())
    .addColumn('agent_name', 'text', (c) => c.unique())
    .addColumn('address', 'text')
    .addColumn('registered_at', 'text')
    .addColumn('last_heartbeat_at', 'text')
    .addColumn('status_json', 'text')
    .addColumn('created_by_failover_of', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('disks')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('size_bytes', 'bigint', (c) => c.notNull())
    .addColumn('path', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('disks_machine_name', ['machine_id', 'name'])
    .execute();

  for (const table of ['process_servers', 'master_targets']) {
    let t = db.schema
      .createTable(table)
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('address', 'text')
      .addColumn('builtin', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('registered_at', 'text', (c) => c.notNull())
      .addColumn('last_heartbeat_at', 'text')
      .addColumn('status_json', 'text');
    if (table === 'master_targets') {
      t = t
        .addColumn('max_disks', 'integer', (c) => c.notNull().defaultTo(60))
        .addColumn('has_snapshots', 'integer', (c) => c.notNull().defaultTo(0));
    }
    await t.execute();
  }

  await db.schema
    .createTable('datastores')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('master_target_id', 'text', (c) =>
      c.notNull().references('master_targets.id').onDelete('cascade'),
    )
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('capacity_bytes', 'bigint', (c) => c.notNull())
    .addColumn('free_bytes', 'bigint', (c) => c.notNull())
    .addColumn('refreshed_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('datastores_mt_name', ['master_target_id', 'name'])
    .execute();

  await db.schema
    .createTable('retention_volumes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('master_target_id', 'text', (c) =>
      c.notNull().references('master_targets.id').onDelete('cascade'),
    )
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('fs_type', 'text')
    .addColumn('capacity_bytes', 'bigint', (c) => c.notNull())
    .addColumn('free_bytes', 'bigint', (c) => c.notNull())
    .addColumn('valid', 'integer', (c) => c.notNull())
    .addColumn('invalid_reason', 'text')
    .addColumn('refreshed_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('retention_volumes_mt_path', ['master_target_id', 'path'])
    .execute();

  await db.schema
    .createTable('policies')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('rpo_threshold_minutes', 'integer', (c) => c.notNull())
    .addColumn('retention_hours', 'integer', (c) => c.notNull())
    .addColumn('app_consistent_minutes', 'integer', (c) => c.notNull())
    .addColumn('crash_consistent_minutes', 'integer', (c) => c.notNull())
    .addColumn('ack_mode', 'text', (c) => c.notNull())
    .addColumn('is_failback', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('parent_policy_id', 'text', (c) => c.references('policies.id').onDelete('cascade'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('items')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('machine_id', 'text', (c) => c.notNull().unique().references('machines.id'))
    .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
    .addColumn('process_server_id', 'text', (c) => c.notNull().references('process_servers.id'))
    .addColumn('master_target_id', 'text', (c) => c.notNull().references('master_targets.id'))
    .addColumn('datastore_id', 'text', (c) => c.references('datastores.id'))
    .addColumn('retention_volume_id', 'text', (c) => c.references('retention_volumes.id'))
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('progress_pct', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('rpo_seconds', 'double precision')
    .addColumn('health_json', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('direction', 'text', (c) => c.notNull().defaultTo('forward'))
    .addColumn('group_id', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('jobs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('target_id', 'text')
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('progress_pct', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('params_json', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text')
    .addColumn('ended_at', 'text')
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('jobs_state').on('jobs').column('state').execute();

  await db.schema
    .createTable('job_steps')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
    .addColumn('ordinal', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('progress_pct', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('message', 'text')
    .addColumn('error', 'text')
    .addColumn('started_at', 'text')
    .addColumn('ended_at', 'text')
    .addUniqueConstraint('job_steps_job_ordinal', ['job_id', 'ordinal'])
    .execute();

  await db.schema
    .createTable('alerts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('subject_id', 'text', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addColumn('raised_at', 'text', (c) => c.notNull())
    .addColumn('cleared_at', 'text')
    .execute();
  await db.schema.createIndex('alerts_subject').on('alerts').columns(['subject_id', 'kind']).execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  for (const t of [
    'alerts',
    'job_steps',
    'jobs',
    'items',
    'policies',
    'retention_volumes',
    'datastores',
    'master_targets',
    'process_servers',
    'disks',
    'machines',
    'sites',
    'meta',
  ]) {
    await db.schema.dropTable(t).execute();
  }
}
