// Builds (once) the tiny Linux every qemu-site test, the drill and the RTO benchmark boot:
// Debian's kernel and an initramfs of static busybox, mke2fs and the modules the workload
// needs. The result is cached in a directory; a complete build (guest.json present) is reused.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { type CpioEntry, newcArchive } from './cpio.js';
import { GUEST_MODULES, INIT_SCRIPT, POWER_BUTTON_SCRIPT } from './init-script.js';
import {
  extractVmlinux,
  fetchKernel,
  fetchPackage,
  findModules,
  kernelPackageName,
  moduleLoadOrder,
  run,
} from './kernel.js';

export const DEFAULT_GUEST_DIR = '/var/cache/rebound/guest';
export const GUEST_FILE = 'guest.json';
/** Serial console, no reboot loop after a panic (QEMU runs with -no-reboot and exits). */
export const DEFAULT_APPEND = 'console=ttyS0 panic=-1 quiet';

export interface GuestImage {
  kernel: string;
  initrd: string;
  /** The kernel command line the workload expects (add rebound.* options after it). */
  append: string;
  kernelPackage: string;
  kernelVersion: string;
  /** Whether kernel is the uncompressed vmlinux (faster under TCG) or the bzImage. */
  uncompressed: boolean;
  builtAt: string;
}

/** Where the guest is cached: REBOUND_GUEST_DIR or /var/cache/rebound/guest. */
export function guestDir(): string {
  return process.env.REBOUND_GUEST_DIR || DEFAULT_GUEST_DIR;
}

/** The guest built in dir, or undefined when it holds no complete build. */
export async function loadGuest(dir = guestDir()): Promise<GuestImage | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, GUEST_FILE), 'utf8');
  } catch {
    return undefined;
  }
  const g = JSON.parse(text) as GuestImage;
  if (!existsSync(g.kernel) || !existsSync(g.initrd)) return undefined;
  return g;
}

/** Host binaries copied in with their libraries: initramfs path -> host path. */
const BINARIES: Record<string, string> = { 'sbin/mke2fs': '/sbin/mke2fs' };

export async function buildGuest(
  opts: { out?: string; force?: boolean; logger?: Logger } = {},
): Promise<GuestImage & { built: boolean }> {
  const out = opts.out ?? guestDir();
  const log = opts.logger;
  if (!opts.force) {
    const cached = await loadGuest(out);
    if (cached) return { ...cached, built: false };
  }
  await mkdir(out, { recursive: true });
  const work = await mkdtemp(join(out, '.build-'));
  try {
    const pkg = await kernelPackageName();
    log?.info({ pkg }, 'downloading the guest kernel');
    const { root, version } = await fetchKernel(pkg, work);
    const bz = join(root, 'boot', `vmlinuz-${version}`);
    const vmlinux = join(work, 'vmlinux');
    const uncompressed = await extractVmlinux(bz, vmlinux);
    if (!uncompressed)
      log?.warn({ bz }, 'no vmlinux found inside the bzImage: booting the compressed kernel');

    const modules = await moduleLoadOrder(
      GUEST_MODULES,
      await findModules(join(root, 'lib', 'modules', version)),
    );
    // The QEMU guest agent, so that freeze/thaw are proven with a real one; its libraries come
    // from this host (qemu-system-x86 depends on the same glib).
    const qga = await fetchPackage('qemu-guest-agent', join(work, 'qga'));
    const initrd = await initramfs(modules, {
      ...BINARIES,
      'usr/sbin/qemu-ga': join(qga, 'usr', 'sbin', 'qemu-ga'),
    });
    await writeFile(join(work, 'initrd.cpio'), initrd);

    const kernel = join(out, uncompressed ? 'vmlinux' : 'vmlinuz');
    await rm(join(out, 'vmlinux'), { force: true });
    await rm(join(out, 'vmlinuz'), { force: true });
    await rename(uncompressed ? vmlinux : bz, kernel);
    await rename(join(work, 'initrd.cpio'), join(out, 'initrd.cpio'));
    const image: GuestImage = {
      kernel,
      initrd: join(out, 'initrd.cpio'),
      append: DEFAULT_APPEND,
      kernelPackage: pkg,
      kernelVersion: version,
      uncompressed,
      builtAt: new Date().toISOString(),
    };
    // Written last: its presence means the build is complete.
    await writeFile(join(out, GUEST_FILE), `${JSON.stringify(image, null, 2)}\n`);
    log?.info({ out, initrdBytes: initrd.length }, 'guest built');
    return { ...image, built: true };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function initramfs(
  modules: { name: string; path: string }[],
  binaries: Record<string, string>,
): Promise<Buffer> {
  const dirs = new Set<string>();
  const entries: CpioEntry[] = [];
  const addDir = (d: string) => {
    if (d === '.' || d === '/' || dirs.has(d)) return;
    addDir(dirname(d));
    dirs.add(d);
    entries.push({ path: d, kind: 'dir' });
  };
  const addFile = (path: string, data: Buffer, mode = 0o644) => {
    addDir(dirname(path));
    entries.push({ path, kind: 'file', data, mode });
  };
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'mnt', 'run', 'tmp', 'etc'])
    addDir(d);
  // The kernel opens /dev/console for /init before devtmpfs is mounted.
  entries.push({ path: 'dev/console', kind: 'chardev', major: 5, minor: 1 });

  const busybox = '/bin/busybox';
  const kind = await run('file', ['-L', busybox]).catch(() => '');
  if (kind && !/statically linked/.test(kind))
    throw new Error(`${busybox} is not static: install busybox-static`);
  addFile('bin/busybox', await readFile(busybox), 0o755);

  // Real binaries (mke2fs makes ext4; busybox's makes only ext2) with their libraries.
  const provided = new Set(Object.keys(binaries));
  const libs = new Set<string>();
  for (const [at, bin] of Object.entries(binaries)) {
    addFile(at, await readFile(bin), 0o755);
    const deps = await run('ldd', [bin]);
    if (/not found/.test(deps)) throw new Error(`${bin} needs libraries this host lacks:\n${deps}`);
    for (const m of deps.matchAll(/(\/\S+\.so[.\d]*)/g)) libs.add(m[1]);
  }
  for (const lib of libs) addFile(lib.slice(1), await readFile(await realpath(lib)), 0o755);
  if (existsSync('/etc/mke2fs.conf')) addFile('etc/mke2fs.conf', await readFile('/etc/mke2fs.conf'));

  for (const applet of (await run(busybox, ['--list-full'])).split('\n').filter(Boolean)) {
    if (provided.has(applet) || applet === 'bin/busybox' || applet === 'linuxrc') continue;
    addDir(dirname(applet));
    entries.push({ path: applet, kind: 'symlink', target: '/bin/busybox' });
  }

  for (const m of modules) addFile(`lib/modules/${m.name}.ko`, await readFile(m.path));
  addFile('etc/modules', Buffer.from(`${modules.map((m) => m.name).join('\n')}\n`));
  addFile('init', Buffer.from(INIT_SCRIPT), 0o755);
  addFile('etc/acpi/PWRF/00000080', Buffer.from(POWER_BUTTON_SCRIPT), 0o755);
  return newcArchive(entries);
}
