// ext4 on an NBD export without the nbd kernel module: nbdfuse exposes the export
// as a file, a loop device mounts it. Everything that writes through the mount
// runs in child processes (cp, dd, sync), never in the test process itself.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, waitFor } from '../../src/util/exec.js';

export interface NbdfuseMount {
  /** The mounted file system. */
  mnt: string;
  /** The export as a file (DIR/nbd). */
  device: string;
  /** umount, then unmount nbdfuse and wait for it to exit. */
  unmount: () => Promise<void>;
}

export async function mountExt4OverNbd(
  url: string,
  workDir: string,
  opts: { mkfs: boolean },
): Promise<NbdfuseMount> {
  const fuseDir = join(workDir, 'fuse');
  const mnt = join(workDir, 'mnt');
  mkdirSync(fuseDir, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  const fuse: ChildProcess = spawn('nbdfuse', [fuseDir, url], { stdio: ['ignore', 'ignore', 'pipe'] });
  let fuseErr = '';
  fuse.stderr!.on('data', (d) => {
    fuseErr += d;
  });
  const device = join(fuseDir, 'nbd');
  let mounted = false;
  const unmount = async () => {
    if (mounted) await run('umount', [mnt]);
    mounted = false;
    if (fuse.exitCode === null && fuse.signalCode === null) {
      const exited = new Promise((r) => fuse.once('exit', r));
      await run('fusermount3', ['-u', fuseDir], [0, 1]);
      await exited;
    }
  };
  try {
    await waitFor(`nbdfuse to expose ${url} (${fuseErr})`, () => existsSync(device));
    if (opts.mkfs) await run('mkfs.ext4', ['-q', '-F', device]);
    await run('mount', ['-o', 'loop', device, mnt]);
    mounted = true;
  } catch (e) {
    await unmount().catch(() => undefined);
    fuse.kill('SIGKILL');
    throw e;
  }
  return { mnt, device, unmount };
}

/** Force-cleans a mount after a failed test (lazy umount, kill nbdfuse). */
export async function forceCleanup(workDir: string): Promise<void> {
  await run('umount', ['-l', join(workDir, 'mnt')], [0, 1, 32]).catch(() => undefined);
  await run('fusermount3', ['-u', '-z', join(workDir, 'fuse')], [0, 1]).catch(() => undefined);
}
