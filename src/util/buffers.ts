// Small helpers over buffers: lists of them (writev after a short write), zero tests.

/** The buffers that remain after skipping the first `skip` bytes (views, no copy). */
export function skipBytes(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

const ZEROES = Buffer.alloc(64 * 1024);

/** True when every byte of buf is 0 (compared 64 KiB at a time, no allocation). */
export function isAllZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i += ZEROES.length) {
    const n = Math.min(ZEROES.length, buf.length - i);
    if (!buf.subarray(i, i + n).equals(n === ZEROES.length ? ZEROES : ZEROES.subarray(0, n))) return false;
  }
  return true;
}
