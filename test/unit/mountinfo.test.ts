// /proc/self/mountinfo: the mount that holds a path, stacked and bind mounts, escapes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { devString, isReadOnly, mountOf, onDiskFsType, parseMountinfo } from '../../src/volumes/mountinfo.js';

const TEXT = [
  '22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '30 22 7:3 / /mnt/retention rw,relatime shared:9 - ext4 /dev/loop3 rw',
  '31 22 7:4 / /mnt/fat rw,relatime - vfat /dev/loop4 rw,fmask=0022',
  '32 22 7:5 / /mnt/ro ro,relatime - ext4 /dev/loop5 ro',
  '33 22 7:6 / /mnt/with\\040space rw - xfs /dev/loop6 rw',
  '34 22 7:7 / /mnt/retention rw - ext4 /dev/loop7 rw',
  '35 22 7:3 /sub /srv/bound rw - ext4 /dev/loop3 rw',
].join('\n');

describe('mountinfo', () => {
  const entries = parseMountinfo(TEXT);

  test('parses each line', () => {
    assert.equal(entries.length, 7);
    assert.deepEqual(entries[2], {
      dev: '7:4',
      mountPoint: '/mnt/fat',
      fsType: 'vfat',
      source: '/dev/loop4',
      options: ['rw', 'relatime', 'rw', 'fmask=0022'],
    });
    assert.equal(entries[4].mountPoint, '/mnt/with space');
  });

  test('the deepest mount point holds the path; the last of a stack wins', () => {
    assert.equal(mountOf(entries, '/mnt/fat/x/y')?.fsType, 'vfat');
    assert.equal(mountOf(entries, '/mnt/fatter')?.mountPoint, '/');
    assert.equal(mountOf(entries, '/mnt/retention/j')?.source, '/dev/loop7');
    assert.equal(mountOf(entries, '/')?.source, '/dev/vda');
  });

  test('with the device given, a bind mount finds its own file system', () => {
    assert.equal(mountOf(entries, '/srv/bound/a', '7:3')?.mountPoint, '/srv/bound');
    assert.equal(mountOf(entries, '/srv/other', '253:0')?.mountPoint, '/');
    // A device no entry has: fall back to the path alone.
    assert.equal(mountOf(entries, '/mnt/fat/a', '9:9')?.fsType, 'vfat');
  });

  test('read-only from the mount or the super block options', () => {
    assert.equal(isReadOnly(entries[3]), true);
    assert.equal(isReadOnly(entries[1]), false);
  });

  test('st_dev decodes to major:minor as mountinfo writes it', () => {
    assert.equal(devString(0x0703n), '7:3');
    assert.equal(devString(0xfd00n), '253:0');
    assert.equal(devString(0x10301n), '259:1'); // NVMe
    assert.equal(devString(0x100700n), '7:256'); // minor above 255
  });

  test('the file system under FUSE: the FAT drivers by subtype, fuseblk by blkid', () => {
    assert.equal(onDiskFsType('ext4'), 'ext4');
    assert.equal(onDiskFsType('fuse.fusefat'), 'vfat');
    assert.equal(onDiskFsType('fuse.exfat-fuse'), 'exfat');
    assert.equal(onDiskFsType('fuse.sshfs'), 'fuse.sshfs');
    assert.equal(onDiskFsType('fuseblk', 'exfat'), 'exfat');
    assert.equal(onDiskFsType('fuseblk'), 'fuseblk');
  });
});
