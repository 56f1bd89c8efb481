// `rebound server backup|restore|verify-backup`: the configuration server's backup (S2: a
// restored server is the same server to its agents). See docs/control-plane.md.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { BACKUP_ROUTE } from '../control-plane/api/routes/backup.js';
import { type BackupResult, writeBackup } from '../control-plane/backup/backup.js';
import type { BackupSummary } from '../control-plane/backup/format.js';
import { appliedMigrations } from '../control-plane/backup/introspect.js';
import { verifyBackup } from '../control-plane/backup/read.js';
import { restoreBackup } from '../control-plane/backup/restore.js';
import { adminConnection, DEFAULT_SERVER_DIR } from '../control-plane/client/connection.js';
import { downloadTo } from '../control-plane/client/download.js';
import { openDatabase, parseDbUrl } from '../control-plane/db/database.js';
import { serverPaths } from '../control-plane/server-identity.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { printJson } from './output.js';

function rowCount(tables: { rows: number }[]): number {
  return tables.reduce((n, t) => n + t.rows, 0);
}

/** Reads the data dir and database directly (the server may be running: one snapshot). */
async function backupDirect(out: string, dataDir: string, dbOption?: string): Promise<BackupResult> {
  const dbUrl = dbOption ?? serverPaths(dataDir).defaultDbUrl;
  const { kind, target } = parseDbUrl(dbUrl);
  if (kind === 'sqlite' && !existsSync(target)) {
    throw new Error(
      `no database at ${target}: give --db (e.g. postgres://USER@HOST/DB) if the server does not use the SQLite default`,
    );
  }
  const database = await openDatabase(dbUrl, { migrate: false });
  try {
    if ((await appliedMigrations(database.db)).length === 0) {
      throw new Error(`database ${database.display} holds no configuration server schema`);
    }
    return await writeBackup({ db: database.db, kind, dataDir }, out);
  } finally {
    await database.close();
  }
}

/** Fetches a backup from the running server's API, checks it whole, then puts it in place. */
async function backupThroughApi(out: string, csConfig?: string): Promise<BackupResult> {
  out = resolve(out);
  const conn = await adminConnection(csConfig);
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    let bytes: number;
    try {
      bytes = await downloadTo(conn, BACKUP_ROUTE, fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    const summary = await verifyBackup(tmp, `from ${conn.url}`);
    await rename(tmp, out);
    await fsyncDir(dirname(out));
    return { path: out, bytes, sha256: summary.sha256, files: summary.files.length, tables: summary.tables };
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

function describe(s: BackupSummary): string {
  return `${s.tables.length} tables, ${rowCount(s.tables)} rows, ${s.files.length} identity files, taken ${s.header.created_at} from ${s.header.database}`;
}

export function registerBackupCommands(server: Command): void {
  server
    .command('backup')
    .description('back up the configuration server (identity and database) to one file, while it runs')
    .requiredOption('--out <file>', 'the backup file (replaced atomically)')
    .option('--data-dir <dir>', 'the server’s data dir, read directly', DEFAULT_SERVER_DIR)
    .option('--db <url>', 'the server’s database (default sqlite:DATA_DIR/rebound.db)')
    .option('--api', 'take it through the running server’s API as admin instead (--cs-config)')
    .option('--cs-config <file>', 'configuration server connection for --api (default DATA_DIR/cli.json)')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = o.api
        ? await backupThroughApi(
            o.out,
            o.csConfig ?? (process.env.REBOUND_CS_CONFIG ? undefined : join(resolve(o.dataDir), 'cli.json')),
          )
        : await backupDirect(o.out, resolve(o.dataDir), o.db);
      if (o.json) printJson(r);
      else {
        console.log(
          `backup written to ${r.path}: ${r.tables.length} tables, ${rowCount(r.tables)} rows, ${r.files} identity files, ${r.bytes} bytes, sha256 ${r.sha256}`,
        );
      }
    });

  server
    .command('restore <file>')
    .description(
      'restore a backup into an empty data dir and an empty database (same CA, certificates, token)',
    )
    .option('--data-dir <dir>', 'the data dir to restore into', DEFAULT_SERVER_DIR)
    .option('--db <url>', 'the database to restore into (default sqlite:DATA_DIR/rebound.db)')
    .option(
      '--force',
      'replace the identity in a non-empty data dir and the contents of a non-empty database',
    )
    .option('--json', 'print JSON')
    .action(async (file: string, o) => {
      const r = await restoreBackup({ file, dataDir: o.dataDir, dbUrl: o.db, force: Boolean(o.force) });
      if (o.json) {
        printJson({ dataDir: r.dataDir, database: r.database, upgradedWith: r.upgradedWith, ...r.summary });
        return;
      }
      console.log(`restored ${file} into ${r.dataDir} (database ${r.database}): ${describe(r.summary)}`);
      if (r.upgradedWith.length > 0) console.log(`schema upgraded with ${r.upgradedWith.join(', ')}`);
      console.log(
        `start it with: rebound server start --data-dir ${r.dataDir}${o.db ? ` --db ${r.database}` : ''}`,
      );
    });

  server
    .command('verify-backup <file>')
    .description('check a backup file whole (every checksum) without restoring it')
    .option('--json', 'print JSON')
    .action(async (file: string, o) => {
      const s = await verifyBackup(file);
      if (o.json) printJson(s);
      else console.log(`backup ${file} is intact: ${describe(s)}, sha256 ${s.sha256}`);
    });
}
