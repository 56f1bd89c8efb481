// The guest's initramfs archive as the real cpio(1) reads it, and the order modules load in.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { newcArchive } from '../../src/sites/guest/cpio.js';
import { findModules, moduleDepends, moduleLoadOrder } from '../../src/sites/guest/kernel.js';
import { isOurs, processArgv } from '../../src/sites/qemu/processes.js';
import { scratchDir } from '../support/tmp.js';

const scratch = scratchDir('guest-build');
after(() => scratch.cleanup());

test('cpio(1) lists and extracts the archive: directories, files with their modes, symlinks, a device node', () => {
  const archive = newcArchive([
    { path: 'bin', kind: 'dir' },
    { path: 'bin/busybox', kind: 'file', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
    { path: 'bin/sh', kind: 'symlink', target: '/bin/busybox' },
    { path: 'dev', kind: 'dir' },
    { path: 'dev/console', kind: 'chardev', major: 5, minor: 1 },
    { path: 'odd', kind: 'file', data: Buffer.from('abc') },
  ]);
  const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: archive }).toString();
  assert.match(listing, /^-rwxr-xr-x .* 18 .* bin\/busybox$/m);
  assert.match(listing, /^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m);
  assert.match(listing, /^crw------- .* 5, +1 .* dev\/console$/m);
  assert.match(listing, /^-rw-r--r-- .* 3 .* odd$/m);
  const out = join(scratch.dir, 'x');
  mkdirSync(out);
  execFileSync('cpio', ['-id', '--quiet', '--no-absolute-filenames', '--nonmatching', 'dev/*'], {
    input: archive,
    cwd: out,
  });
  assert.equal(execFileSync('cat', [join(out, 'bin/busybox')]).toString(), '#!/bin/sh\necho hi\n');
  assert.equal(execFileSync('cat', [join(out, 'odd')]).toString(), 'abc');
});

test("modules load after what they depend on (their .modinfo 'depends=')", async () => {
  const dir = join(scratch.dir, 'modules', 'kernel', 'fs');
  mkdirSync(dir, { recursive: true });
  const ko = (deps: string) =>
    Buffer.concat([Buffer.from('\x7fELF....license=GPL\0'), Buffer.from(`depends=${deps}\0vermagic=6.1\0`)]);
  writeFileSync(join(dir, 'ext4.ko'), ko('mbcache,jbd2,crc16'));
  writeFileSync(join(dir, 'jbd2.ko'), ko(''));
  writeFileSync(join(dir, 'mbcache.ko'), ko(''));
  writeFileSync(join(dir, 'crc16.ko'), ko(''));
  writeFileSync(join(dir, 'virtio-blk.ko'), ko('virtio'));
  assert.deepEqual(moduleDepends(ko('a-b,c')), ['a_b', 'c']);
  const mods = await findModules(join(scratch.dir, 'modules'));
  assert.deepEqual(
    (await moduleLoadOrder(['ext4', 'crc16'], mods)).map((m) => m.name),
    ['mbcache', 'jbd2', 'crc16', 'ext4'],
  );
  await assert.rejects(
    moduleLoadOrder(['virtio_blk'], mods),
    new Error('kernel module virtio not found (needed by virtio_blk)'),
  );
});

test('a process is ours only while alive and its command line names our files', () => {
  const argv = processArgv(process.pid)!;
  assert.ok(isOurs(process.pid, [argv[0]!]));
  assert.ok(!isOurs(process.pid, ['/not/this/machine/qmp.sock']));
  assert.ok(!isOurs(2 ** 22 + 12345, ['x']), 'no such pid');
});
