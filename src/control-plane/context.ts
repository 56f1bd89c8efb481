// What every part of the configuration server shares: the database, the logger, the clock, and
// where its files are. Routes and jobs get this, never globals.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { MasterTarget } from '../master-target/master-target.js';
import type { ProcessServer } from '../process-server/process-server.js';
import type { DbKind } from './db/database.js';
import type { Database } from './db/schema.js';

export interface ServerContext {
  db: Kysely<Database>;
  dbKind: DbKind;
  logger: Logger;
  /** The server's data dir: CA, certificates, admin token, SQLite file, built-in components. */
  dataDir: string;
  /** The deployment CA's directory (issues component certificates at registration). */
  caDir: string;
  /** Now, as an ISO-8601 string (tests may replace the clock). */
  now(): string;
  /** SHA-256 hex of every valid admin token. */
  adminTokenHashes: string[];
  /** The process server and master target built into this server (S4), read directly. */
  builtin: { processServer?: ProcessServer; masterTarget?: MasterTarget };
  /** Minutes of silence before a component's heartbeat-missing alert (default 15). */
  heartbeatAlertMinutes?: number;
  /** host:port agents installed by a site adapter register with (set once the API listens). */
  apiAddress?: string;
}

export const isoNow = (): string => new Date().toISOString();
