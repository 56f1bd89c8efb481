// Restoring a backup into a new data dir and an empty database (SQLite or PostgreSQL, whichever
// the backup came from): the same CA, certificates and admin token, every row, then the schema
// brought up to this version. Everything is checked before anything is written; a restore that
// fails half-way removes what it made.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Migrator } from 'kysely';
import { fsyncDir } from '../../util/fsync-dir.js';
import { type DbKind, migrate, migrationProvider, openDatabase, parseDbUrl } from '../db/database.js';
import { MIGRATIONS } from '../db/migrations/index.js';
import { serverPaths } from '../server-identity.js';
import { IDENTITY_ENTRIES } from './backup.js';
import { type BackupSummary, type BackupTable, decodeValue } from './format.js';
import { type AnyDb, allTableNames, foreignKeys } from './introspect.js';
import { orderTables } from './order.js';
import { backupRecords, verifyBackup } from './read.js';

export interface RestoreOptions {
  file: string;
  dataDir: string;
  /** Default sqlite:DATA_DIR/rebound.db, as `rebound server start`. */
  dbUrl?: string;
  /** Replace the identity in a non-empty data dir and the contents of a non-empty database. */
  force?: boolean;
}

export interface RestoreResult {
  summary: BackupSummary;
  dataDir: string;
  database: string;
  /** Migrations run after the rows went in (the backup was older than this version). */
  upgradedWith: string[];
}

const INSERT_BATCH = 100;

/** The backup's schema must be where this version's schema once was: its first N migrations. */
function checkMigrations(file: string, migrations: string[]): void {
  const known = Object.keys(MIGRATIONS).sort();
  const unknown = migrations.filter((m) => !known.includes(m));
  if (unknown.length > 0) {
    throw new Error(
      `backup ${file} comes from a newer Rebound: its database has migration ${unknown.join(', ')} that this version does not know; restore it with that version`,
    );
  }
  if (migrations.some((m, i) => known[i] !== m)) {
    throw new Error(
      `backup ${file} has schema migrations ${migrations.join(', ')}, which are not the first of this version's (${known.join(', ')})`,
    );
  }
}

function checkFilePaths(file: string, summary: BackupSummary): void {
  for (const p of summary.files) {
    const parts = p.split('/');
    if (
      !(IDENTITY_ENTRIES as readonly string[]).includes(parts[0]) ||
      parts.some((s) => s === '' || s === '.' || s === '..')
    ) {
      throw new Error(`backup ${file} holds file '${p}', which is not one of the server's identity files`);
    }
  }
}

async function entriesOf(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((e) => e !== 'lost+found').sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Drops every table (children first), Kysely's own included: an empty database again. */
async function dropAll(db: AnyDb, kind: DbKind): Promise<void> {
  const names = await allTableNames(db);
  const order = orderTables(names, await foreignKeys(db, kind)).reverse();
  for (const t of order) {
    await (kind === 'postgres' ? db.schema.dropTable(t).cascade() : db.schema.dropTable(t)).execute();
  }
}

async function insertRows(db: AnyDb, file: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    let table: BackupTable | undefined;
    let batch: Record<string, unknown>[] = [];
    const flush = async () => {
      if (!table || batch.length === 0) return;
      try {
        await trx.insertInto(table.name).values(batch).execute();
      } catch (e) {
        throw new Error(`cannot restore the rows of table '${table.name}': ${(e as Error).message}`);
      }
      batch = [];
    };
    for await (const rec of backupRecords(file)) {
      if (Array.isArray(rec)) {
        const t = table!;
        batch.push(Object.fromEntries(t.columns.map((c, i) => [c, decodeValue(rec[i])])));
        if (batch.length >= INSERT_BATCH) await flush();
      } else if (rec.type === 'table') {
        await flush();
        table = rec;
      }
    }
    await flush();
  });
}

