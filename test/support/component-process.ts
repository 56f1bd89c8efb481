// Runs `rebound process-server start` or `rebound master-target start` as a real child process.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { CLI } from './agent-process.js';

export type ComponentKind = 'process-server' | 'master-target';

export interface RunningComponent {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  /** Everything it printed on stdout so far (the ready line, the metrics address). */
  stdout: () => string;
  /** SIGTERM and wait for the exit code. */
  stop: () => Promise<number | null>;
}

/** Starts it on 127.0.0.1:port (0 = any) and waits for its ready line. */
export async function startComponent(
  kind: ComponentKind,
  args: string[],
  port = 0,
): Promise<RunningComponent> {
  const child = spawn(process.execPath, [CLI, kind, 'start', '--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const label = kind.replace('-', ' ');
  const ready = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} not ready: ${err}`)), 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = new RegExp(`${label} ready: 127\\.0\\.0\\.1:(\\d+)`).exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited with ${code}: ${err}`));
    });
  });
  const exited = once(child, 'exit');
  return {
    child,
    port: ready,
    stderr: () => err,
    stdout: () => out,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      return child.exitCode;
    },
  };
}

export function startProcessServer(args: string[], port = 0): Promise<RunningComponent> {
  return startComponent('process-server', args, port);
}

/** SIGKILL, and wait until it is gone. */
export async function killChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}
