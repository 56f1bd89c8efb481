// The failover marker (machines/<id>/failover.json in the master target's data dir):
// written durably before a failover touches the replica, so that a crash in the middle
// is finished at the next start instead of leaving disks half rolled back. Its states:
// rolling-back (the replica files are in place, the journal after the point is intact),
// moving (rolled back and synced; files being moved to moveTo), done (the result).
// See docs/formats.md, "Failover marker".
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile, writeJsonFile } from '../util/json-file.js';

export const FAILOVER_FILE = 'failover.json';

export interface FailoverDisk {
  id: number;
  name: string;
  size: number;
  /** Where the disk image is (after the move, when one was asked for). */
  path: string;
}

export interface FailoverMarker {
  version: 1;
  machineId: string;
  state: 'rolling-back' | 'moving' | 'done';
  point: number;
  /** Source time of the point (ms since the epoch; 0 when no record of it is retained). */
  pointTime: number;
  /** Directory the disk files are renamed into, or null to leave them in place. */
  moveTo: string | null;
  requestedAt: string;
  /** The disks: their paths before the move until state is done, then their final paths. */
  disks: FailoverDisk[];
  /** Filled in once rolled back. */
  bytesWritten?: number;
  journalBytesAfter?: number;
  /** Disks copied sparsely (moveTo on another file system) instead of renamed. */
  copied?: number[];
}

export function markerPath(machineDir: string): string {
  return join(machineDir, FAILOVER_FILE);
}

export function hasMarker(machineDir: string): boolean {
  return existsSync(markerPath(machineDir));
}

export function readMarker(machineDir: string): Promise<FailoverMarker | undefined> {
  return readJsonFile<FailoverMarker>(markerPath(machineDir));
}

export function writeMarker(machineDir: string, m: FailoverMarker): Promise<void> {
  return writeJsonFile(markerPath(machineDir), m, { durable: true });
}
