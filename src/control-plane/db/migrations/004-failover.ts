// Failover, reprotect and failback (#5): where a site keeps its machines, which site a machine
// is at and as what, and an item's recovery state (its partner machine on the other side, the
// failover it went through, a running test failover). Replication groups and recovery plans.
import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sites').addColumn('config_json', 'text').execute();
  await db.schema.alterTable('items').addColumn('partner_machine_id', 'text').execute();
  await db.schema.alterTable('items').addColumn('recovery_site_id', 'text').execute();
  await db.schema.alterTable('items').addColumn('failover_json', 'text').execute();
  await db.schema.alterTable('items').addColumn('test_failover_json', 'text').execute();
  await db.schema
    .createTable('replication_groups')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('recovery_plans')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    /** JSON: ordered groups of machines with their pre/post scripts and manual actions. */
    .addColumn('groups_json', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('recovery_plans').execute();
  await db.schema.dropTable('replication_groups').execute();
  for (const c of ['partner_machine_id', 'recovery_site_id', 'failover_json', 'test_failover_json']) {
    await db.schema.alterTable('items').dropColumn(c).execute();
  }
  await db.schema.alterTable('sites').dropColumn('config_json').execute();
}
