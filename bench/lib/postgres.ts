// A private PostgreSQL cluster: Debian's binaries, initdb in its own scratch dir, 127.0.0.1 on
// a free port and a socket in that dir, trust authentication. Benchmarks keep PostgreSQL's
// default durability (fsync on: SQLite runs with synchronous=FULL, so both commit to disk);
// the tests (test/support/postgres.ts) turn it off for speed. Stopped by stop() or at exit.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './proc.js';

export interface PgCluster {
  port: number;
  createDatabase(name: string): string;
  stop(): void;
}

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  throw new Error(
    'PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-deps.sh',
  );
}

function asPostgres(cmd: string, args: string[]): string {
  // PostgreSQL refuses to run as root.
  const argv = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', cmd, ...args] : [cmd, ...args];
  return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function pgVersion(): string {
  return execFileSync(join(binDir(), 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
}

export interface PgClusterOptions {
  /** fsync on (default); off for tests, where a crash of the host loses nothing that matters. */
  durable?: boolean;
  maxConnections?: number;
}

/** In its own dir under the system temp dir (the postgres user must reach it), removed at stop. */
export async function startPgCluster(o: PgClusterOptions = {}): Promise<PgCluster> {
  const durable = o.durable ?? true;
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'rebound-pg-'));
  if (process.getuid?.() === 0) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), 0);
  const data = join(dir, 'data');
  const initdb = [
    '-D',
    data,
    '--auth=trust',
    '-U',
    'postgres',
    '-E',
    'UTF8',
    ...(durable ? [] : ['--no-sync']),
  ];
  asPostgres(join(bin, 'initdb'), initdb);
  const port = await freePort();
  asPostgres(join(bin, 'pg_ctl'), [
    '-D',
    data,
    '-l',
    join(dir, 'server.log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=${o.maxConnections ?? 100}` +
      (durable ? '' : ' -c fsync=off'),
    'start',
  ]);
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    try {
      asPostgres(join(bin, 'pg_ctl'), ['-D', data, '-m', durable ? 'fast' : 'immediate', 'stop']);
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  return {
    port,
    createDatabase(name: string): string {
      asPostgres(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', name]);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop,
  };
}
