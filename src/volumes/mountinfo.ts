// /proc/self/mountinfo: which mount holds a path, its file-system type, source and options.
// Pure: the text is read by the caller (see proc(5) for the format).

export interface MountEntry {
  /** major:minor of the file system (what stat's dev decodes to). */
  dev: string;
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount options and the super block's, together. */
  options: string[];
}

/** Mount points escape space, tab, newline and backslash as octal (\040). */
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({
      dev: fields[2],
      mountPoint: unescapeOctal(fields[4]),
      fsType: fields[sep + 1],
      source: unescapeOctal(fields[sep + 2]),
      options: [...fields[5].split(','), ...(fields[sep + 3] ?? '').split(',')].filter(Boolean),
    });
  }
  return out;
}

function under(path: string, mountPoint: string): boolean {
  return mountPoint === '/' || path === mountPoint || path.startsWith(`${mountPoint}/`);
}

/**
 * The mount that holds `realPath` (already resolved): the deepest mount point above it, the
 * last one mounted there when several are stacked. With `dev` given, only mounts of that file
 * system count (a path under a bind mount still finds its own file system).
 */
export function mountOf(
  entries: readonly MountEntry[],
  realPath: string,
  dev?: string,
): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const e of entries) {
    if (dev !== undefined && e.dev !== dev) continue;
    if (!under(realPath, e.mountPoint)) continue;
    if (!best || e.mountPoint.length >= best.mountPoint.length) best = e;
  }
  if (!best && dev !== undefined) return mountOf(entries, realPath);
  return best;
}

/** stat's st_dev as mountinfo's major:minor (glibc's encoding). */
export function devString(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

export function isReadOnly(e: MountEntry): boolean {
  return e.options.includes('ro');
}

/** FUSE drivers of FAT-family file systems, by the subtype they mount as (fuse.SUBTYPE). */
const FUSE_SUBTYPES: Record<string, string> = { fusefat: 'vfat', exfat: 'exfat', 'exfat-fuse': 'exfat' };

/**
 * The file system on the volume, as S24 judges it: the kernel's type, except under FUSE, where
 * the kernel only says `fuse.DRIVER` or `fuseblk` (then the driver, or blkid's answer, tells).
 */
export function onDiskFsType(kernelType: string, blkidType?: string): string {
  if (kernelType.startsWith('fuse.')) {
    const driver = kernelType.slice('fuse.'.length);
    return FUSE_SUBTYPES[driver] ?? kernelType;
  }
  if (kernelType === 'fuseblk' && blkidType) return blkidType;
  return kernelType;
}
