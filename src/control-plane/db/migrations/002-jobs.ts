// Jobs: a cancellation asked for while a step runs is kept in the database, so that a server
// that stops before the step ends still cancels the job (instead of resuming it) on restart.
import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('jobs').addColumn('cancel_requested_at', 'text').execute();
  await db.schema.createIndex('jobs_target').on('jobs').column('target_id').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('jobs_target').execute();
  await db.schema.alterTable('jobs').dropColumn('cancel_requested_at').execute();
}
