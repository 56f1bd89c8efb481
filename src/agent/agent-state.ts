// The agent's persistent identity and disk registry (agent.json in the data dir).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile, writeJsonFile, writeJsonFileSync } from '../util/json-file.js';

export interface DiskRecord {
  /** Stable small id used in change-log records. */
  id: number;
  /**
   * The disk's id across the deployment (a UUID made once), reported to the configuration
   * server, which refuses a second machine with the same one (S23). Absent in data dirs
   * written before registration existed: added at the next start.
   */
  uuid?: string;
  name: string;
  path: string;
  size: number;
  /** Registered and never replicated: the first replication copies the whole disk. */
  needsInitialCopy?: boolean;
}

export interface AgentState {
  machineId: string;
  disks: DiskRecord[];
  /** False while the agent runs; true after a clean stop. */
  clean: boolean;
  /** Kernel boot id at the last start: tells a process crash from a reboot or power loss. */
  bootId: string;
  /** Every change with seq <= this had reached the disk (at least its page cache). */
  appliedThrough: number;
  /**
   * Every change with seq <= this is durable on its disk (fsynced at a checkpoint):
   * after a power loss the log is redone from here. The log is never trimmed past it.
   * Absent in data dirs written before checkpoints existed (read as 0).
   */
  durableThrough?: number;
}

export const STATE_FILE = 'agent.json';

export function currentBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // Without a boot id a reboot cannot be told from a process crash: assume the
    // worst (a different boot), which forces a resync instead of trusting the log.
    return `unknown-${process.pid}-${Date.now()}`;
  }
}

export async function loadState(dataDir: string): Promise<AgentState | undefined> {
  return readJsonFile<AgentState>(join(dataDir, STATE_FILE));
}

export function newState(): AgentState {
  return {
    machineId: randomUUID(),
    disks: [],
    clean: true,
    bootId: currentBootId(),
    appliedThrough: 0,
    durableThrough: 0,
  };
}

export function saveState(dataDir: string, state: AgentState): void {
  writeJsonFileSync(join(dataDir, STATE_FILE), state);
}

/** Off the event loop; `durable: false` for updates whose older version is still safe to read. */
export function saveStateAsync(dataDir: string, state: AgentState, durable: boolean): Promise<void> {
  return writeJsonFile(join(dataDir, STATE_FILE), state, { durable });
}

/** Finds or adds the disk record for name; refuses a disk whose size changed under us. */
export function registerDisk(state: AgentState, name: string, path: string, size: number): DiskRecord {
  const existing = state.disks.find((d) => d.name === name);
  if (existing) {
    if (existing.size !== size) {
      throw new Error(
        `disk '${name}' was ${existing.size} bytes and is now ${size} bytes (${path}); ` +
          'a resized disk needs a new name or a fresh data dir',
      );
    }
    existing.path = path;
    existing.uuid ??= randomUUID();
    return existing;
  }
  const id = state.disks.reduce((m, d) => Math.max(m, d.id), 0) + 1;
  if (id > 0xffff) throw new Error('too many disks for one agent');
  const rec: DiskRecord = { id, uuid: randomUUID(), name, path, size, needsInitialCopy: true };
  state.disks.push(rec);
  return rec;
}
