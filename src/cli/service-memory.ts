// Memory settings of Rebound's long-running services (`agent serve`, `process-server
// start`, `master-target start`, `server start`): each must stay within 128 MiB RSS
// under load, whatever the disk size (docs/architecture.md, "Memory").
import { tuneAllocator } from '../storage/native-fileops.js';

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
/** malloc arenas at most (glibc's default is 8 per CPU; the thread pool has 16 threads). */
const ARENA_MAX = 2;

/** Called first thing by each service command, before its threads start. */
export function tuneServiceMemory(): void {
  tuneAllocator(MMAP_THRESHOLD, ARENA_MAX);
}
