// 005: a replication group's common recovery points. Each is taken across the group's agents
// under one write barrier (crash) or one freeze (app); the row keeps every member's sequence
// number of it, so a group fails over with each machine at its own seq of the same instant.
import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the database as it was then
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('group_points')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('group_id', 'text', (c) => c.notNull().references('replication_groups.id').onDelete('cascade'))
    /** crash | app */
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('taken_at', 'text', (c) => c.notNull())
    /** JSON: { [machineId]: seq } */
    .addColumn('seqs_json', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('group_points_group')
    .on('group_points')
    .columns(['group_id', 'taken_at'])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('group_points').execute();
}
