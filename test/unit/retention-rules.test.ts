// S24: which probed volumes may hold retention, each broken rule named.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  datastoreProblem,
  invalidReason,
  retentionVolumeProblems,
} from '../../src/volumes/retention-rules.js';
import type { VolumeFacts } from '../../src/volumes/volume-facts.js';

const GOOD: VolumeFacts = {
  path: '/mnt/retention',
  error: null,
  mount_point: '/mnt/retention',
  device: '/dev/vdb1',
  fs_type: 'ext4',
  mount_type: 'ext4',
  capacity_bytes: 10 * 2 ** 30,
  free_bytes: 9 * 2 ** 30,
  read_only: false,
  lock_held: false,
  cache_volume: false,
  install_volume: false,
  replication_target: false,
  probed_at: '2026-11-23T12:00:00.000Z',
};

const CASES: [string, Partial<VolumeFacts>, string | null][] = [
  ['ext4, its own volume', {}, null],
  ['xfs', { fs_type: 'xfs' }, null],
  ['vfat', { fs_type: 'vfat' }, 'not FAT/FAT32 (S24): the file system is vfat'],
  ['msdos (FAT16)', { fs_type: 'msdos' }, 'not FAT/FAT32 (S24): the file system is msdos'],
  ['exfat', { fs_type: 'exfat' }, 'not FAT/FAT32 (S24): the file system is exfat'],
  ['zero capacity', { capacity_bytes: 0, free_bytes: 0 }, 'capacity above 0 (S24): the capacity is 0 bytes'],
  [
    'the process-server cache volume',
    { cache_volume: true },
    "not the cache volume (S24): /mnt/retention holds a process server's cache",
  ],
  [
    'the install volume',
    { install_volume: true },
    'not the install volume (S24): /mnt/retention holds the Rebound installation or its data',
  ],
  [
    'a replication target',
    { replication_target: true },
    'not a replication target (S24): /mnt/retention holds replica disks',
  ],
  ['read-only', { read_only: true }, 'not locked (S24): /mnt/retention is mounted read-only'],
  [
    'lock held',
    { lock_held: true },
    'not locked (S24): /mnt/retention/.rebound-lock is held by another process',
  ],
  [
    'missing path: no other rule is judged on facts that were not found',
    { error: '/mnt/retention does not exist', fs_type: 'vfat', capacity_bytes: 0 },
    'probed (S24): /mnt/retention does not exist',
  ],
  [
    'several rules at once, in order',
    { fs_type: 'vfat', cache_volume: true, install_volume: true, mount_point: '/' },
    "not FAT/FAT32 (S24): the file system is vfat; not the cache volume (S24): / holds a process server's cache; " +
      'not the install volume (S24): / holds the Rebound installation or its data',
  ],
];

describe('retention volume rules (S24)', () => {
  for (const [name, change, reason] of CASES) {
    test(name, () => {
      const problems = retentionVolumeProblems({ ...GOOD, ...change });
      assert.equal(invalidReason(problems), reason);
    });
  }

  test('problems carry the rule id', () => {
    assert.deepEqual(
      retentionVolumeProblems({ ...GOOD, fs_type: 'vfat', read_only: true, lock_held: true }).map(
        (p) => p.rule,
      ),
      ['not-fat', 'not-locked', 'not-locked'],
    );
  });

  test('a datastore needs only to be probed and writable', () => {
    assert.equal(datastoreProblem({ ...GOOD, install_volume: true, fs_type: 'vfat' }), null);
    assert.equal(
      datastoreProblem({ ...GOOD, read_only: true }),
      'the file system at /mnt/retention is mounted read-only',
    );
    assert.equal(
      datastoreProblem({ ...GOOD, error: '/x does not exist' }),
      'cannot be probed: /x does not exist',
    );
  });
});
