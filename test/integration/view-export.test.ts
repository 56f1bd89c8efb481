// Point-in-time views of a replica served over NBD to real clients (qemu-img, nbdinfo,
// qemu-io) and exported to image files, checked against the true image at each point
// while replication goes on underneath.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { exportImage } from '../../src/master-target/export-image.js';
import { Replica, type ReplicaItem } from '../../src/master-target/replica.js';
import { ViewExport } from '../../src/master-target/view-export.js';
import { exportMap } from '../../src/nbd/export.js';
import { NbdServer } from '../../src/nbd/server.js';
import { BlockStore } from '../../src/storage/block-store.js';
import { type NbdRequestError, TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const exec = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const DISK = 16 * MiB;
/** Nothing is written above this before the views are opened: it must map as a hole. */
const USED = 10 * MiB;
const SEED = Number(process.env.REBOUND_TEST_SEED ?? 0x5eed);

const isZero = (b: Buffer) => b.every((x) => x === 0);

describe(`point-in-time views over NBD (seed ${SEED})`, { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('view-export');
  const diskPath = sparseImage(join(dir, 'disk-1.img'), DISK);
  const random = prng(SEED);
  const truth = Buffer.alloc(DISK); // the disk after every item applied so far
  let seq = 0;
  let replica: Replica;
  let server: NbdServer;
  let port = 0;
  const url = (name: string) => `nbd://127.0.0.1:${port}/${name}`;
  /** Export name -> its point and the true image at that point. */
  const points = new Map<string, { point: number; image: Buffer }>();
  const exports: ViewExport[] = [];

  /** Random writes, zeroes and trims inside [0, region), then a marker. */
  function batch(region: number, count: number, extra: ReplicaItem[] = []): ReplicaItem[] {
    const items: ReplicaItem[] = [];
    const pick = (max: number) => {
      const offset = Math.floor(random() * (region - KiB));
      return { offset, length: 1 + Math.floor(random() * Math.min(max, region - offset)) };
    };
    for (let i = 0; i < count; i++) {
      const r = random();
      if (r < 0.7) {
        const { offset, length } = pick(256 * KiB);
        const data = r < 0.05 ? Buffer.alloc(length) : randomBytes(length); // some zero data, allocated
        items.push({ type: 'write', seq: ++seq, disk: 1, offset, length, data, time: seq });
      } else {
        const { offset, length } = pick(MiB);
        items.push({ type: r < 0.85 ? 'zero' : 'trim', seq: ++seq, disk: 1, offset, length, time: seq });
      }
    }
    for (const it of extra) items.push({ ...it, seq: ++seq, time: seq });
    items.push({ type: 'marker', seq: ++seq, kind: 'crash', tag: `m${seq}`, time: seq });
    for (const it of items) {
      if (it.type === 'write') it.data!.copy(truth, it.offset);
      else if (it.type !== 'marker') truth.fill(0, it.offset, it.offset + it.length);
    }
    return items;
  }

  async function apply(items: ReplicaItem[]): Promise<number> {
    const r = await replica.applyBatch(items);
    assert.equal(r.applied, items.length);
    return r.appliedThrough;
  }

  async function serve(name: string, point: number, replicaPath?: string): Promise<void> {
    const view = replica.openView(point);
    exports.push(await ViewExport.open({ name, replica, view, disk: 1, replicaPath }));
    points.set(name, { point, image: Buffer.from(truth) });
  }

  async function copyOut(name: string): Promise<Buffer> {
    const out = join(dir, `${name}-${Date.now()}.raw`);
    await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url(name), out]);
    return readFileSync(out);
  }

  /** The export's map covers the disk, with holes only where the point reads as zeroes. */
  async function checkMap(name: string): Promise<{ offset: number; length: number; hole: boolean }[]> {
    const { stdout } = await exec('nbdinfo', ['--map', '--json', url(name)]);
    const map = (JSON.parse(stdout) as { offset: number; length: number; type: number }[]).map((m) => ({
      offset: m.offset,
      length: m.length,
      hole: (m.type & 1) !== 0,
    }));
    const image = points.get(name)!.image;
    let pos = 0;
    for (const m of map) {
      assert.equal(m.offset, pos, `${name}: the map is contiguous`);
      pos += m.length;
      if (m.hole) {
        assert.ok(isZero(image.subarray(m.offset, pos)), `${name}: hole [${m.offset}, ${pos}) holds data`);
      }
    }
    assert.equal(pos, DISK, `${name}: the map covers the disk`);
    return map;
  }

  const holeBytes = (map: { length: number; hole: boolean }[]) =>
    map.filter((m) => m.hole).reduce((n, m) => n + m.length, 0);

  before(async () => {
    replica = await Replica.open({
      stateDir: dir,
      retentionDir: join(dir, 'retention'),
      disks: [{ id: 1, path: diskPath }],
      segmentBytes: MiB,
    });
    const m1 = await apply(batch(USED, 40));
    await serve('p1', m1, diskPath);
    const m2 = await apply(batch(USED, 40));
    await serve('p2', m2, diskPath);
    await serve('p2-nomap', m2); // no replica path: everything is reported as data
    const m3 = await apply(batch(USED, 40));
    await serve('p3', m3, diskPath);
    server = new NbdServer(exportMap(exports), pino({ level: 'silent' }));
    ({ port } = await server.listenTcp('127.0.0.1', 0));
  });

  after(async () => {
    await server?.close();
    for (const e of exports) await e.close();
    await replica?.close();
    cleanup();
  });

  test('qemu-img convert copies each point out byte for byte', async () => {
    for (const [name, { image }] of points) {
      assert.ok((await copyOut(name)).equals(image), `${name} equals the true image at its point`);
    }
  });

  test('nbdinfo --map shows holes only where the point reads as zeroes', async () => {
    for (const name of ['p1', 'p2', 'p3']) {
      const map = await checkMap(name);
      // Never written: a hole in the replica with no journal record over it.
      const tail = map.filter((m) => m.hole && m.offset <= USED && m.offset + m.length === DISK);
      assert.equal(tail.length, 1, `${name}: [${USED}, ${DISK}) is one hole`);
    }
    assert.equal(holeBytes(await checkMap('p2-nomap')), 0);
  });

  test('writes are refused: qemu-io fails, raw NBD writes get EPERM', async () => {
    const info = JSON.parse((await exec('nbdinfo', ['--json', url('p1')])).stdout);
    assert.equal(info.exports[0]['is_read_only'], true, 'advertised read-only');
    assert.equal(info.exports[0]['export-size'], DISK);
    const r = await exec('qemu-io', ['-f', 'raw', url('p1'), '-c', 'write -P 0x55 0 4k']).then(
      (x) => ({ code: 0, out: x.stdout + x.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
    // qemu sees the read-only flag and refuses to open the export for writing.
    assert.notEqual(r.code, 0, `qemu-io: ${r.out}`);
    assert.match(r.out, /permission denied|read-only|not permitted/i, `qemu-io: ${r.out}`);
    assert.doesNotMatch(r.out, /wrote \d+/, 'qemu-io reports no write');
    const c = await TestNbdClient.connect({ host: '127.0.0.1', port }, 'p1');
    const eperm = (e: NbdRequestError) => e.errno === 1;
    await assert.rejects(c.write(0, Buffer.alloc(4096, 0x55)), eperm);
    await assert.rejects(c.writeZeroes(0, 4096), eperm);
    await assert.rejects(c.trim(0, 4096), eperm);
    await c.flush();
    assert.ok((await c.read(0, 4096)).equals(points.get('p1')!.image.subarray(0, 4096)), 'unchanged');
    await c.disconnect();
  });

  test('replication continues under open views: what they export does not change', async () => {
    // Over the whole disk this time, a copy-out running while the batches apply, and a
    // zeroing that leaves replica holes where the points had data.
    const copying = copyOut('p1');
    await apply(batch(DISK, 60));
    await apply(batch(DISK, 60, [{ type: 'zero', seq: 0, disk: 1, offset: 0, length: 6 * MiB, time: 0 }]));
    assert.ok((await copying).equals(points.get('p1')!.image), 'p1 copied during the batches');

    // The map check below must face replica holes over data the points held.
    const store = await BlockStore.open(diskPath, { readOnly: true });
    const replicaHoles = store.extents(0, DISK, 1 << 20).filter((x) => x.hole);
    await store.close();
    const dataUnderHole = replicaHoles.some(
      (x) => !isZero(points.get('p1')!.image.subarray(x.offset, x.offset + x.length)),
    );
    assert.ok(dataUnderHole, 'some replica holes hide data of p1');

    for (const [name, { image }] of points) {
      assert.ok((await copyOut(name)).equals(image), `${name} still equals its point`);
      const map = await checkMap(name);
      if (name !== 'p2-nomap') assert.ok(holeBytes(map) > 0, `${name} still maps some holes`);
    }
  });

  test('exportImage writes a sparse image equal to the point and refuses to overwrite', async () => {
    const { point, image } = points.get('p2')!;
    const view = replica.openView(point);
    try {
      const out = join(dir, 'p2.img');
      const r = await exportImage(view, 1, DISK, out);
      assert.ok(readFileSync(out).equals(image), 'the image equals the true image at p2');
      assert.ok(!existsSync(`${out}.tmp`), 'no temporary file left');
      let dataChunks = 0;
      for (let at = 0; at < DISK; at += MiB) if (!isZero(image.subarray(at, at + MiB))) dataChunks++;
      assert.deepEqual(r, { bytes: DISK, dataBytes: dataChunks * MiB });
      assert.ok(dataChunks < DISK / MiB, 'the point has all-zero chunks');

      // Every all-zero MiB of the point is a hole in the file.
      const img = await BlockStore.open(out, { readOnly: true });
      const holes = img.extents(0, DISK, 1 << 20).filter((x) => x.hole);
      await img.close();
      for (let at = 0; at < DISK; at += MiB) {
        if (!isZero(image.subarray(at, at + MiB))) continue;
        assert.ok(
          holes.some((h) => h.offset <= at && h.offset + h.length >= at + MiB),
          `chunk at ${at} is a hole`,
        );
      }
      assert.ok(statSync(out).blocks * 512 <= r.dataBytes + 64 * KiB, 'only data chunks take space');

      await assert.rejects(exportImage(view, 1, DISK, out), (e: Error) => e.message.includes(out));
      assert.ok(readFileSync(out).equals(image), 'the existing image is untouched');
    } finally {
      view.close();
    }
  });

  test('closing the exports releases their views: the journal can then be pruned', async () => {
    const latest = replica.appliedThrough;
    const held = await replica.pruneBefore(latest + 1);
    assert.ok(held.oldestPoint <= points.get('p1')!.point, 'open views hold back pruning');
    for (const e of exports) await e.close();
    await assert.rejects(exports[0].read(0, 4096), /closed/);
    const pruned = await replica.pruneBefore(latest + 1);
    assert.ok(pruned.segments > 0, 'segments pruned');
    assert.ok(pruned.oldestPoint > points.get('p3')!.point, 'no view holds the journal any more');
  });
});
