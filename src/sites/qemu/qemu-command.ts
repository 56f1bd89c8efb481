// The files of one qemu-site machine and the QEMU command line that boots it (pure: unit-tested).
import { join } from 'node:path';
import type { DiskSource, MachineSpec } from '../site-adapter.js';

export interface MachinePaths {
  dir: string;
  /** QMP: power button, quit, status. */
  qmp: string;
  /** The QEMU guest agent's virtio-serial channel. */
  qga: string;
  /** The guest's serial console (this boot's; the previous boot's is console.prev.log). */
  console: string;
  consolePrev: string;
  qemuPid: string;
  /** QEMU's own stderr (why it failed to start). */
  qemuLog: string;
  agentDir: string;
  nbdSock: string;
  agentPid: string;
  agentLog: string;
}

export function machinePaths(dir: string): MachinePaths {
  const agentDir = join(dir, 'agent');
  return {
    dir,
    qmp: join(dir, 'qmp.sock'),
    qga: join(dir, 'qga.sock'),
    console: join(dir, 'console.log'),
    consolePrev: join(dir, 'console.prev.log'),
    qemuPid: join(dir, 'qemu.pid'),
    qemuLog: join(dir, 'qemu.log'),
    agentDir,
    nbdSock: join(agentDir, 'nbd.sock'),
    agentPid: join(dir, 'agent.pid'),
    agentLog: join(dir, 'agent.log'),
  };
}

/** What identifies this machine's QEMU in /proc/PID/cmdline. */
export const qemuMarkers = (p: MachinePaths) => [p.qmp];
/** What identifies this machine's agent. */
export const agentMarkers = (p: MachinePaths) => ['serve', `${p.agentDir}`];

/** The longest Unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH = 107;

export const DEFAULT_APPEND = 'console=ttyS0 panic=-1 quiet';

/** One NBD URL per disk: the machine's own agent's exports, or the given ones. */
export function diskUrls(spec: MachineSpec, paths: MachinePaths, from: DiskSource): string[] {
  if (from.kind === 'agent') {
    return spec.disks.map((d) => `nbd+unix:///${encodeURIComponent(d.name)}?socket=${paths.nbdSock}`);
  }
  if (from.urls.length !== spec.disks.length) {
    throw new Error(
      `machine '${spec.name}' has ${spec.disks.length} disk(s) but ${from.urls.length} NBD URL(s) were given`,
    );
  }
  for (const u of from.urls) {
    if (!/^nbd(\+unix|\+tls)?:\/\//.test(u))
      throw new Error(`'${u}' is not an NBD URL (nbd://HOST:PORT/EXPORT)`);
  }
  return from.urls;
}

/** QEMU's option syntax: a comma inside a value is written twice. */
const opt = (v: string) => v.replace(/,/g, ',,');

export function qemuArgs(
  spec: MachineSpec,
  paths: MachinePaths,
  urls: string[],
  opts: { accel?: 'tcg' | 'kvm' } = {},
): string[] {
  const args = [
    ...['-accel', opts.accel ?? 'tcg', '-m', String(spec.memoryMiB ?? 256), '-smp', '1'],
    // No default devices (VGA, floppy, CD, NIC): faster to boot, and only what is asked for.
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
    ...['-serial', `file:${paths.console}`],
    ...['-qmp', `unix:${opt(paths.qmp)},server=on,wait=off`],
    ...['-chardev', `socket,path=${opt(paths.qga)},server=on,wait=off,id=qga0`],
    ...['-device', 'virtio-serial', '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0'],
    ...[
      '-kernel',
      spec.boot.kernel,
      '-initrd',
      spec.boot.initrd,
      '-append',
      spec.boot.append ?? DEFAULT_APPEND,
    ],
  ];
  for (const url of urls) args.push('-drive', `file=${opt(url)},format=raw,if=virtio`);
  if ((spec.network ?? 'none') === 'isolated') {
    // User-mode networking with restrict=on: the guest reaches neither the host nor anything else.
    args.push('-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0');
  } else {
    args.push('-nic', 'none');
  }
  return args;
}
