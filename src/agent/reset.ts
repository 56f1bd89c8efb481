// `rebound agent reset`: after a failback the original machine's disks were rewritten by
// the master target behind this agent's back (they were the recovered machine's replica),
// so its change log and dirty bitmaps describe a past that no longer exists. They are
// discarded and every disk is marked for a full initial copy, which compares block
// hashes with the replica, so only the blocks that differ move. Sequence numbers go on
// from where the log ended (never handed out twice). Only while the agent is stopped.
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ChangeLog } from '../changelog/change-log.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { writeJsonFile } from '../util/json-file.js';
import { loadState, saveState } from './agent-state.js';
import { lockDataDir } from './data-dir-lock.js';

export interface ResetResult {
  /** Records of the discarded log (between its trim point and its end). */
  discardedRecords: number;
  /** The log now starts after this seq. */
  trimmedThrough: number;
  /** Disks marked for a full, hash-compared initial copy. */
  disks: string[];
}

export async function resetAgentDataDir(dataDir: string, logger?: Logger): Promise<ResetResult> {
  let lock: { release: () => void };
  try {
    lock = lockDataDir(dataDir);
  } catch (e) {
    throw new Error(`cannot reset ${dataDir}: ${(e as Error).message}: stop the agent first`);
  }
  try {
    const state = await loadState(dataDir);
    if (!state) throw new Error(`cannot reset ${dataDir}: no agent state there (agent.json)`);
    const logDir = join(dataDir, 'log');
    if (!existsSync(logDir)) {
      // Never served: no log to discard; its disks get their initial copy anyway.
      for (const d of state.disks) d.needsInitialCopy = true;
      saveState(dataDir, state);
      return { discardedRecords: 0, trimmedThrough: 0, disks: state.disks.map((d) => d.name) };
    }
    const log = await ChangeLog.open(logDir, {
      maxBytes: Number.MAX_SAFE_INTEGER,
      segmentBytes: 64 << 20,
      readOnly: true,
    });
    const lastSeq = log.nextSeq - 1;
    const discardedRecords = lastSeq - log.trimmedThrough;
    await log.close();
    // Disks marked first: a crash after this alone still ends in a full compare (old
    // records shipped before it are corrected by it); the log is discarded after.
    for (const d of state.disks) d.needsInitialCopy = true;
    state.clean = true;
    state.appliedThrough = lastSeq;
    state.durableThrough = lastSeq;
    saveState(dataDir, state);
    await writeJsonFile(join(logDir, 'log-state.json'), { trimmedThrough: lastSeq }, { durable: true });
    for (const n of await readdir(logDir)) if (n.endsWith('.rcl')) await rm(join(logDir, n));
    await fsyncDir(logDir);
    const dirty = join(dataDir, 'dirty');
    if (existsSync(dirty)) {
      for (const n of await readdir(dirty)) if (n.endsWith('.bitmap')) await rm(join(dirty, n));
      await fsyncDir(dirty);
    }
    const disks = state.disks.map((d) => d.name);
    logger?.info(
      { dataDir, discardedRecords, trimmedThrough: lastSeq, disks },
      'agent reset: change log and dirty bitmaps discarded; every disk gets a full hash-compared copy',
    );
    return { discardedRecords, trimmedThrough: lastSeq, disks };
  } finally {
    lock.release();
  }
}
