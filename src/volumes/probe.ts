// Probes a path on this host for the facts the configuration server validates with (see
// volume-facts.ts): file system and mount point from /proc/self/mountinfo, capacity and free
// space from statfs, and whether it shares its file system with a process server's cache, the
// installation or replica disks (same st_dev). Runs on the host of the master target the path
// belongs to: the configuration server for its built-in one, the master target's host otherwise.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, realpath, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  devString,
  isReadOnly,
  type MountEntry,
  mountOf,
  onDiskFsType,
  parseMountinfo,
} from './mountinfo.js';
import { unprobedFacts, type VolumeFacts } from './volume-facts.js';

/** The file whose flock marks a volume as locked (S24). */
export const LOCK_FILE = '.rebound-lock';

/** Paths on this host whose file systems a retention volume must not share (S24). */
export interface ReservedPaths {
  /** Process-server caches. */
  cache: string[];
  /** The Rebound installation, the server's and master target's data dirs. */
  install: string[];
  /** Datastores and replica directories. */
  replicas: string[];
}

/** The directory Rebound runs from (holds package.json): part of the install volume. */
export function installDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (dir !== dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return dirname(fileURLToPath(import.meta.url));
}

async function devOf(path: string): Promise<bigint | undefined> {
  try {
    return (await stat(path, { bigint: true })).dev;
  } catch {
    return undefined; // a reserved path that does not exist shares nothing
  }
}

async function sharesDevice(dev: bigint, paths: readonly string[]): Promise<boolean> {
  for (const p of paths) if ((await devOf(p)) === dev) return true;
  return false;
}

/** Whether PATH/.rebound-lock is held: `flock -n` fails with our code when someone holds it. */
function lockHeld(dir: string): Promise<boolean> {
  const file = join(dir, LOCK_FILE);
  if (!existsSync(file)) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    execFile(
      'flock',
      ['--nonblock', '--exclusive', '--conflict-exit-code', '75', file, 'true'],
      { timeout: 10_000 },
      (err, _out, stderr) => {
        if (!err) resolve(false);
        else if (err.code === 75) resolve(true);
        else reject(new Error(`cannot test the lock ${file}: ${stderr.trim() || err.message}`));
      },
    );
  });
}

/** For a fuseblk mount: what blkid finds on its device (undefined when it cannot tell). */
function blkidType(mount: MountEntry): Promise<string | undefined> {
  if (mount.fsType !== 'fuseblk' || !mount.source.startsWith('/')) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile('blkid', ['-p', '-o', 'value', '-s', 'TYPE', mount.source], { timeout: 10_000 }, (err, out) =>
      resolve(err ? undefined : out.trim() || undefined),
    );
  });
}

export async function probeVolume(path: string, reserved: ReservedPaths): Promise<VolumeFacts> {
  // Everything unknown until probed; error is set below only if the probe fails.
  const facts: VolumeFacts = { ...unprobedFacts(path, '', new Date().toISOString()), error: null };
  try {
    const real = await realpath(path);
    const st = await stat(real, { bigint: true });
    if (!st.isDirectory()) return { ...facts, error: `${path} is not a directory` };
    const fs = await statfs(real);
    const mount = mountOf(
      parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')),
      real,
      devString(st.dev),
    );
    return {
      ...facts,
      mount_point: mount?.mountPoint ?? null,
      device: mount?.source ?? null,
      fs_type: mount ? onDiskFsType(mount.fsType, await blkidType(mount)) : null,
      mount_type: mount?.fsType ?? null,
      capacity_bytes: fs.blocks * fs.bsize,
      free_bytes: fs.bavail * fs.bsize,
      read_only: mount ? isReadOnly(mount) : false,
      lock_held: await lockHeld(real),
      cache_volume: await sharesDevice(st.dev, reserved.cache),
      install_volume: await sharesDevice(st.dev, reserved.install),
      replication_target: await sharesDevice(st.dev, reserved.replicas),
    };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const error = err.code === 'ENOENT' ? `${path} does not exist` : err.message;
    return { ...facts, error };
  }
}
