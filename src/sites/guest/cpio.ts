// A newc ("070701") cpio archive writer: the initramfs format the kernel unpacks. Written here
// rather than shelling out to cpio(1) because the archive needs /dev/console as a character
// device (the kernel opens it for /init's output before devtmpfs is mounted), which only root
// could create on disk.

export type CpioEntry =
  | { path: string; kind: 'dir'; mode?: number }
  | { path: string; kind: 'file'; data: Buffer; mode?: number }
  | { path: string; kind: 'symlink'; target: string }
  | { path: string; kind: 'chardev'; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function record(
  name: string,
  ino: number,
  mode: number,
  data: Buffer,
  rdev: { major: number; minor: number } = { major: 0, minor: 0 },
): Buffer[] {
  const nameBuf = Buffer.from(`${name}\0`);
  const header =
    '070701' +
    hex8(ino) +
    hex8(mode) +
    hex8(0) + // uid
    hex8(0) + // gid
    hex8(mode & S_IFDIR ? 2 : 1) + // nlink
    hex8(0) + // mtime: fixed, so the same inputs give the same archive
    hex8(data.length) +
    hex8(0) + // dev major
    hex8(0) + // dev minor
    hex8(rdev.major) +
    hex8(rdev.minor) +
    hex8(nameBuf.length) +
    hex8(0); // check
  const head = Buffer.concat([Buffer.from(header, 'ascii'), nameBuf]);
  return [head, pad4(head.length), data, pad4(data.length)];
}

/** The archive of entries, in order (parents before children), ending with the TRAILER!!! record. */
export function newcArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    if (!path) throw new Error('cpio: an entry needs a path');
    switch (e.kind) {
      case 'dir':
        parts.push(...record(path, ino++, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0)));
        break;
      case 'file':
        parts.push(...record(path, ino++, S_IFREG | (e.mode ?? 0o644), e.data));
        break;
      case 'symlink':
        parts.push(...record(path, ino++, S_IFLNK | 0o777, Buffer.from(e.target)));
        break;
      case 'chardev':
        parts.push(
          ...record(path, ino++, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), {
            major: e.major,
            minor: e.minor,
          }),
        );
        break;
    }
  }
  parts.push(...record('TRAILER!!!', 0, 0, Buffer.alloc(0)));
  return Buffer.concat(parts);
}
