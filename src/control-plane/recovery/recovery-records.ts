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

/**
 * Why the machine cannot start a test failover or a failover now: it must be protected (or in
 * one of `resumable`, a job re-run after a restart) and have no test failover running.
 */
export function notReady(
  machine: string,
  item: { state: string; test_failover_json: string | null },
  only: 'can be tested' | 'fails over',
  resumable: readonly string[] = [],
): string | undefined {
  if (item.state !== 'protected' && !resumable.includes(item.state)) {
    return `machine '${machine}' is ${item.state}: only a protected machine ${only}`;
  }
  if (parseTestFailover(item.test_failover_json)) {
    return `a test failover of '${machine}' is running: clean it up first`;
  }
  return undefined;
}
