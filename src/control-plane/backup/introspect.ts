// What a database holds, asked of the database itself (not of schema.ts), so a backup carries
// every table another migration added: tables and columns through Kysely, foreign keys through
// each database's own catalogue, and the migrations applied.
import { type Kysely, sql } from 'kysely';
import type { DbKind } from '../db/database.js';
import type { ForeignKey } from './order.js';

// biome-ignore lint/suspicious/noExplicitAny: the tables are whatever the database holds
export type AnyDb = Kysely<any>;

export const MIGRATION_TABLES = ['kysely_migration', 'kysely_migration_lock'];

export interface TableInfo {
  name: string;
  columns: string[];
}

/** The tables of the schema the connection works in (PostgreSQL lists every schema's). */
async function ownTables(db: AnyDb, withKysely: boolean) {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: withKysely });
  const schemas = new Set(tables.map((t) => t.schema).filter((s) => s !== undefined));
  let schema: string | undefined;
  if (schemas.size > 0) {
    const r = await sql<{ s: string }>`SELECT current_schema() AS s`.execute(db);
    schema = r.rows[0]?.s;
  }
  return tables.filter((t) => !t.isView && (t.schema === undefined || t.schema === schema));
}

/** The data tables (not Kysely's own), with their columns in definition order. */
export async function dataTables(db: AnyDb): Promise<TableInfo[]> {
  return (await ownTables(db, false))
    .filter((t) => !MIGRATION_TABLES.includes(t.name))
    .map((t) => ({ name: t.name, columns: t.columns.map((c) => c.name) }));
}

/** Every table, Kysely's own included: a database with none is empty. */
export async function allTableNames(db: AnyDb): Promise<string[]> {
  return (await ownTables(db, true)).map((t) => t.name);
}

export async function foreignKeys(db: AnyDb, kind: DbKind): Promise<ForeignKey[]> {
  if (kind === 'sqlite') {
    const r = await sql<ForeignKey>`
      SELECT m.name AS "table", p."from" AS "column", p."table" AS "refTable", p."to" AS "refColumn"
      FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) p
      WHERE m.type = 'table'`.execute(db);
    return r.rows;
  }
  const r = await sql<ForeignKey>`
    SELECT kcu.table_name AS "table", kcu.column_name AS "column",
           ccu.table_name AS "refTable", ccu.column_name AS "refColumn"
    FROM information_schema.table_constraints tc
    JOIN information_schema.key_column_usage kcu
      ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
    JOIN information_schema.constraint_column_usage ccu
      ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema
    WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()`.execute(db);
  return r.rows;
}

/** The migrations applied, in the order Kysely runs them (by name). */
export async function appliedMigrations(db: AnyDb): Promise<string[]> {
  if (!(await allTableNames(db)).includes('kysely_migration')) return [];
  const rows = await db.selectFrom('kysely_migration').select('name').orderBy('name').execute();
  return rows.map((r) => String(r.name));
}
