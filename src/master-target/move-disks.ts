// Moves a failed-over replica's disk files into the directory the recovered machine
// uses: a rename on the same file system (instant, whatever the size); across file
// systems (EXDEV) a sparse copy to a temporary name, synced and renamed into place,
// then the source removed. Each step can be redone after a crash: a file whose source
// is gone and whose destination exists was moved.
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { sparseCopy } from '../storage/sparse-copy.js';
import { fsyncDir } from '../util/fsync-dir.js';

/** The destination of a disk file moved into dir. */
export function movedPath(dir: string, path: string): string {
  return join(dir, basename(path));
}

/** Moves one file; true when it had to be copied (another file system). */
export async function moveDiskFile(from: string, to: string, logger: Logger): Promise<boolean> {
  if (from === to) return false;
  if (!existsSync(from)) {
    if (existsSync(to)) return false; // moved before a crash
    throw new Error(`cannot move ${from} to ${to}: neither file exists`);
  }
  try {
    await rename(from, to);
    await fsyncDir(dirname(to));
    await fsyncDir(dirname(from));
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
  }
  const partial = `${to}.partial`;
  logger.warn(
    { from, to },
    `failover: ${dirname(to)} is on another file system than the replica: copying sparsely instead of renaming (takes time in proportion to the data)`,
  );
  await sparseCopy(from, partial);
  await rename(partial, to);
  await fsyncDir(dirname(to));
  await rm(from);
  await fsyncDir(dirname(from));
  return true;
}
