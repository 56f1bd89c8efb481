// Small JSON state files, replaced atomically (write to a temporary file, rename).
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir, fsyncDirSync } from './fsync-dir.js';

export async function readJsonFile<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Durable replacement: file data, then the rename itself, survive a power loss. */
export function writeJsonFileSync(path: string, value: unknown): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(value, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  // The rename itself must survive a power loss, or an older state could come back.
  fsyncDirSync(dirname(path));
}

/**
 * The same off the event loop. `durable: false` skips both fsyncs: the new content
 * survives a process crash (the page cache does) but maybe not a power loss, so use
 * it only for values whose older version is still safe to read back.
 * Callers must not run two writes of one path at once (they share the temporary file).
 */
export async function writeJsonFile(path: string, value: unknown, opts: { durable: boolean }): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    if (opts.durable) await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  if (opts.durable) await fsyncDir(dirname(path));
}
