// Memory settings of Rebound's long-running services (`agent serve`, `process-server
// start`, `master-target start`, `server start`): each must stay within 128 MiB RSS
// under load, whatever the disk size (docs/architecture.md, "Memory").
import { trimAllocator, tuneAllocator } from '../storage/native-fileops.js';

/**
 * Node flags for a service's process. V8 grows its young generation to 2 x 16 MiB
 * under a service's allocation rate and keeps it; 2 MiB semi-spaces hold the same
 * short-lived objects (frames, records, promises) and cost a few more scavenges.
 * The binary's shebang (src/cli/main.ts) carries the same flags for `rebound ...`
 * started from a shell; spawns of `process.execPath` pass these.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/** Large buffers get their own mappings: what GC frees goes back to the kernel at once. */
const MMAP_THRESHOLD = 64 * 1024;
/**
 * How often free heap pages go back to the kernel. Buffers below the mmap threshold (TLS
 * records, 4 KiB changes and their before-images) come from malloc's heap; once GC frees
 * them, glibc keeps the pages between live chunks. A trim with nothing to give back walks
 * the heap in about a millisecond; one that releases pages costs about 7 ms per 100 MiB.
 */
const TRIM_INTERVAL_MS = 500;
/** malloc arenas at most (glibc's default is 8 per CPU; the thread pool has 16 threads). */
const ARENA_MAX = 2;

/** Called first thing by each service command, before its threads start. */
export function tuneServiceMemory(): void {
  tuneAllocator(MMAP_THRESHOLD, ARENA_MAX);
  setInterval(trimAllocator, TRIM_INTERVAL_MS).unref();
}
