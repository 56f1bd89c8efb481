// Taking a backup of the configuration server: its identity files and every row of every
// table, read in one snapshot while the server keeps running, written to a file that appears
// whole or not at all (see format.ts for the file, docs/control-plane.md for the procedure).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { type FileHandle, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fsyncDir } from '../../util/fsync-dir.js';
import type { DbKind } from '../db/database.js';
import { BACKUP_FORMAT, BACKUP_VERSION, BackupEncoder, type BackupFile, encodeValue } from './format.js';
import { type AnyDb, appliedMigrations, dataTables, foreignKeys } from './introspect.js';
import { orderRows, orderTables } from './order.js';

/**
 * What makes the server the same server to its agents, relative to the data dir: the CA (key
 * and certificate), the certificates of the server and its built-in components, the admin
 * token and the registration passphrase (DATA/passphrase, when there is one: its verifier is in
 * the database, the operator reads it from the file). The database holds the rest (admin token
 * hashes, every record). The
 * built-in process server's cache and master target's replicas are data-plane state, not here.
 */
export const IDENTITY_ENTRIES = ['ca', 'tls', 'admin.token', 'passphrase'] as const;

export interface BackupSource {
  db: AnyDb;
  kind: DbKind;
  dataDir: string;
}

export interface BackupResult {
  path: string;
  bytes: number;
  sha256: string;
  files: number;
  tables: { name: string; rows: number }[];
}

async function identityFiles(dataDir: string): Promise<BackupFile[]> {
  for (const needed of ['ca/ca.key', 'ca/ca.crt', 'admin.token']) {
    if (!existsSync(join(dataDir, needed))) {
      throw new Error(
        `${dataDir} is not a configuration server's data dir (no ${needed}); give the --data-dir the server runs with`,
      );
    }
  }
  const out: BackupFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    const abs = join(dataDir, rel);
    const st = await stat(abs).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      for (const e of (await readdir(abs)).sort()) {
        // Temporary files of an atomic write in progress are not part of the identity.
        if (!e.endsWith('.tmp')) await walk(`${rel}/${e}`);
      }
    } else if (st.isFile()) {
      out.push({
        type: 'file',
        path: rel,
        mode: st.mode & 0o777,
        data: (await readFile(abs)).toString('base64'),
      });
    }
  };
  for (const e of IDENTITY_ENTRIES) await walk(e);
  return out;
}

/** Buffered appends to the temporary file. */
class Sink {
  private chunks: string[] = [];
  private size = 0;
  bytes = 0;
  constructor(private readonly fh: FileHandle) {}
  async write(line: string): Promise<void> {
    this.chunks.push(line);
    this.size += line.length;
    if (this.size >= 1 << 20) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.chunks.length === 0) return;
    const buf = Buffer.from(this.chunks.join(''), 'utf8');
    this.chunks = [];
    this.size = 0;
    await this.fh.write(buf);
    this.bytes += buf.length;
  }
}

/**
 * Writes a backup of the server whose data dir and database are given to `out`, replacing it
 * atomically (temporary file, fsync, rename, fsync of the directory). The database is read in
 * one read-only snapshot transaction: the server may keep running and writing.
 */
export async function writeBackup(src: BackupSource, out: string): Promise<BackupResult> {
  out = resolve(out);
  const files = await identityFiles(src.dataDir);
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  const sink = new Sink(fh);
  const enc = new BackupEncoder();
  const tables: { name: string; rows: number }[] = [];
  let sha256 = '';
  try {
    let tx = src.db.transaction();
    // PostgreSQL: one snapshot for every table; SQLite gets it from its read transaction (WAL).
    if (src.kind === 'postgres') tx = tx.setIsolationLevel('repeatable read').setAccessMode('read only');
    await tx.execute(async (trx) => {
      await sink.write(
        enc.record({
          type: 'header',
          format: BACKUP_FORMAT,
          version: BACKUP_VERSION,
          created_at: new Date().toISOString(),
          database: src.kind,
          migrations: await appliedMigrations(trx),
        }),
      );
      for (const f of files) await sink.write(enc.record(f));
      const infos = await dataTables(trx);
      const fks = await foreignKeys(trx, src.kind);
      const byName = new Map(infos.map((t) => [t.name, t]));
      for (const name of orderTables([...byName.keys()], fks)) {
        const { columns } = byName.get(name)!;
        const selfFks = fks.filter((f) => f.table === name && f.refTable === name);
        const rows = orderRows(name, await trx.selectFrom(name).selectAll().execute(), selfFks);
        await sink.write(enc.record({ type: 'table', name, columns, rows: rows.length }));
        for (const [i, row] of rows.entries()) {
          await sink.write(
            enc.record(columns.map((c) => encodeValue(row[c], `table ${name} row ${i + 1} column ${c}`))),
          );
        }
        tables.push({ name, rows: rows.length });
      }
    });
    const end = enc.end();
    sha256 = (JSON.parse(end.slice(9)) as { sha256: string }).sha256;
    await sink.write(end);
    await sink.flush();
    await fh.sync();
    await fh.close();
    await rename(tmp, out);
    await fsyncDir(dirname(out));
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  return { path: out, bytes: sink.bytes, sha256, files: files.length, tables };
}
