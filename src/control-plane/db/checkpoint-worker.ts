// Runs SQLite's WAL checkpoints on a thread of their own. A checkpoint copies the WAL into the
// database file and fsyncs it; done automatically it runs inside whichever commit crosses the
// threshold, on the server's event loop, and every request waits (100 ms on a busy server).
// PASSIVE never blocks the server's connection: it copies what no reader still needs.
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';

const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const db = new SQLite(path);
db.pragma('busy_timeout = 5000');

const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (e) {
    parentPort?.postMessage({ error: (e as Error).message });
  }
}, intervalMs);

parentPort?.on('message', (m) => {
  if (m === 'stop') {
    clearInterval(timer);
    // The last checkpoint, so a clean stop leaves a short WAL.
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } finally {
      db.close();
      parentPort?.close();
    }
  }
});
