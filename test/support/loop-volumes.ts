// Small real file systems for tests: an image file, mkfs (ext4 or vfat), `mount -o loop`
// (read-only if asked) under a scratch dir. A kernel without vfat (no modules, as on these
// machines) gets the FAT image through fusefat instead: still a real FAT file system. Everything is unmounted and removed by cleanup(),
// which also runs at process exit if a test forgot it (needs root, like the rest of the suite).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/util/exec.js';
import { sparseImage } from './tmp.js';

async function kernelHas(fs: string): Promise<boolean> {
  const text = await readFile('/proc/filesystems', 'utf8');
  return text.split('\n').some((l) => l.trim().split(/\s+/).pop() === fs);
}

export class LoopVolumes {
  readonly dir = mkdtempSync(join(tmpdir(), 'rebound-loopvol-'));
  private readonly mounts: string[] = [];
  private readonly onExit = () => this.cleanupSync();

  constructor() {
    process.once('exit', this.onExit);
  }

  /** A mounted file system of `sizeMiB`; returns its mount point. */
  async make(
    name: string,
    fs: 'ext4' | 'vfat',
    opts: { sizeMiB?: number; readOnly?: boolean } = {},
  ): Promise<string> {
    const image = sparseImage(join(this.dir, `${name}.img`), (opts.sizeMiB ?? 16) * 2 ** 20);
    if (fs === 'ext4') await run('mkfs.ext4', ['-q', '-F', image]);
    else await run('mkfs.vfat', [image]);
    const mnt = join(this.dir, name);
    mkdirSync(mnt);
    if (fs === 'vfat' && !(await kernelHas('vfat'))) {
      await run('fusefat', ['-o', opts.readOnly ? 'ro' : 'rw+', image, mnt]);
    } else {
      await run('mount', ['-o', opts.readOnly ? 'loop,ro' : 'loop', image, mnt]);
    }
    this.mounts.push(mnt);
    return mnt;
  }

  /** Unmounts every volume (the loop devices go with them) and removes the scratch dir. */
  async cleanup(): Promise<void> {
    for (const mnt of this.mounts.splice(0).reverse()) {
      const r = await run('umount', [mnt], [0, 1, 32]);
      if (r.code !== 0) await run('umount', ['-l', mnt], [0, 1, 32]);
    }
    rmSync(this.dir, { recursive: true, force: true });
    process.removeListener('exit', this.onExit);
  }

  private cleanupSync(): void {
    for (const mnt of this.mounts.splice(0).reverse()) {
      try {
        execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
