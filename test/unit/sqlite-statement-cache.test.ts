// The statement cache in front of better-sqlite3: the same SQL reuses one prepared statement,
// a statement still being iterated is not handed out twice, and the cache stays bounded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import SQLite from 'better-sqlite3';
import { withStatementCache } from '../../src/control-plane/db/statement-cache.js';

function fresh(max?: number) {
  const raw = new SQLite(':memory:');
  raw.exec('create table t (n integer); insert into t values (1), (2), (3);');
  return { raw, db: withStatementCache(raw, max) };
}

test('the same SQL text gets the same prepared statement', () => {
  const { db } = fresh();
  const a = db.prepare('select n from t order by n');
  const b = db.prepare('select n from t order by n');
  assert.equal(a, b);
  assert.deepEqual(b.all([]), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  assert.notEqual(db.prepare('select n from t where n > ?'), a);
  db.close();
});

test('a statement being iterated is busy: the same SQL then gets a fresh statement', () => {
  const { db } = fresh();
  const sql = 'select n from t order by n';
  const outer = db.prepare(sql);
  const seen: number[] = [];
  for (const row of outer.iterate([]) as Iterable<{ n: number }>) {
    // A second query with the same text while the first still steps through its rows.
    const inner = db.prepare(sql);
    assert.notEqual(inner, outer);
    assert.equal((inner.all([]) as unknown[]).length, 3);
    seen.push(row.n);
  }
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(db.prepare(sql), outer, 'the cached one again once it is done');
  db.close();
});

test('bounded: the least recently used statement is dropped first', () => {
  const { db } = fresh(2);
  const one = db.prepare('select 1');
  const two = db.prepare('select 2');
  assert.equal(db.prepare('select 1'), one); // 'select 1' is now the most recent
  db.prepare('select 3'); // evicts 'select 2'
  assert.equal(db.prepare('select 1'), one);
  assert.notEqual(db.prepare('select 2'), two);
  db.close();
});

test('schema changes after preparing: the cached statement still answers', () => {
  const { raw, db } = fresh();
  assert.deepEqual(db.prepare('select * from t where n = 1').all([]), [{ n: 1 }]);
  raw.exec('alter table t add column m integer default 7');
  assert.deepEqual(db.prepare('select * from t where n = 1').all([]), [{ n: 1, m: 7 }]);
  db.close();
});
