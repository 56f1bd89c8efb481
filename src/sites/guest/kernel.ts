// The guest's kernel: Debian's own, fetched with apt-get download and unpacked with dpkg-deb
// (installing linux-image-amd64 would pull systemd and take a minute), then the uncompressed
// vmlinux taken out of the bzImage (QEMU boots it through PVH: a few seconds less of TCG time).
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

const exec = promisify(execFile);

export async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { cwd, maxBuffer: 256 << 20, encoding: 'utf8' });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: string | number };
    if (err.code === 'ENOENT')
      throw new Error(`${cmd} is not installed (scripts/install-deps.sh installs it)`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr || err.message).trim()}`);
  }
}

/** The kernel package linux-image-amd64 currently points at, e.g. linux-image-6.1.0-56-amd64. */
export async function kernelPackageName(): Promise<string> {
  const out = await run('apt-cache', ['depends', 'linux-image-amd64']);
  const m = /Depends:\s*(linux-image-\S+-amd64)/.exec(out);
  if (!m) throw new Error(`apt-cache depends linux-image-amd64 names no kernel package:\n${out}`);
  return m[1];
}

/** Downloads a Debian package into dir and unpacks it under dir/root (nothing is installed). */
export async function fetchPackage(pkg: string, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await run('apt-get', ['download', '-q', pkg], dir);
  const deb = (await readdir(dir)).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${dir}`);
  const root = join(dir, 'root');
  await run('dpkg-deb', ['-x', join(dir, deb), root]);
  return root;
}

/** Downloads the kernel package under dir/root; returns the kernel version. */
export async function fetchKernel(pkg: string, dir: string): Promise<{ root: string; version: string }> {
  const root = await fetchPackage(pkg, dir);
  const versions = await readdir(join(root, 'lib', 'modules'));
  if (versions.length !== 1) throw new Error(`${pkg} holds ${versions.length} module trees`);
  return { root, version: versions[0] };
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b, 0x08]);
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * The ELF vmlinux inside a bzImage (the method of the kernel's scripts/extract-vmlinux: try each
 * compressed-payload magic, keep the first that decompresses to an ELF file), or undefined.
 */
export async function extractVmlinux(bzImage: string, out: string): Promise<boolean> {
  const img = await readFile(bzImage);
  for (let at = img.indexOf(XZ_MAGIC); at >= 0; at = img.indexOf(XZ_MAGIC, at + 1)) {
    const elf = await xzDecompress(img.subarray(at)).catch(() => undefined);
    if (elf?.subarray(0, 4).equals(ELF_MAGIC)) {
      await writeFile(out, elf);
      return true;
    }
  }
  for (let at = img.indexOf(GZIP_MAGIC); at >= 0; at = img.indexOf(GZIP_MAGIC, at + 1)) {
    let elf: Buffer | undefined;
    try {
      elf = gunzipSync(img.subarray(at));
    } catch {
      continue;
    }
    if (elf.subarray(0, 4).equals(ELF_MAGIC)) {
      await writeFile(out, elf);
      return true;
    }
  }
  return false;
}

function xzDecompress(data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // --single-stream: the payload is followed by the rest of the bzImage.
    const child = execFile(
      'xz',
      ['-dc', '--single-stream'],
      { encoding: 'buffer', maxBuffer: 512 << 20 },
      (e, stdout) => (e ? reject(e) : resolve(stdout)),
    );
    child.stdin!.on('error', () => {});
    child.stdin!.end(data);
  });
}

/** The `depends=` field of a module's .modinfo section. */
export function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('depends=');
  if (at < 0) return [];
  const end = ko.indexOf(0, at);
  const value = ko.subarray(at + 'depends='.length, end).toString();
  return value ? value.split(',').map((s) => s.replace(/-/g, '_')) : [];
}

/** Every .ko under dir by module name (dashes as underscores, as the kernel names them). */
export async function findModules(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (e.isFile() && e.name.endsWith('.ko')) {
      found.set(
        e.name.slice(0, -3).replace(/-/g, '_'),
        join(e.parentPath ?? (e as { path: string }).path, e.name),
      );
    }
  }
  return found;
}

/** wanted plus their dependencies, each after what it depends on. */
export async function moduleLoadOrder(
  wanted: string[],
  modules: Map<string, string>,
): Promise<{ name: string; path: string }[]> {
  const order: { name: string; path: string }[] = [];
  const seen = new Set<string>();
  const visit = async (name: string, chain: string[]) => {
    if (seen.has(name)) return;
    const path = modules.get(name);
    if (!path)
      throw new Error(`kernel module ${name} not found (needed by ${chain.join(' <- ') || 'the guest'})`);
    seen.add(name);
    for (const dep of moduleDepends(await readFile(path))) await visit(dep, [name, ...chain]);
    order.push({ name, path });
  };
  for (const w of wanted) await visit(w, []);
  return order;
}
