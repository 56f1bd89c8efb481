// Inventory: what a probe found about datastores and retention volumes (mount point, file
// system, the full facts as JSON) and, for a datastore, why it cannot be used.
import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('datastores').addColumn('fs_type', 'text').execute();
  await db.schema.alterTable('datastores').addColumn('mount_point', 'text').execute();
  await db.schema.alterTable('datastores').addColumn('problem', 'text').execute();
  await db.schema.alterTable('datastores').addColumn('facts_json', 'text').execute();
  await db.schema.alterTable('retention_volumes').addColumn('mount_point', 'text').execute();
  await db.schema.alterTable('retention_volumes').addColumn('facts_json', 'text').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  for (const c of ['fs_type', 'mount_point', 'problem', 'facts_json']) {
    await db.schema.alterTable('datastores').dropColumn(c).execute();
  }
  for (const c of ['mount_point', 'facts_json']) {
    await db.schema.alterTable('retention_volumes').dropColumn(c).execute();
  }
}
