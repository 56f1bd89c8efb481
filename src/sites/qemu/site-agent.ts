// A qemu-site machine's agent: a real `rebound agent serve` on this host that serves the
// machine's disk images over a Unix socket (QEMU attaches to its exports) and captures every
// write, registered with the configuration server under the machine's name.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { SERVICE_NODE_FLAGS } from '../../cli/service-memory.js';
import { loadRegistration } from '../../control-plane/registration/registration-file.js';
import { run } from '../guest/kernel.js';
import type { AgentRegistration, MachineSpec } from '../site-adapter.js';
import { processArgv, spawnDetached } from './processes.js';
import type { MachinePaths } from './qemu-command.js';

export const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

/** Registers the agent's data dir unless it is already registered with this configuration server. */
export async function ensureRegistered(
  spec: MachineSpec,
  paths: MachinePaths,
  reg: AgentRegistration,
  opts: { site?: string; logger: Logger },
): Promise<'registered' | 'already'> {
  const current = await loadRegistration(paths.agentDir).catch(() => undefined);
  if (current && current.file.server.address === reg.cs && current.file.name === spec.name) return 'already';
  await mkdir(paths.agentDir, { recursive: true });
  const args = [
    CLI,
    'agent',
    'register',
    '-i',
    reg.cs,
    '-P',
    reg.passphraseFile,
    '--data-dir',
    paths.agentDir,
  ];
  args.push('--name', spec.name, '--os-type', 'linux', ...(opts.site ? ['--site', opts.site] : []));
  try {
    await run(process.execPath, args);
  } catch (e) {
    throw new Error(
      `the agent of machine '${spec.name}' could not register with ${reg.cs}: ${(e as Error).message}`,
    );
  }
  opts.logger.info({ machine: spec.name, cs: reg.cs }, 'agent registered');
  return 'registered';
}

export function agentServeArgs(
  spec: MachineSpec,
  paths: MachinePaths,
  opts: { resetLog?: boolean } = {},
): string[] {
  const args = [CLI, 'agent', 'serve', '--data-dir', paths.agentDir, '--socket', paths.nbdSock];
  for (const d of spec.disks) args.push('--disk', `${d.name}=${d.path}`);
  // RESET-LOG CALL SITE: the disks were rewritten elsewhere (failover/failback), so the agent
  // discards its change log and copies every disk by hash comparison. `agent serve --reset-log`
  // comes from the mt-failover branch (commit 54680df); before it is merged the agent refuses
  // the unknown option and startAgent fails with that reason.
  if (opts.resetLog) args.push('--reset-log');
  return args;
}

/** Starts the agent detached and waits for its ready line (or its exit, with the reason). */
export async function spawnAgent(
  spec: MachineSpec,
  paths: MachinePaths,
  opts: { resetLog?: boolean; timeoutMs?: number; logger: Logger },
): Promise<number> {
  const from = await stat(paths.agentLog).then(
    (s) => s.size,
    () => 0,
  );
  const pid = await spawnDetached(
    process.execPath,
    [...SERVICE_NODE_FLAGS, ...agentServeArgs(spec, paths, opts)],
    {
      logFile: paths.agentLog,
      pidFile: paths.agentPid,
    },
  );
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const log = (await readFile(paths.agentLog, 'utf8')).slice(from);
    if (/agent ready: /.test(log)) {
      opts.logger.info({ machine: spec.name, pid }, 'agent started');
      return pid;
    }
    if (!processArgv(pid)) {
      const why = lastError(log);
      throw new Error(`the agent of machine '${spec.name}' exited before it was ready: ${why}`);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `the agent of machine '${spec.name}' was not ready after ${opts.timeoutMs ?? 30_000} ms`,
      );
    }
    await sleep(100);
  }
}

/** The CLI's error line, or the last log line. */
function lastError(log: string): string {
  const lines = log.trim().split('\n');
  return (
    lines.find((l) => l.startsWith('rebound: error:'))?.slice('rebound: error: '.length) ?? lines.at(-1) ?? ''
  );
}
