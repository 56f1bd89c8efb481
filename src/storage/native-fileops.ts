// Loads the small native addon (native/fileops.c) built by `npm ci`.
import { createRequire } from 'node:module';

interface NativeFileOps {
  seek(fd: number, offset: number, whence: number): number;
  deviceSize(fd: number): number;
  space(fd: number, kind: number, offset: number, length: number): Promise<void>;
  tuneAllocator(mmapThreshold: number, arenaMax: number): boolean;
  trimAllocator(): boolean;
}

const require = createRequire(import.meta.url);
// dist/src/storage/ -> project root
const native = require('../../../build/Release/rebound_fileops.node') as NativeFileOps;

const SEEK_DATA = 3;
const SEEK_HOLE = 4;

export const SpaceOp = { PUNCH_HOLE: 1, ZERO_RANGE: 2, BLK_DISCARD: 3, BLK_ZEROOUT: 4 } as const;
/** Page-cache advice, run by space() too: start writeback; write back, wait and drop from the cache. */
export const CacheOp = { WRITEBACK: 5, DROP: 6 } as const;

/** Next offset >= `offset` that holds data, or -1 when only a hole follows. */
export function seekData(fd: number, offset: number): number {
  return native.seek(fd, offset, SEEK_DATA);
}

/** Next offset >= `offset` that starts a hole (end of file counts as one). */
export function seekHole(fd: number, offset: number): number {
  return native.seek(fd, offset, SEEK_HOLE);
}

export function blockDeviceSize(fd: number): number {
  return native.deviceSize(fd);
}

export function space(fd: number, op: number, offset: number, length: number): Promise<void> {
  return native.space(fd, op, offset, length);
}

/** glibc mallopt: a fixed mmap threshold and an arena limit (see native/fileops.c). */
export function tuneAllocator(mmapThreshold: number, arenaMax: number): boolean {
  return native.tuneAllocator(mmapThreshold, arenaMax);
}

/** glibc malloc_trim(0): free pages anywhere in the heap go back to the kernel. */
export function trimAllocator(): boolean {
  return native.trimAllocator();
}
