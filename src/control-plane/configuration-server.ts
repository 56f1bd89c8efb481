// `rebound server start`: the configuration server, and (unless turned off) a process server
// and a master target built into the same process, as the original's configuration server
// does (S4), so that one command gives a working system on one machine.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MasterTarget } from '../master-target/master-target.js';
import { ProcessServer } from '../process-server/process-server.js';
import { type Api, buildApi } from './api/app.js';
import { sha256Hex } from './api/principal.js';
import { BACKGROUND_SERVICES, type BackgroundService } from './background.js';
import { isoNow, type ServerContext } from './context.js';
import { type OpenDatabase, openDatabase } from './db/database.js';
import { ensurePassphrase } from './registration/passphrase.js';
import {
  ensureAdminToken,
  ensureCa,
  ownCertificate,
  SERVER_CERT_NAME,
  serverPaths,
  writeClientConfig,
} from './server-identity.js';
import { recordBuiltinStorage } from './storage/storage-store.js';

export const BUILTIN_PS_NAME = 'builtin-ps';
export const BUILTIN_MT_NAME = 'builtin-mt';

export interface HostPort {
  host: string;
  port: number;
}

export interface ConfigurationServerOptions {
  dataDir: string;
  listen: HostPort;
  /** sqlite:PATH or postgres://...; default sqlite:DATA/rebound.db. */
  dbUrl?: string;
  logger: Logger;
  /** The built-in process server's listener; undefined = no built-in process server. */
  processServer?: HostPort;
  /** The built-in master target's listener and volumes; undefined = none. */
  masterTarget?: HostPort & { retentionDir?: string };
  /** Minutes of silence before a component's heartbeat-missing alert (default 15). */
  heartbeatAlertMinutes?: number;
}

/** A host a client on this machine can reach a listener on. */
function localHost(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
}

export class ConfigurationServer {
  private constructor(
    readonly ctx: ServerContext,
    private readonly database: OpenDatabase,
    readonly api: Api,
    readonly url: string,
    readonly processServer: ProcessServer | undefined,
    readonly masterTarget: MasterTarget | undefined,
    private readonly services: BackgroundService[],
  ) {}

  static async start(opts: ConfigurationServerOptions): Promise<ConfigurationServer> {
    const paths = serverPaths(opts.dataDir);
    await ensureCa(paths);
    const token = await ensureAdminToken(paths);
    const database = await openDatabase(opts.dbUrl ?? paths.defaultDbUrl, {
      backgroundCheckpoints: (problem) => opts.logger.error(problem),
    });
    const ctx: ServerContext = {
      db: database.db,
      dbKind: database.kind,
      logger: opts.logger,
      dataDir: paths.dataDir,
      caDir: paths.caDir,
      now: isoNow,
      adminTokenHashes: [],
      builtin: {},
      heartbeatAlertMinutes: opts.heartbeatAlertMinutes,
    };
    let ps: ProcessServer | undefined;
    let mt: MasterTarget | undefined;
    try {
      ctx.adminTokenHashes = await adminTokenHashes(ctx, token);
      await ensurePassphrase(ctx);
      if (opts.masterTarget) {
        const mtDir = join(paths.dataDir, 'master-target');
        const mtDirs = {
          replicas: join(mtDir, 'replicas'),
          retention: opts.masterTarget.retentionDir ?? join(mtDir, 'retention'),
        };
        mt = await MasterTarget.start({
          dataDir: mtDirs.replicas,
          retentionDir: mtDirs.retention,
          host: opts.masterTarget.host,
          port: opts.masterTarget.port,
          material: await ownCertificate(paths, 'master-target', BUILTIN_MT_NAME),
          name: BUILTIN_MT_NAME,
          logger: opts.logger.child({ component: 'master-target' }),
        });
        ctx.builtin.masterTarget = mt;
        await recordBuiltin(
          ctx,
          'master_targets',
          BUILTIN_MT_NAME,
          `${localHost(opts.masterTarget.host)}:${mt.port}`,
        );
        await recordBuiltinStorage(ctx, BUILTIN_MT_NAME, mtDirs);
      }
      if (opts.processServer) {
        ps = await ProcessServer.start({
          dataDir: join(paths.dataDir, 'process-server'),
          host: opts.processServer.host,
          port: opts.processServer.port,
          material: await ownCertificate(paths, 'process-server', BUILTIN_PS_NAME),
          name: BUILTIN_PS_NAME,
          logger: opts.logger.child({ component: 'process-server' }),
          masterTarget: mt ? { host: '127.0.0.1', port: mt.port } : undefined,
        });
        ctx.builtin.processServer = ps;
        await recordBuiltin(
          ctx,
          'process_servers',
          BUILTIN_PS_NAME,
          `${localHost(opts.processServer.host)}:${ps.port}`,
        );
      }
      const api = await buildApi(ctx, await ownCertificate(paths, 'configuration-server', SERVER_CERT_NAME));
      await api.listen({ host: opts.listen.host, port: opts.listen.port });
      const address = api.server.address();
      const port = typeof address === 'object' && address ? address.port : opts.listen.port;
      const url = `https://${localHost(opts.listen.host)}:${port}`;
      ctx.apiAddress = `${localHost(opts.listen.host)}:${port}`;
      await writeClientConfig(paths, url);
      const services: BackgroundService[] = [];
      for (const start of BACKGROUND_SERVICES) services.push(await start(ctx));
      return new ConfigurationServer(ctx, database, api, url, ps, mt, services);
    } catch (e) {
      await ps?.close();
      await mt?.close();
      await database.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    for (const s of [...this.services].reverse()) await s.stop();
    await this.api.close();
    await this.processServer?.close();
    await this.masterTarget?.close();
    await this.database.close();
  }
}

/** The admin token's hash is recorded on first start; a restored database keeps its own. */
async function adminTokenHashes(ctx: ServerContext, token: string): Promise<string[]> {
  const row = await ctx.db
    .selectFrom('meta')
    .select('value')
    .where('key', '=', 'admin-token-hashes')
    .executeTakeFirst();
  if (row) return JSON.parse(row.value) as string[];
  const hashes = [sha256Hex(token)];
  await ctx.db
    .insertInto('meta')
    .values({ key: 'admin-token-hashes', value: JSON.stringify(hashes) })
    .execute();
  return hashes;
}

async function recordBuiltin(
  ctx: ServerContext,
  table: 'process_servers' | 'master_targets',
  name: string,
  address: string,
): Promise<void> {
  const now = ctx.now();
  const existing = await ctx.db.selectFrom(table).select('id').where('name', '=', name).executeTakeFirst();
  if (existing) {
    await ctx.db
      .updateTable(table)
      .set({ address, last_heartbeat_at: now, builtin: 1 })
      .where('id', '=', existing.id)
      .execute();
  } else {
    await ctx.db
      .insertInto(table)
      .values({
        id: randomUUID(),
        name,
        address,
        builtin: 1,
        registered_at: now,
        last_heartbeat_at: now,
        status_json: null,
      })
      .execute();
  }
}
