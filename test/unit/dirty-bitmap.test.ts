import assert from 'node:assert/strict';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { DirtyBitmap, MAX_BITMAP_BYTES, regionSizeFor } from '../../src/changelog/dirty-bitmap.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const R = 64 * KiB; // region size of small disks

let dir: string;
let n = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rebound-unit-bitmap-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function freshPath(): string {
  return join(dir, `disk-${n++}.bitmap`);
}

async function withBitmap<T>(path: string, size: number, fn: (bm: DirtyBitmap) => Promise<T>): Promise<T> {
  const bm = await DirtyBitmap.open(path, size);
  try {
    return await fn(bm);
  } finally {
    await bm.close();
  }
}

describe('regionSizeFor', () => {
  it('uses 64 KiB regions up to 512 GiB, then doubles', () => {
    assert.equal(regionSizeFor(0), 64 * KiB);
    assert.equal(regionSizeFor(1), 64 * KiB);
    assert.equal(regionSizeFor(512 * GiB), 64 * KiB);
    assert.equal(regionSizeFor(512 * GiB + 1), 128 * KiB);
    assert.equal(regionSizeFor(1 * TiB), 128 * KiB);
    assert.equal(regionSizeFor(2 * TiB), 256 * KiB);
    assert.equal(regionSizeFor(2 * TiB + 1), 512 * KiB);
    assert.equal(regionSizeFor(64 * TiB), 8 * MiB);
  });

  it('always keeps the bitmap within 1 MiB with the smallest such region', () => {
    for (const size of [1, 10 * GiB + 7, 700 * GiB, 3 * TiB - 1, 100 * TiB + 12345, 2 ** 52]) {
      const region = regionSizeFor(size);
      const bytes = Math.ceil(Math.ceil(size / region) / 8);
      assert.ok(bytes <= MAX_BITMAP_BYTES, `${size}: ${bytes} bytes`);
      if (region > 64 * KiB) {
        assert.ok(
          Math.ceil(Math.ceil(size / (region / 2)) / 8) > MAX_BITMAP_BYTES,
          `${size}: region not minimal`,
        );
      }
    }
  });
});

