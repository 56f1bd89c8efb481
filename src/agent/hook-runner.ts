// Runs one freeze or thaw hook: `/bin/sh -c CMD` in its own process group, killed with
// the whole group when it outlives its timeout. Never throws: the outcome names what
// happened, so the caller can log it and always go on to the thaw.
import { spawn } from 'node:child_process';

export type HookOutcome = { ok: true; ms: number } | { ok: false; ms: number; reason: string };

/** Keep only the end of a hook's output for the reason (bounded memory). */
const OUTPUT_TAIL = 2048;
/** After SIGKILL, how long to wait for the exit before giving up on the process. */
const KILL_GRACE_MS = 5000;

export function runHook(
  what: string,
  command: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<HookOutcome> {
  const start = Date.now();
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let settled = false;
    const finish = (o: HookOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      resolve(o);
    };
    let grace: NodeJS.Timeout | undefined;
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, ...env },
    });
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-OUTPUT_TAIL);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      grace = setTimeout(
        () =>
          finish({
            ok: false,
            ms: Date.now() - start,
            reason: `${what} script timed out after ${timeoutMs / 1000} s and did not exit when killed`,
          }),
        KILL_GRACE_MS,
      );
    }, timeoutMs);
    child.once('error', (e) =>
      finish({ ok: false, ms: Date.now() - start, reason: `${what} script could not start: ${e.message}` }),
    );
    child.once('close', (code, signal) => {
      const ms = Date.now() - start;
      const said = output.trim() ? `: ${output.trim()}` : '';
      if (timedOut)
        finish({ ok: false, ms, reason: `${what} script timed out after ${timeoutMs / 1000} s (killed)` });
      else if (code === 0) finish({ ok: true, ms });
      else if (signal) finish({ ok: false, ms, reason: `${what} script was killed by ${signal}${said}` });
      else finish({ ok: false, ms, reason: `${what} script exited with code ${code}${said}` });
    });
  });
}
