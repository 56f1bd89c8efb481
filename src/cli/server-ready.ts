// The line `rebound server start` prints once it serves, and waiting for it in a child
// process (the drill, the tests and the API benchmark start real servers this way).
import type { ChildProcess } from 'node:child_process';

export const readyLine = (url: string) => `configuration server ready: ${url}`;
const READY = /configuration server ready: (https:\/\/\S+)/;

/**
 * Resolves with the server's URL when the child prints its ready line; rejects when it exits
 * first or after timeoutMs. `stdout` collects what it printed (the built-in components' ports).
 */
export function waitForServerReady(
  /** Spawned with its stdout piped. */
  child: ChildProcess,
  timeoutMs: number,
  describeFailure: () => string = () => '',
): { url: Promise<string>; stdout: () => string } {
  let out = '';
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`configuration server not ready in ${timeoutMs / 1000} s: ${describeFailure()}`)),
      timeoutMs,
    );
    child.stdout!.on('data', (d) => {
      out += d;
      const m = READY.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`configuration server exited with ${code}: ${describeFailure()}`));
    });
  });
  return { url, stdout: () => out };
}
