// A disk image that does not exist yet, made sparse at its size: a 100 GiB disk costs nothing
// until it is written. An existing file is left as it is (it may hold a disk's data).
import { existsSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/** True when it made the file. */
export async function createSparseFile(path: string, size: number): Promise<boolean> {
  if (existsSync(path)) return false;
  await mkdir(dirname(path), { recursive: true });
  const f = await open(path, 'wx');
  try {
    await f.truncate(size);
  } finally {
    await f.close();
  }
  return true;
}
