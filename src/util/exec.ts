// Running external tools (mkfs, mount, nbdfuse, e2fsck...) with clear errors.
import { type ChildProcess, execFile, spawn } from 'node:child_process';

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a command; rejects with its stderr unless the exit code is in okCodes. */
export function run(cmd: string, args: string[], okCodes: number[] = [0]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && typeof err.code !== 'number') {
        reject(new Error(`cannot run ${cmd}: ${err.message}`));
        return;
      }
      if (!okCodes.includes(code)) {
        reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.trim() || stdout.trim()}`));
        return;
      }
      resolve({ stdout, stderr, code });
    });
  });
}

/** Whether each program is on PATH; returns the missing ones. */
export async function missingTools(tools: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const t of tools) {
    const r = await run('sh', ['-c', `command -v ${t}`], [0, 1, 127]);
    if (r.code !== 0) missing.push(t);
  }
  return missing;
}

export function startBackground(cmd: string, args: string[]): ChildProcess {
  return spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
