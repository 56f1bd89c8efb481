// The site's long-lived children (QEMU, agents) run detached: they outlive the Node process
// that started them, and a later process finds them through pid files. A pid alone can be
// reused by an unrelated process, so "running" also requires /proc/PID/cmdline to name the
// machine's own files.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** The process's argv, or undefined when it is gone (or a zombie). */
export function processArgv(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (after the parenthesised command name) is the state; Z: exited, not yet reaped.
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (argv.at(-1) === '') argv.pop();
    return argv.length ? argv : undefined;
  } catch {
    return undefined;
  }
}

/** Whether pid is alive and its command line holds every marker. */
export function isOurs(pid: number | undefined, markers: string[]): boolean {
  if (!pid) return false;
  const argv = processArgv(pid);
  if (!argv) return false;
  return markers.every((m) => argv.some((a) => a.includes(m)));
}

export async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The live process the pid file names, if it is ours (markers); a stale file is removed. */
export async function livePid(file: string, markers: string[]): Promise<number | undefined> {
  const pid = await readPid(file);
  if (pid && isOurs(pid, markers)) return pid;
  if (pid) await rm(file, { force: true });
  return undefined;
}

/** Starts cmd detached (its own session, output appended to logFile), records its pid. */
export async function spawnDetached(
  cmd: string,
  args: string[],
  opts: { logFile: string; pidFile: string; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<number> {
  const fd = openSync(opts.logFile, 'a');
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: opts.cwd,
      env: opts.env ?? process.env,
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new Error(`cannot start ${cmd}: ${e.message}`)));
      child.once('spawn', () => resolve(child.pid!));
    });
    // Node still reaps it if it exits while we run; it keeps running when we exit.
    child.unref();
    await writeFile(opts.pidFile, `${pid}\n`);
    return pid;
  } finally {
    closeSync(fd);
  }
}

/** Waits until the process is gone; false after timeoutMs. */
export async function waitGone(pid: number, markers: string[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isOurs(pid, markers)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/** SIGTERM, then SIGKILL after timeoutMs; resolves once the process is gone. */
export async function terminate(
  pid: number,
  markers: string[],
  timeoutMs: number,
): Promise<'exited' | 'killed'> {
  if (!isOurs(pid, markers)) return 'exited';
  signal(pid, 'SIGTERM');
  if (await waitGone(pid, markers, timeoutMs)) return 'exited';
  signal(pid, 'SIGKILL');
  if (!(await waitGone(pid, markers, 10_000))) throw new Error(`process ${pid} survived SIGKILL`);
  return 'killed';
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}
