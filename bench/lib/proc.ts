// Child processes for the benchmark: every workload and every server runs in its
// own process; this process only starts them, times them and cleans up.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Wall time from spawn to exit, in seconds. */
  seconds: number;
}

export interface RunOptions {
  /** Exit codes taken as success (default [0]). */
  okCodes?: number[];
  /** Kill the command (SIGKILL) after this long. */
  timeoutMs?: number;
  /** Keep at most this many bytes of stdout (default 16 MiB). */
  maxOutput?: number;
}

/** Keeps the last `max` characters of a stream. */
export class Tail {
  private text = '';
  constructor(private readonly max = 64 * 1024) {}
  push(chunk: string | Buffer): void {
    this.text += chunk.toString();
    if (this.text.length > this.max * 2) this.text = this.text.slice(-this.max);
  }
  toString(): string {
    return this.text.slice(-this.max);
  }
}

/** Commands started by run() that have not exited yet (killed first on an interrupt). */
export const running = new Set<ChildProcess>();

/** SIGKILLs every command run() started that is still running. */
export async function killRunning(): Promise<void> {
  const all = [...running];
  for (const c of all) c.kill('SIGKILL');
  await Promise.all(all.map((c) => waitExit(c)));
}

/** Runs a command to completion, timing it; rejects with its stderr on failure. */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  const okCodes = o.okCodes ?? [0];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    child.once('exit', () => running.delete(child));
    const out = new Tail(o.maxOutput ?? 16 * 1024 * 1024);
    const err = new Tail();
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    const timer = o.timeoutMs
      ? setTimeout(() => {
          err.push(`\n[bench: killed after ${o.timeoutMs} ms]`);
          child.kill('SIGKILL');
        }, o.timeoutMs)
      : undefined;
    child.once('error', (e) => {
      running.delete(child);
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const r: RunResult = { stdout: out.toString(), stderr: err.toString(), code, signal, seconds };
      if (code === null || !okCodes.includes(code)) {
        const why = code === null ? `was killed by ${signal}` : `exited with ${code}`;
        reject(new Error(`${cmd} ${args.join(' ')} ${why}: ${r.stderr.trim() || r.stdout.trim()}`));
        return;
      }
      resolve(r);
    });
  });
}

/** Runs a command and returns its trimmed stdout, or `fallback` if it cannot run. */
export async function output(cmd: string, args: string[], fallback = 'unavailable'): Promise<string> {
  try {
    const r = await run(cmd, args, { timeoutMs: 10_000, okCodes: [0, 1] });
    return (r.stdout.trim() || r.stderr.trim()).split('\n')[0] ?? fallback;
  } catch {
    return fallback;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { waitFor } from '../../src/util/exec.js';

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves when the child has exited (at once if it already has). */
export function waitExit(child: ChildProcess): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** Sends `signal`, waits up to `graceMs`, then SIGKILLs. Returns true if it stopped in time. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 60_000) {
  if (exited(child)) return true;
  child.kill(signal);
  const inTime = await Promise.race([waitExit(child).then(() => true), sleep(graceMs).then(() => false)]);
  if (!inTime) {
    child.kill('SIGKILL');
    await waitExit(child);
  }
  return inTime;
}

/** A TCP port free on 127.0.0.1 right now (for servers that cannot pick their own). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Runs a benchmark's main and exits with its code; on SIGINT/SIGTERM or an error, runs its
 * cleanup first (children killed, scratch files removed).
 */
export function runBench(
  main: () => Promise<number>,
  cleanup: () => Promise<void>,
  log: (line: string) => void,
): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  main().then(
    (code) => process.exit(code),
    async (e) => {
      log(`error: ${(e as Error).message}`);
      await cleanup();
      process.exit(2);
    },
  );
}
