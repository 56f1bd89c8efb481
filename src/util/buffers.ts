// Small helpers over lists of buffers (writev after a short write).

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
