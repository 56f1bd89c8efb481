// Runs `rebound process-server start` as a real child process.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { CLI } from './agent-process.js';

export interface RunningProcessServer {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

/** Starts it on 127.0.0.1:port (0 = any) and waits for its ready line. */
export async function startProcessServer(args: string[], port = 0): Promise<RunningProcessServer> {
  const child = spawn(
    process.execPath,
    [CLI, 'process-server', 'start', '--listen', `127.0.0.1:${port}`, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const ready = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process server not ready: ${err}`)), 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /process server ready: 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process server exited with ${code}: ${err}`));
    });
  });
  return { child, port: ready, stderr: () => err };
}

/** SIGKILL, and wait until it is gone. */
export async function killChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}
