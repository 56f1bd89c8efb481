// The QEMU command line a qemu-site machine boots with, and the disk URLs it attaches.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diskUrls, machinePaths, qemuArgs } from '../../src/sites/qemu/qemu-command.js';
import type { MachineSpec } from '../../src/sites/site-adapter.js';

const spec: MachineSpec = {
  name: 'vm1',
  memoryMiB: 384,
  disks: [
    { name: 'vda', path: '/d/vda.img', sizeBytes: 1 << 26 },
    { name: 'vdb', path: '/d/vdb.img', sizeBytes: 1 << 26 },
  ],
  boot: { kernel: '/g/vmlinux', initrd: '/g/initrd.cpio', append: 'console=ttyS0 quiet' },
};
const paths = machinePaths('/site/machines/vm1');

const after = (args: string[], flag: string) => args.filter((_, i) => args[i - 1] === flag);

test("disks from the machine's agent: its Unix-socket exports by disk name", () => {
  assert.deepEqual(diskUrls(spec, paths, { kind: 'agent' }), [
    'nbd+unix:///vda?socket=/site/machines/vm1/agent/nbd.sock',
    'nbd+unix:///vdb?socket=/site/machines/vm1/agent/nbd.sock',
  ]);
});

test('disks from given NBD exports: one URL per disk, each an NBD URL', () => {
  const urls = ['nbd://127.0.0.1:1/a', 'nbd://127.0.0.1:1/b'];
  assert.deepEqual(diskUrls(spec, paths, { kind: 'nbd', urls }), urls);
  assert.throws(
    () => diskUrls(spec, paths, { kind: 'nbd', urls: ['nbd://x/a'] }),
    new Error("machine 'vm1' has 2 disk(s) but 1 NBD URL(s) were given"),
  );
  assert.throws(
    () => diskUrls(spec, paths, { kind: 'nbd', urls: ['http://x/a', 'nbd://x/b'] }),
    new Error("'http://x/a' is not an NBD URL (nbd://HOST:PORT/EXPORT)"),
  );
});

test('the command line: TCG, memory, console file, QMP and guest-agent sockets, kernel, one virtio drive per disk, no NIC', () => {
  const args = qemuArgs(spec, paths, diskUrls(spec, paths, { kind: 'agent' }));
  assert.deepEqual(after(args, '-accel'), ['tcg']);
  assert.deepEqual(after(args, '-m'), ['384']);
  assert.ok(args.includes('-no-reboot'));
  assert.deepEqual(after(args, '-serial'), ['file:/site/machines/vm1/console.log']);
  assert.deepEqual(after(args, '-qmp'), ['unix:/site/machines/vm1/qmp.sock,server=on,wait=off']);
  assert.deepEqual(after(args, '-chardev'), [
    'socket,path=/site/machines/vm1/qga.sock,server=on,wait=off,id=qga0',
  ]);
  assert.ok(after(args, '-device').includes('virtserialport,chardev=qga0,name=org.qemu.guest_agent.0'));
  assert.deepEqual(after(args, '-kernel'), ['/g/vmlinux']);
  assert.deepEqual(after(args, '-initrd'), ['/g/initrd.cpio']);
  assert.deepEqual(after(args, '-append'), ['console=ttyS0 quiet']);
  assert.deepEqual(after(args, '-drive'), [
    'file=nbd+unix:///vda?socket=/site/machines/vm1/agent/nbd.sock,format=raw,if=virtio',
    'file=nbd+unix:///vdb?socket=/site/machines/vm1/agent/nbd.sock,format=raw,if=virtio',
  ]);
  assert.deepEqual(after(args, '-nic'), ['none']);
  assert.deepEqual(after(args, '-netdev'), []);
});

test('an isolated network is user-mode with restrict=on; KVM when asked; commas in paths are doubled', () => {
  const p = machinePaths('/odd,dir/vm1');
  const args = qemuArgs({ ...spec, network: 'isolated' }, p, ['nbd://127.0.0.1:5/x'], { accel: 'kvm' });
  assert.deepEqual(after(args, '-accel'), ['kvm']);
  assert.deepEqual(after(args, '-netdev'), ['user,id=n0,restrict=on']);
  assert.ok(after(args, '-device').includes('virtio-net-pci,netdev=n0'));
  assert.deepEqual(after(args, '-nic'), []);
  assert.deepEqual(after(args, '-qmp'), ['unix:/odd,,dir/vm1/qmp.sock,server=on,wait=off']);
});
