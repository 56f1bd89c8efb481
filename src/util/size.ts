// Human sizes: "512", "64K", "64M", "1G", "1.5G" (binary units).
const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a size (examples: 4096, 64M, 1G)`);
  const n = Math.floor(Number(m[1]) * UNITS[m[2].toUpperCase()]);
  if (!Number.isSafeInteger(n)) throw new Error(`size '${text}' is too large`);
  return n;
}

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}
