// What an item remembers of its failovers (items.failover_json, items.test_failover_json):
// the point it failed over at and how far the failover got, so every step can be re-run
// after a restart of the server and later operations (commit, reprotect) know what happened.

export interface FailoverRecord {
  /** The recovery point (sequence number) the machine was recovered at. */
  point: number;
  /** Source time of that point (ISO), when known. */
  pointTime: string | null;
  planned: boolean;
  /** A failback (the planned failover back to the original site). */
  failback: boolean;
  /** The recovered machine's name at the recovery site. */
  recoveredName: string;
  /** The replica's disks once handed over: the recovered machine's disks. */
  disks: { id: number; name: string; size: number; path: string }[] | null;
  committed: boolean;
  at: string;
}

export interface TestFailoverRecord {
  point: number;
  /** The master target's copy-on-write view the test machine boots from. */
  viewId: number | null;
  /** The test machine at the recovery site. */
  machineName: string;
  siteId: string;
  startedAt: string;
}

function parse<T>(json: string | null): T | undefined {
  if (!json) return undefined;
  try {
    return JSON.parse(json) as T;
  } catch {
    return undefined;
  }
}

export const parseFailover = (json: string | null) => parse<FailoverRecord>(json);
export const parseTestFailover = (json: string | null) => parse<TestFailoverRecord>(json);
