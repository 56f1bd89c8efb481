// Runs `rebound agent serve` as a real child process, as an operator would.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface RunningAgent {
  child: ChildProcess;
  port: number;
  url: string;
  /** Everything the agent wrote to stderr so far (its structured log). */
  stderr: () => string;
  /** Everything it printed on stdout so far (the ready line, the metrics address). */
  stdout: () => string;
  /** SIGTERM and wait for a clean exit. */
  stop: () => Promise<number | null>;
  /** SIGKILL and wait until the process is gone. */
  kill: () => Promise<void>;
}

export async function startAgent(args: string[], timeoutMs = 20_000): Promise<RunningAgent> {
  const child = spawn(process.execPath, [CLI, 'agent', 'serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REBOUND_LOG_LEVEL: process.env.REBOUND_LOG_LEVEL ?? 'info' },
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const ready = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`agent not ready after ${timeoutMs} ms: ${err}`)),
      timeoutMs,
    );
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /agent ready: nbd:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code} before it was ready: ${err}`));
    });
  });
  const port = await ready;
  const exited = once(child, 'exit');
  return {
    child,
    port,
    url: `nbd://127.0.0.1:${port}`,
    stderr: () => err,
    stdout: () => out,
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      await exited;
      return child.exitCode;
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs the rebound CLI to completion and returns its output. */
export async function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const [code] = await once(child, 'exit');
  return { code, stdout, stderr };
}
