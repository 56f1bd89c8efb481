// A small tmpfs for tests that need a volume to fill up (needs root; callers skip otherwise).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

/** Makes `dir` and mounts a tmpfs of `size` (mount's syntax, e.g. '8m') on it; false when that is not allowed here. */
export function mountTmpfs(dir: string, size: string): boolean {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Lazy unmount: works even if a failed test left files open. */
export function unmountTmpfs(dir: string): void {
  execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
}