describe('DirtyBitmap', () => {
  it('creates a clean bitmap file with a checksummed header', async () => {
    const path = freshPath();
    const size = 10 * MiB + 5; // 161 regions -> 21 bytes
    await withBitmap(path, size, async (bm) => {
      assert.equal(bm.regionSize, R);
      assert.equal(bm.diskSize, size);
      assert.deepEqual(bm.regions(), []);
      assert.equal(bm.dirtyBytes, 0);
      assert.equal(bm.isDirty(0, size), false);
    });
    const f = readFileSync(path);
    assert.equal(f.length, 32 + 21);
    assert.equal(f.subarray(0, 4).toString('latin1'), 'BRDB');
    assert.equal(f.readUInt32LE(4), R);
    assert.equal(f.readBigUInt64LE(8), BigInt(size));
    assert.equal(f.readUInt32LE(16), crc32c(f.subarray(0, 16)));
    assert.ok(f.subarray(32).every((b) => b === 0));
  });

  it('marks whole regions and reports them coalesced', async () => {
    await withBitmap(freshPath(), 100 * R, async (bm) => {
      await bm.mark(0, 1);
      assert.deepEqual(bm.regions(), [{ offset: 0, length: R }]);
      await bm.mark(R - 1, 2); // touches regions 0 and 1
      assert.deepEqual(bm.regions(), [{ offset: 0, length: 2 * R }]);
      await bm.mark(10 * R, R); // exactly region 10
      await bm.mark(12 * R + 5, 3 * R); // regions 12..15
      assert.deepEqual(bm.regions(), [
        { offset: 0, length: 2 * R },
        { offset: 10 * R, length: R },
        { offset: 12 * R, length: 4 * R },
      ]);
      await bm.mark(11 * R, 1); // bridges 10 and 12
      assert.deepEqual(bm.regions(), [
        { offset: 0, length: 2 * R },
        { offset: 10 * R, length: 6 * R },
      ]);
      assert.equal(bm.dirtyBytes, 8 * R);
    });
  });

  it('isDirty is true when any touched region is marked', async () => {
    await withBitmap(freshPath(), 100 * R, async (bm) => {
      await bm.mark(5 * R + 100, 1);
      assert.equal(bm.isDirty(5 * R, R), true);
      assert.equal(bm.isDirty(5 * R + R - 1, 1), true);
      assert.equal(bm.isDirty(6 * R, R), false);
      assert.equal(bm.isDirty(4 * R, R), false);
      assert.equal(bm.isDirty(4 * R, R + 1), true);
      assert.equal(bm.isDirty(0, 100 * R), true);
    });
  });

  it('ignores empty ranges and ranges beyond the disk', async () => {
    await withBitmap(freshPath(), 10 * R, async (bm) => {
      await bm.mark(3 * R, 0);
      await bm.mark(3 * R, -5);
      await bm.mark(20 * R, R);
      assert.deepEqual(bm.regions(), []);
      await bm.mark(9 * R, 5 * R); // clipped to the last region
      assert.deepEqual(bm.regions(), [{ offset: 9 * R, length: R }]);
    });
  });

  it('clips the last region to the disk size', async () => {
    const size = 3 * R + 1000;
    await withBitmap(freshPath(), size, async (bm) => {
      await bm.mark(size - 1, 1);
      assert.deepEqual(bm.regions(), [{ offset: 3 * R, length: 1000 }]);
      await bm.markAll();
      assert.deepEqual(bm.regions(), [{ offset: 0, length: size }]);
      assert.equal(bm.dirtyBytes, size);
    });
  });

  it('markAll on a disk spanning many bitmap bytes marks every region', async () => {
    await withBitmap(freshPath(), 1000 * R, async (bm) => {
      await bm.markAll();
      assert.deepEqual(bm.regions(), [{ offset: 0, length: 1000 * R }]);
      assert.equal(bm.isDirty(999 * R, R), true);
    });
  });

  it('clear removes whole regions inside the range only', async () => {
    await withBitmap(freshPath(), 10 * R, async (bm) => {
      await bm.markAll();
      await bm.clear(1000, 3 * R); // regions 1 and 2 lie wholly inside; 0 and 3 only partly
      assert.deepEqual(bm.regions(), [
        { offset: 0, length: R },
        { offset: 3 * R, length: 7 * R },
      ]);
      await bm.clear(5 * R, 5 * R); // up to the end of the disk
      assert.deepEqual(bm.regions(), [
        { offset: 0, length: R },
        { offset: 3 * R, length: 2 * R },
      ]);
      await bm.clear(0, 10 * R);
      assert.deepEqual(bm.regions(), []);
    });
  });

  it('clear to the end also clears a partial last region', async () => {
    const size = 4 * R + 123;
    await withBitmap(freshPath(), size, async (bm) => {
      await bm.markAll();
      await bm.clear(2 * R, size - 2 * R);
      assert.deepEqual(bm.regions(), [{ offset: 0, length: 2 * R }]);
    });
  });

  it('marks reach the file before mark() returns and survive reopen', async () => {
    const path = freshPath();
    const size = 64 * R;
    const bm = await DirtyBitmap.open(path, size);
    await bm.mark(3 * R, R);
    await bm.mark(40 * R, 2 * R);
    // Another reader sees them without any sync or close.
    const expected = [
      { offset: 3 * R, length: R },
      { offset: 40 * R, length: 2 * R },
    ];
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), expected);
    await bm.sync();
    await bm.close();
    await withBitmap(path, size, async (again) => {
      assert.deepEqual(again.regions(), expected);
      await again.clear(40 * R, 2 * R);
    });
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [{ offset: 3 * R, length: R }]);
  });

  it('an empty file is a clean bitmap', async () => {
    const path = freshPath();
    writeFileSync(path, '');
    await withBitmap(path, 8 * R, async (bm) => assert.deepEqual(bm.regions(), []));
    assert.equal(statSync(path).size, 32 + 1);
  });

  it('a corrupted header makes the whole disk dirty, persistently', async () => {
    const path = freshPath();
    const size = 20 * R;
    await withBitmap(path, size, (bm) => bm.mark(0, 1));
    const f = readFileSync(path);
    f[9] ^= 0x01; // disk size field: the CRC no longer matches
    writeFileSync(path, f);

    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [{ offset: 0, length: size }]);
    assert.deepEqual(readFileSync(path), f, 'readRegions does not repair the file');
    await withBitmap(path, size, async (bm) => assert.deepEqual(bm.regions(), [{ offset: 0, length: size }]));
    // The rewritten file is valid and keeps everything dirty.
    const g = readFileSync(path);
    assert.equal(g.length, 32 + 3);
    assert.equal(g.readUInt32LE(16), crc32c(g.subarray(0, 16)));
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [{ offset: 0, length: size }]);
    await withBitmap(path, size, async (bm) => assert.deepEqual(bm.regions(), [{ offset: 0, length: size }]));
  });

  it('a flipped bit in the bitmap body is detected by its CRC32C: the whole disk is dirty', async () => {
    const path = freshPath();
    const size = 40 * R;
    await withBitmap(path, size, (bm) => bm.mark(3 * R, R));
    const f = readFileSync(path);
    assert.equal(f.readUInt32LE(20), crc32c(f.subarray(32)), 'the header carries the CRC32C of the bits');
    f[32] ^= 0x01; // region 0 would silently read as clean or dirty
    writeFileSync(path, f);
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [{ offset: 0, length: size }]);
    await withBitmap(path, size, async (bm) => assert.deepEqual(bm.regions(), [{ offset: 0, length: size }]));
  });

  it('a wrong magic or a CRC flip is detected', async () => {
    for (const byte of [0, 17]) {
      const path = freshPath();
      await withBitmap(path, 8 * R, async () => undefined);
      const f = readFileSync(path);
      f[byte] ^= 0xff;
      writeFileSync(path, f);
      assert.deepEqual(
        await DirtyBitmap.readRegions(path, 8 * R),
        [{ offset: 0, length: 8 * R }],
        `byte ${byte}`,
      );
    }
  });

  it('a garbage or short file makes the whole disk dirty', async () => {
    const path = freshPath();
    writeFileSync(path, 'not a bitmap');
    await withBitmap(path, 8 * R, async (bm) =>
      assert.deepEqual(bm.regions(), [{ offset: 0, length: 8 * R }]),
    );
  });

  it('a bitmap file cut short after its header makes the whole disk dirty', async () => {
    const path = freshPath();
    const size = 1000 * R; // 125 bitmap bytes
    await withBitmap(path, size, (bm) => bm.mark(0, 1));
    truncateSync(path, 32 + 10); // the bits of regions 80.. are gone
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [{ offset: 0, length: size }]);
    await withBitmap(path, size, async (bm) => assert.deepEqual(bm.regions(), [{ offset: 0, length: size }]));
    assert.equal(statSync(path).size, 32 + 125);
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [{ offset: 0, length: size }]);
  });

  it('a bitmap of another disk size makes the whole (new) disk dirty', async () => {
    const path = freshPath();
    await withBitmap(path, 64 * R, (bm) => bm.mark(0, 1));
    assert.deepEqual(await DirtyBitmap.readRegions(path, 32 * R), [{ offset: 0, length: 32 * R }]);
    await withBitmap(path, 32 * R, async (bm) =>
      assert.deepEqual(bm.regions(), [{ offset: 0, length: 32 * R }]),
    );
    assert.equal(statSync(path).size, 32 + 4, 'rewritten for the new size');
  });

  it('readRegions of a missing file is nothing dirty', async () => {
    assert.deepEqual(await DirtyBitmap.readRegions(join(dir, 'missing.bitmap'), 10 * GiB), []);
  });

  it('stays within 1 MiB for a 4 TiB disk and addresses its last region', async () => {
    const path = freshPath();
    const size = 4 * TiB;
    await withBitmap(path, size, async (bm) => {
      assert.equal(bm.regionSize, 512 * KiB);
      await bm.mark(size - 1, 1);
      await bm.mark(2 * TiB, 1);
      assert.deepEqual(bm.regions(), [
        { offset: 2 * TiB, length: 512 * KiB },
        { offset: size - 512 * KiB, length: 512 * KiB },
      ]);
    });
    assert.equal(statSync(path).size, 32 + MAX_BITMAP_BYTES);
    assert.deepEqual(await DirtyBitmap.readRegions(path, size), [
      { offset: 2 * TiB, length: 512 * KiB },
      { offset: size - 512 * KiB, length: 512 * KiB },
    ]);
  });
});
