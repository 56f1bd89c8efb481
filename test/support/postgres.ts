// A private PostgreSQL server for the tests: Debian's postgresql binaries, a cluster made with
// initdb in a scratch dir, listening only on 127.0.0.1 (a free port) and a socket in that dir,
// trust authentication. One per test process, started on first use and stopped at exit;
// each caller gets a fresh database in it.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let cluster: { dir: string; port: number } | undefined;
let counter = 0;

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  throw new Error(
    'PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-deps.sh',
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function asPostgres(cmd: string, args: string[]): string {
  // PostgreSQL refuses to run as root: run its tools as the postgres user.
  const argv = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', cmd, ...args] : [cmd, ...args];
  return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function startCluster(): Promise<{ dir: string; port: number }> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'rebound-pg-'));
  if (process.getuid?.() === 0) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), 0);
  const data = join(dir, 'data');
  asPostgres(join(bin, 'initdb'), ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  asPostgres(join(bin, 'pg_ctl'), [
    '-D',
    data,
    '-l',
    join(dir, 'server.log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
    'start',
  ]);
  process.once('exit', () => {
    try {
      asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']);
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, port };
}

/** A new, empty database on the test cluster: its postgres:// URL. */
export async function freshPostgresDatabase(): Promise<string> {
  cluster ??= await startCluster();
  const name = `rebound_${process.pid}_${++counter}`;
  asPostgres(join(binDir(), 'createdb'), [
    '-h',
    '127.0.0.1',
    '-p',
    String(cluster.port),
    '-U',
    'postgres',
    name,
  ]);
  return `postgres://postgres@127.0.0.1:${cluster.port}/${name}`;
}

/** The databases every API test runs against. */
export const DATABASES = ['sqlite', 'postgres'] as const;
export type DatabaseKind = (typeof DATABASES)[number];

/** A database URL of that kind for a server whose data dir is dataDir. */
export async function databaseUrl(kind: DatabaseKind, dataDir: string): Promise<string> {
  return kind === 'sqlite' ? `sqlite:${join(dataDir, 'rebound.db')}` : freshPostgresDatabase();
}
