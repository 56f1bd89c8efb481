// A full retention volume: the undo journal cannot take the before-images of the next
// batch. Replication of the machine pauses (the batch is refused whole, nothing of it is
// applied or acknowledged; the process server keeps the backlog and retries) and the
// machine reports the named problem until an append succeeds again.
import { statfs } from 'node:fs/promises';

/** A named health problem of a machine, for the master target's status. */
export interface HealthProblem {
  code: string;
  message: string;
}

export const RETENTION_FULL = 'retention-volume-full';

/** An undo-journal append failed for lack of space (ENOSPC or EDQUOT). */
export class RetentionFullError extends Error {
  constructor(
    readonly dir: string,
    /** Bytes of the refused batch encoded when it failed: less than that cannot fit it. */
    readonly neededBytes: number,
    cause: unknown,
  ) {
    super(`retention volume full: cannot append to the undo journal in ${dir}: ${(cause as Error).message}`, {
      cause,
    });
  }
}

/** Bytes an unprivileged writer can still use on the file system holding dir. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** What a paused replica remembers of the failure. */
export interface RetentionFull {
  dir: string;
  since: number;
  freeBytes: number;
  neededBytes: number;
  cause: string;
}

export function retentionFullProblem(f: RetentionFull): HealthProblem {
  return {
    code: RETENTION_FULL,
    message:
      `retention volume full: ${f.dir} has ${f.freeBytes} bytes free and the undo journal needs ` +
      `at least ${f.neededBytes} for the next batch (${f.cause}); replication is paused since ` +
      `${new Date(f.since).toISOString()} (the process server keeps the backlog) and resumes by ` +
      'itself once space is freed',
  };
}
