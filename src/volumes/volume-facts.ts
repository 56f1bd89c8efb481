// What a probe finds out about a path on a master target's host: the facts the configuration
// server validates retention volumes (S24) and datastores with. The master target's host
// probes its own paths (probe.ts) and reports these; the server never guesses them. Pure.
import { type Static, Type } from '@sinclair/typebox';

/**
 * A string or null, as OpenAPI 3.0 says it. Not a union: Fastify's validator coerces types and
 * would take a null for the union's string branch and turn it into ''.
 */
const NullableString = (description?: string) =>
  Type.Unsafe<string | null>({ type: 'string', nullable: true, ...(description ? { description } : {}) });

export const VolumeFactsSchema = Type.Object({
  /** The path as configured (a directory on the volume). */
  path: Type.String(),
  /** Why it could not be probed (missing, not a directory, permission...); null when probed. */
  error: NullableString(),
  /** The mount point of the file system holding the path. */
  mount_point: NullableString(),
  /** The mount's source (e.g. /dev/loop3). */
  device: NullableString(),
  /** The file system on the volume (ext4, xfs, vfat...), also under FUSE (see mount_type). */
  fs_type: NullableString(),
  /** The kernel's mount type (differs from fs_type under FUSE: fuse.fusefat, fuseblk). */
  mount_type: NullableString(),
  capacity_bytes: Type.Number({ minimum: 0 }),
  /** Bytes available to the master target (not root's reserve). */
  free_bytes: Type.Number({ minimum: 0 }),
  /** Mounted read-only. */
  read_only: Type.Boolean(),
  /** PATH/.rebound-lock is held (flock) by some process: see docs/control-plane.md. */
  lock_held: Type.Boolean(),
  /** Same file system as a process server's cache on that host. */
  cache_volume: Type.Boolean(),
  /** Same file system as the Rebound installation or a server/master-target data dir. */
  install_volume: Type.Boolean(),
  /** Same file system as a datastore or replica directory (it holds replica disks). */
  replication_target: Type.Boolean(),
  probed_at: Type.String(),
});

export type VolumeFacts = Static<typeof VolumeFactsSchema>;

/** The facts of a path nobody has probed yet (a remote master target's, before its report). */
export function unprobedFacts(path: string, error: string, now: string): VolumeFacts {
  return {
    path,
    error,
    mount_point: null,
    device: null,
    fs_type: null,
    mount_type: null,
    capacity_bytes: 0,
    free_bytes: 0,
    read_only: false,
    lock_held: false,
    cache_volume: false,
    install_volume: false,
    replication_target: false,
    probed_at: now,
  };
}
