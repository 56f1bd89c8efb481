// A private PostgreSQL server for the tests: Debian's postgresql binaries, a cluster made with
// initdb in a scratch dir, listening only on 127.0.0.1 (a free port) and a socket in that dir,
// trust authentication. One per test process, started on first use and stopped at exit;
// each caller gets a fresh database in it.
import { join } from 'node:path';
import { type PgCluster, startPgCluster } from '../../bench/lib/postgres.js';

let cluster: Promise<PgCluster> | undefined;
let counter = 0;

/** A new, empty database on the test cluster: its postgres:// URL. */
export async function freshPostgresDatabase(): Promise<string> {
  cluster ??= startPgCluster({ durable: false, maxConnections: 200 });
  return (await cluster).createDatabase(`rebound_${process.pid}_${++counter}`);
}

/** The databases every API test runs against. */
export const DATABASES = ['sqlite', 'postgres'] as const;
export type DatabaseKind = (typeof DATABASES)[number];

/** A database URL of that kind for a server whose data dir is dataDir. */
export async function databaseUrl(kind: DatabaseKind, dataDir: string): Promise<string> {
  return kind === 'sqlite' ? `sqlite:${join(dataDir, 'rebound.db')}` : freshPostgresDatabase();
}
