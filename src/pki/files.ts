// Writing a set of files so that each appears whole or not at all: every file is written to a
// temporary name and fsynced first; only then are they moved into place and the directory fsynced.
import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsyncDir } from '../util/fsync-dir.js';

export interface OutputFile {
  path: string;
  data: string | Buffer;
  mode: number;
}

export class FileExistsError extends Error {}

/**
 * Writes all files, or none if writing any of them fails. Without `overwrite`, a file that
 * already exists is never replaced (checked atomically with link(2)): FileExistsError names it.
 * Files are placed in the order given; a crash between two placements can leave the earlier
 * ones, each complete.
 */
export async function writeFilesAtomically(files: OutputFile[], overwrite = false): Promise<void> {
  const tag = randomBytes(6).toString('hex');
  const temps: string[] = [];
  const placed: string[] = [];
  try {
    for (const f of files) {
      const tmp = join(dirname(f.path), `.${basename(f.path)}.${tag}.tmp`);
      const fd = await open(tmp, 'wx', f.mode);
      temps.push(tmp);
      try {
        await fd.chmod(f.mode); // the umask must not widen or narrow it
        await fd.writeFile(f.data);
        await fd.sync();
      } finally {
        await fd.close();
      }
    }
    for (const [i, f] of files.entries()) {
      if (overwrite) {
        await rename(temps[i], f.path);
      } else {
        try {
          await link(temps[i], f.path);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
            throw new FileExistsError(`${f.path} already exists`);
          }
          throw e;
        }
        await unlink(temps[i]);
      }
      placed.push(f.path);
    }
    for (const dir of new Set(files.map((f) => dirname(f.path)))) await fsyncDir(dir);
  } catch (e) {
    // Nothing half-done: remove what this call created (never a file that was there before).
    for (const t of temps) await unlink(t).catch(() => undefined);
    if (!overwrite) for (const p of placed) await unlink(p).catch(() => undefined);
    throw e;
  }
}
