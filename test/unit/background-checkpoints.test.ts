// WAL checkpoints on their own thread: the server's connection never checkpoints, yet the WAL
// is copied into the database file and stays short.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import SQLite from 'better-sqlite3';
import { startBackgroundCheckpoints } from '../../src/control-plane/db/background-checkpoints.js';

test('the checkpoint thread copies the WAL into the database file; the connection does not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rebound-ckpt-'));
  try {
    const path = join(dir, 'db.sqlite');
    const db = new SQLite(path);
    db.pragma('journal_mode = WAL');
    db.exec('create table t (k integer primary key, v blob)');
    const problems: string[] = [];
    const checkpoints = startBackgroundCheckpoints(db, path, (p) => problems.push(p), 50);
    // Stopped however the test ends: a live thread would keep this file's process up for good.
    t.after(() => checkpoints.stop());
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 0);
    const insert = db.prepare('insert into t (v) values (?)');
    // Measured before the writes: on a fast machine the thread copies most of them while
    // the loop below still runs.
    const dbSizeBefore = statSync(path).size;
    // 4000 pages of writes: past the default auto-checkpoint of 1000 pages.
    for (let i = 0; i < 4000; i++) insert.run(Buffer.alloc(4000, i));
    let copied = false;
    for (let i = 0; i < 100 && !copied; i++) {
      await sleep(50);
      copied = statSync(path).size > dbSizeBefore + 8 * 1024 * 1024;
    }
    assert.ok(copied, `database file ${statSync(path).size} bytes, was ${dbSizeBefore}`);
    // Writes after a complete checkpoint start the WAL from its beginning again.
    insert.run(Buffer.alloc(10));
    assert.equal((db.prepare('select count(*) as n from t').get() as { n: number }).n, 4001);
    await checkpoints.stop();
    db.close();
    assert.deepEqual(problems, []);
    const reopened = new SQLite(path, { readonly: true });
    assert.equal((reopened.prepare('select count(*) as n from t').get() as { n: number }).n, 4001);
    reopened.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
