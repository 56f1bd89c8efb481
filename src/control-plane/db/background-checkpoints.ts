// Starts checkpoint-worker.ts for a SQLite database and takes the checkpoints away from the
// server's own connection (wal_autocheckpoint = 0).
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

export interface BackgroundCheckpoints {
  stop(): Promise<void>;
}

export function startBackgroundCheckpoints(
  sqlite: Database.Database,
  path: string,
  onError: (message: string) => void,
  intervalMs = 1000,
): BackgroundCheckpoints {
  const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
    workerData: { path, intervalMs },
  });
  let alive = true;
  worker.on('message', (m: { error?: string }) => {
    if (m.error) onError(`WAL checkpoint: ${m.error}`);
  });
  worker.on('error', (e) => onError(`WAL checkpoint thread: ${e.message}`));
  worker.on('exit', () => {
    // Without the thread the WAL would grow forever: checkpoint on the connection again.
    if (alive) sqlite.pragma('wal_autocheckpoint = 1000');
    alive = false;
  });
  sqlite.pragma('wal_autocheckpoint = 0');
  return {
    stop: async () => {
      if (!alive) return;
      alive = false;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage('stop');
      await exited;
    },
  };
}
