// Copies an image file keeping holes as holes (only data extents are written).
import { open } from 'node:fs/promises';
import { BlockStore } from './block-store.js';

const CHUNK = 4 * 1024 * 1024;

export async function sparseCopy(src: string, dst: string): Promise<void> {
  const from = await BlockStore.open(src, { readOnly: true });
  const out = await open(dst, 'w');
  try {
    await out.truncate(from.size);
    const buf = Buffer.allocUnsafe(CHUNK);
    let pos = 0;
    while (pos < from.size) {
      const extents = from.extents(pos, from.size - pos);
      for (const e of extents) {
        if (!e.hole) {
          for (let o = e.offset; o < e.offset + e.length; o += CHUNK) {
            const n = Math.min(CHUNK, e.offset + e.length - o);
            await from.readInto(buf.subarray(0, n), o);
            await out.write(buf, 0, n, o);
          }
        }
        pos = e.offset + e.length;
      }
    }
    await out.sync();
  } finally {
    await out.close();
    await from.close();
  }
}
