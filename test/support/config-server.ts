// `rebound server start` as a real child process on loopback (API, built-in process server and
// master target on kernel-chosen ports), and the CLI pointed at it.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { waitForServerReady } from '../../src/cli/server-ready.js';
import type { ApiClient } from '../../src/control-plane/client/api-client.js';
import { adminClient } from '../../src/control-plane/client/connection.js';
import { CLI, runCli } from './agent-process.js';

export interface RunningConfigServer {
  child: ChildProcess;
  dataDir: string;
  url: string;
  /** The CLI connection file it wrote (REBOUND_CS_CONFIG). */
  cliConfig: string;
  /** The built-in process server's and master target's ports (undefined when turned off). */
  processServerPort?: number;
  masterTargetPort?: number;
  stdout: () => string;
  stderr: () => string;
  /** The API as admin. */
  admin: () => Promise<ApiClient>;
  /** Runs `rebound ARGS` against this server (as admin). */
  cli: (args: string[], input?: string) => Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** SIGTERM and wait. */
  stop: () => Promise<void>;
  /** SIGKILL and wait. */
  kill: () => Promise<void>;
}

export async function startConfigServer(opts: {
  dataDir: string;
  db?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Run this script instead of the CLI (it must end by running the CLI with its arguments). */
  entry?: string;
}): Promise<RunningConfigServer> {
  const args = [
    opts.entry ?? CLI,
    'server',
    'start',
    '--data-dir',
    opts.dataDir,
    '--listen',
    '127.0.0.1:0',
    '--process-server-listen',
    '127.0.0.1:0',
    '--master-target-listen',
    '127.0.0.1:0',
    ...(opts.db ? ['--db', opts.db] : []),
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const ready = waitForServerReady(child, opts.timeoutMs ?? 30_000, () => err);
  const url = await ready.url;
  const out = ready.stdout;
  const exited = once(child, 'exit');
  const cliConfig = join(opts.dataDir, 'cli.json');
  const port = (label: string) => {
    const m = new RegExp(`built-in ${label}: port (\\d+)`).exec(out());
    return m ? Number(m[1]) : undefined;
  };
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    dataDir: opts.dataDir,
    url,
    cliConfig,
    processServerPort: port('process server'),
    masterTargetPort: port('master target'),
    stdout: out,
    stderr: () => err,
    admin: () => adminClient(cliConfig),
    cli: (cliArgs, input) => runCli(cliArgs, { env: { REBOUND_CS_CONFIG: cliConfig }, input }),
    stop: async () => {
      if (alive()) {
        child.kill('SIGTERM');
        await exited;
      }
    },
    kill: async () => {
      if (alive()) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
