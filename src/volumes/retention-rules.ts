// S24: which volumes may hold a master target's retention (its undo journals). A volume that
// breaks a rule is kept in the inventory as invalid, with every broken rule named. Pure.
import type { VolumeFacts } from './volume-facts.js';

/** Linux's default retention volume (S24; `R:` on Windows in the original). */
export const DEFAULT_RETENTION_PATH = '/mnt/retention';

/** File systems of the FAT family (S24: "not FAT/FAT32"; exFAT has the same limits). */
export const FAT_FILE_SYSTEMS = ['vfat', 'msdos', 'fat', 'fat32', 'umsdos', 'exfat'] as const;

export type RetentionRule =
  | 'probed'
  | 'not-fat'
  | 'capacity'
  | 'not-cache-volume'
  | 'not-install-volume'
  | 'not-replication-target'
  | 'not-locked';

export interface VolumeProblem {
  rule: RetentionRule;
  message: string;
}

/** How each rule reads in a reason: "not FAT/FAT32 (S24): the file system is vfat". */
export const RULE_TEXT: Record<RetentionRule, string> = {
  probed: 'probed',
  'not-fat': 'not FAT/FAT32',
  capacity: 'capacity above 0',
  'not-cache-volume': 'not the cache volume',
  'not-install-volume': 'not the install volume',
  'not-replication-target': 'not a replication target',
  'not-locked': 'not locked',
};

function problem(rule: RetentionRule, detail: string): VolumeProblem {
  return { rule, message: `${RULE_TEXT[rule]} (S24): ${detail}` };
}

/** Every S24 rule the volume breaks, in a fixed order; empty when it may hold retention. */
export function retentionVolumeProblems(f: VolumeFacts): VolumeProblem[] {
  if (f.error !== null) return [problem('probed', f.error)];
  const out: VolumeProblem[] = [];
  const fs = (f.fs_type ?? '').toLowerCase();
  const mount = f.mount_point ?? f.path;
  if ((FAT_FILE_SYSTEMS as readonly string[]).includes(fs)) {
    out.push(problem('not-fat', `the file system is ${f.fs_type}`));
  }
  if (!(f.capacity_bytes > 0)) out.push(problem('capacity', 'the capacity is 0 bytes'));
  if (f.cache_volume) out.push(problem('not-cache-volume', `${mount} holds a process server's cache`));
  if (f.install_volume) {
    out.push(problem('not-install-volume', `${mount} holds the Rebound installation or its data`));
  }
  if (f.replication_target) out.push(problem('not-replication-target', `${mount} holds replica disks`));
  if (f.read_only) out.push(problem('not-locked', `${mount} is mounted read-only`));
  if (f.lock_held) out.push(problem('not-locked', `${f.path}/.rebound-lock is held by another process`));
  return out;
}

/** The reason stored with an invalid volume: every problem, in order. */
export function invalidReason(problems: readonly VolumeProblem[]): string | null {
  return problems.length ? problems.map((p) => p.message).join('; ') : null;
}

/** A datastore (where replica disks go) must be probed and writable. */
export function datastoreProblem(f: VolumeFacts): string | null {
  if (f.error !== null) return `cannot be probed: ${f.error}`;
  if (f.read_only) return `the file system at ${f.mount_point ?? f.path} is mounted read-only`;
  return null;
}
