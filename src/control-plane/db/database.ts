// Opens the configuration server's database from a URL and brings its schema up to date.
//   sqlite:PATH             embedded SQLite (better-sqlite3), the default
//   postgres://user@host/db PostgreSQL (pg)
// The rest of the server sees only Kysely<Database>: the same queries on both.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, type MigrationProvider, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { type BackgroundCheckpoints, startBackgroundCheckpoints } from './background-checkpoints.js';
import { MIGRATIONS } from './migrations/index.js';
import type { Database } from './schema.js';
import { withStatementCache } from './statement-cache.js';

export type DbKind = 'sqlite' | 'postgres';

export interface OpenDatabase {
  db: Kysely<Database>;
  kind: DbKind;
  /** The URL with any password masked, for logs and status. */
  display: string;
  close(): Promise<void>;
}

// int8 (bigint) comes back from pg as a string; our sizes fit in a double.
pg.types.setTypeParser(20, (v) => Number(v));

export function parseDbUrl(url: string): { kind: DbKind; target: string } {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new Error(`database URL '${url}' names no file: use sqlite:PATH`);
    return { kind: 'sqlite', target: path === ':memory:' ? path : resolve(path) };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return { kind: 'postgres', target: url };
  }
  throw new Error(`database URL '${url}' is not supported: use sqlite:PATH or postgres://USER@HOST/DB`);
}

function maskPassword(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]+:)[^@]*@/, '$1***@');
}

export const migrationProvider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

export interface OpenOptions {
  /** false: opens it as it is (a backup must not change the database it reads). */
  migrate?: boolean;
  /**
   * SQLite: checkpoint the WAL on a thread of its own (the long-running server); the callback
   * hears of checkpoint failures.
   */
  backgroundCheckpoints?: (problem: string) => void;
}

export async function openDatabase(url: string, opts: OpenOptions = {}): Promise<OpenDatabase> {
  const { kind, target } = parseDbUrl(url);
  let db: Kysely<Database>;
  let checkpoints: BackgroundCheckpoints | undefined;
  if (kind === 'sqlite') {
    if (target !== ':memory:') mkdirSync(dirname(target), { recursive: true });
    const sqlite = new SQLite(target);
    // WAL: readers never wait for the writer; synchronous=FULL: a committed row survives power loss.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    if (opts.backgroundCheckpoints && target !== ':memory:') {
      checkpoints = startBackgroundCheckpoints(sqlite, target, opts.backgroundCheckpoints);
    }
  } else {
    const pool = new pg.Pool({ connectionString: target, max: 10 });
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }
  try {
    if (opts.migrate !== false) await migrate(db);
  } catch (e) {
    await checkpoints?.stop();
    await db.destroy();
    throw new Error(`database ${maskPassword(url)}: ${(e as Error).message}`);
  }
  return {
    db,
    kind,
    display: kind === 'sqlite' ? `sqlite:${target}` : maskPassword(url),
    close: async () => {
      await checkpoints?.stop();
      await db.destroy();
    },
  };
}

export async function migrate(db: Kysely<Database>): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error) {
    const what = failed ? `migration ${failed.migrationName} failed: ` : 'migration failed: ';
    throw new Error(what + (error instanceof Error ? error.message : String(error)));
  }
}
