// Writes one disk of a point-in-time view to a new sparse raw image file.

import { type FileHandle, lstat, open, rename, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isAllZero } from '../util/buffers.js';
import { fsyncDir } from '../util/fsync-dir.js';
import type { PointView } from './point-view.js';

export const DEFAULT_EXPORT_CHUNK = 1024 * 1024;

export interface ExportImageOptions {
  /** Read size; also the granularity at which zeroes are left as holes. */
  chunkBytes?: number;
}

export interface ExportImageResult {
  /** The image's size. */
  bytes: number;
  /** Bytes written (chunks holding anything but zeroes); the rest are holes. */
  dataBytes: number;
}

/**
 * Writes `size` bytes of `disk` as the view shows them to outPath, which must not
 * exist. The image is built as `<outPath>.tmp`, synced, then renamed into place: a
 * failure or crash never leaves a partial image at outPath. The view stays open.
 */
export async function exportImage(
  view: PointView,
  disk: number,
  size: number,
  outPath: string,
  opts: ExportImageOptions = {},
): Promise<ExportImageResult> {
  const chunk = opts.chunkBytes ?? DEFAULT_EXPORT_CHUNK;
  if (!Number.isSafeInteger(chunk) || chunk < 1) throw new Error(`invalid chunk size ${chunk}`);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`invalid image size ${size}`);
  if (await exists(outPath)) throw new Error(`${outPath} already exists: refusing to overwrite it`);
  const tmp = `${outPath}.tmp`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new Error(`${tmp} already exists (an interrupted or concurrent export?): remove it first`);
    }
    throw e;
  }
  let dataBytes = 0;
  try {
    for (let off = 0; off < size; off += chunk) {
      const buf = await view.read(disk, off, Math.min(chunk, size - off));
      if (isAllZero(buf)) continue; // never written, so it stays a hole
      await writeAll(fh, buf, off);
      dataBytes += buf.length;
    }
    await fh.truncate(size); // also makes a zero tail a hole
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, outPath);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dirname(resolve(outPath))); // the rename itself made durable
  return { bytes: size, dataBytes };
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function writeAll(fh: FileHandle, buf: Buffer, offset: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, offset + done);
    done += bytesWritten;
  }
}