/** Writes the identity files into a staging dir inside the data dir (same file system). */
async function stageFiles(file: string, stage: string): Promise<void> {
  await mkdir(stage, { mode: 0o700 });
  const dirs = new Set<string>([stage]);
  for await (const rec of backupRecords(file)) {
    if (Array.isArray(rec) || rec.type !== 'file') continue;
    const path = join(stage, ...rec.path.split('/'));
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    dirs.add(dirname(path));
    const fh = await open(path, 'wx', rec.mode & 0o777);
    try {
      await fh.chmod(rec.mode & 0o777);
      await fh.writeFile(Buffer.from(rec.data, 'base64'));
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  for (const d of dirs) await fsyncDir(d);
}

export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  const file = o.file;
  const summary = await verifyBackup(file);
  checkMigrations(file, summary.header.migrations);
  checkFilePaths(file, summary);

  const dataDir = resolve(o.dataDir);
  const dataDirExisted = existsSync(dataDir);
  const present = await entriesOf(dataDir);
  if (present.length > 0 && !o.force) {
    throw new Error(
      `data dir ${dataDir} is not empty (it holds ${present.slice(0, 5).join(', ')}${present.length > 5 ? ', ...' : ''}): restore into an empty data dir, or give --force to replace the server identity in it`,
    );
  }
  const dbUrl = o.dbUrl ?? serverPaths(dataDir).defaultDbUrl;
  const { kind, target } = parseDbUrl(dbUrl);
  const sqliteExisted = kind === 'sqlite' && existsSync(target);
  if (kind === 'postgres' || sqliteExisted) {
    const probe = await openDatabase(dbUrl, { migrate: false });
    try {
      const tables = await allTableNames(probe.db);
      if (tables.length > 0 && !o.force) {
        throw new Error(
          `database ${probe.display} is not empty (it holds tables ${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', ...' : ''}): restore into an empty database, or give --force to replace its contents`,
        );
      }
    } finally {
      await probe.close();
    }
  }

  // Checked: from here on, every change is undone if a later step fails.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const stage = join(dataDir, `.restore-${randomBytes(6).toString('hex')}`);
  let database: Awaited<ReturnType<typeof openDatabase>> | undefined;
  let dbTouched = false;
  let upgradedWith: string[] = [];
  let shown = dbUrl;
  try {
    await stageFiles(file, stage);
    database = await openDatabase(dbUrl, { migrate: false });
    shown = database.display;
    dbTouched = true;
    if (o.force) await dropAll(database.db, kind);
    const migrations = summary.header.migrations;
    if (migrations.length > 0) {
      const r = await new Migrator({ db: database.db, provider: migrationProvider }).migrateTo(
        migrations[migrations.length - 1],
      );
      if (r.error) throw new Error(`cannot make the backup's schema: ${(r.error as Error).message}`);
    }
    await insertRows(database.db, file);
    await migrate(database.db);
    upgradedWith = Object.keys(MIGRATIONS)
      .sort()
      .filter((m) => !migrations.includes(m));
    await placeFiles(dataDir, stage, Boolean(o.force));
  } catch (e) {
    if (database && dbTouched) await dropAll(database.db, kind).catch(() => undefined);
    await database?.close().catch(() => undefined);
    database = undefined;
    if (kind === 'sqlite' && !sqliteExisted) {
      for (const s of ['', '-wal', '-shm']) await unlink(target + s).catch(() => undefined);
    }
    await rm(stage, { recursive: true, force: true });
    if (!dataDirExisted) await rm(dataDir, { recursive: true, force: true });
    throw e;
  } finally {
    await database?.close();
  }
  return { summary, dataDir, database: shown, upgradedWith };
}

/** Moves the staged identity into the data dir; with force, what was there goes first. */
async function placeFiles(dataDir: string, stage: string, force: boolean): Promise<void> {
  const staged = await readdir(stage);
  if (force) {
    const trash = join(dataDir, `.replaced-${randomBytes(6).toString('hex')}`);
    await mkdir(trash, { mode: 0o700 });
    // cli.json names the old server's address; `rebound server start` writes a new one.
    for (const e of [...IDENTITY_ENTRIES, 'cli.json']) {
      if (existsSync(join(dataDir, e))) await rename(join(dataDir, e), join(trash, e));
    }
    await rm(trash, { recursive: true, force: true });
  }
  for (const e of staged) await rename(join(stage, e), join(dataDir, e));
  await fsyncDir(dataDir);
  await rm(stage, { recursive: true, force: true });
}
