// better-sqlite3 behind Kysely prepares every query anew; on a busy server preparing costs as
// much as running. Kysely's SQLite driver runs one query at a time on its one connection, so a
// prepared statement can be reused for the same SQL text. A statement still being iterated
// (Kysely's stream()) is busy: then a fresh one is prepared.
import type Database from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/** Distinct SQL texts kept; the server's queries are a few hundred shapes. */
const MAX_STATEMENTS = 1000;

export function withStatementCache(db: Database.Database, max = MAX_STATEMENTS): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => {
      cache.clear();
      db.close();
    },
    prepare(sql: string): SqliteStatement {
      const hit = cache.get(sql);
      if (hit && !hit.busy) {
        // Map order is insertion order: re-inserting keeps the most used at the end.
        cache.delete(sql);
        cache.set(sql, hit);
        return hit as unknown as SqliteStatement;
      }
      const stmt = db.prepare(sql);
      if (!hit) {
        cache.set(sql, stmt);
        if (cache.size > max) cache.delete(cache.keys().next().value as string);
      }
      return stmt as unknown as SqliteStatement;
    },
  };
}
