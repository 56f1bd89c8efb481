import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JOURNAL_HEADER_SIZE } from '../../src/master-target/journal-record.js';
import {
  CHUNK_BYTES,
  type Change,
  type Marker,
  Replica,
  type ReplicaItem,
  type ReplicaOptions,
  STATE_FILE,
} from '../../src/master-target/replica.js';
import { segmentFileName } from '../../src/master-target/undo-journal.js';

const MiB = 1024 * 1024;
const DISK = 4 * MiB;

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-replica-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh replica layout: two sparse disks, a state dir and a retention dir. */
function layout(diskBytes = DISK, segmentBytes = 256 * 1024): ReplicaOptions {
  const dir = join(root, `r-${n++}`);
  mkdirSync(dir);
  const disks = [1, 2].map((id) => {
    const path = join(dir, `disk-${id}.img`);
    writeFileSync(path, '');
    truncateSync(path, diskBytes);
    return { id, path };
  });
  return { stateDir: join(dir, 'state'), retentionDir: join(dir, 'retention'), disks, segmentBytes };
}

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The truth: every item sent, and the images they produce at any point. */
class Model {
  readonly items: ReplicaItem[] = [];
  constructor(private readonly diskBytes: number) {}

  imagesAt(p: number): Map<number, Buffer> {
    const images = new Map([1, 2].map((d) => [d, Buffer.alloc(this.diskBytes)]));
    for (const it of this.items) {
      if (it.seq > p) break;
      applyTo(images, it);
    }
    return images;
  }
}

function applyTo(images: Map<number, Buffer>, it: ReplicaItem): void {
  if (it.type === 'marker') return;
  const img = images.get(it.disk)!;
  if (it.type === 'write') it.data!.copy(img, it.offset);
  else img.fill(0, it.offset, it.offset + it.length);
}

/** Random changes and markers; offsets cluster around region boundaries so ranges overlap. */
function workload(rnd: () => number, fromSeq: number, count: number, diskBytes: number): ReplicaItem[] {
  const out: ReplicaItem[] = [];
  for (let seq = fromSeq; seq < fromSeq + count; seq++) {
    const time = 1_000_000 + seq * 1000;
    const r = rnd();
    if (r < 0.08) {
      out.push({ type: 'marker', seq, time, kind: rnd() < 0.5 ? 'app' : 'crash', tag: `m${seq}` });
      continue;
    }
    const disk = rnd() < 0.7 ? 1 : 2;
    const hot = Math.floor(rnd() * (diskBytes / MiB)) * MiB;
    let offset =
      rnd() < 0.6
        ? Math.max(0, hot - 96 * 1024 + Math.floor(rnd() * 192 * 1024))
        : Math.floor(rnd() * diskBytes);
    if (rnd() < 0.5) offset -= offset % 4096;
    offset = Math.min(offset, diskBytes - 1);
    const max = diskBytes - offset;
    if (r < 0.7) {
      const length = Math.min(max, 1 + Math.floor(rnd() * 200 * 1024));
      const data = rnd() < 0.1 ? Buffer.alloc(length) : randomBytes(length);
      out.push({ type: 'write', seq, disk, offset, length, data, time });
    } else {
      const length = Math.min(max, 1 + Math.floor(rnd() * MiB));
      out.push({ type: r < 0.85 ? 'zero' : 'trim', seq, disk, offset, length, time });
    }
  }
  return out;
}

function batches(items: ReplicaItem[], rnd: () => number): ReplicaItem[][] {
  const out: ReplicaItem[][] = [];
  for (let i = 0; i < items.length; ) {
    const k = 1 + Math.floor(rnd() * 12);
    out.push(items.slice(i, i + k));
    i += k;
  }
  return out;
}

async function applyAll(
  replica: Replica,
  model: Model,
  items: ReplicaItem[],
  rnd: () => number,
): Promise<void> {
  for (const b of batches(items, rnd)) {
    await replica.applyBatch(b);
    model.items.push(...b);
  }
}

/** view(P) equals the model at P for every point given, whole disks and random sub-ranges. */
async function assertViews(
  replica: Replica,
  model: Model,
  points: number[],
  rnd: () => number,
): Promise<void> {
  for (const p of points) {
    const truth = model.imagesAt(p);
    const view = replica.openView(p);
    try {
      for (const [disk, img] of truth) {
        assert.ok((await view.read(disk, 0, img.length)).equals(img), `disk ${disk} at point ${p}`);
        const off = Math.floor(rnd() * img.length);
        const len = Math.floor(rnd() * Math.min(img.length - off, 3 * MiB));
        assert.ok(
          (await view.read(disk, off, len)).equals(img.subarray(off, off + len)),
          `range at point ${p}`,
        );
      }
    } finally {
      view.close();
    }
  }
}

function assertDisks(opts: ReplicaOptions, images: Map<number, Buffer>): void {
  for (const d of opts.disks)
    assert.ok(readFileSync(d.path).equals(images.get(d.id)!), `replica disk ${d.id}`);
}

function samplePoints(from: number, to: number, count: number, rnd: () => number): number[] {
  const s = new Set([from, to]);
  while (s.size < Math.min(count, to - from + 1)) s.add(from + Math.floor(rnd() * (to - from + 1)));
  return [...s].sort((a, b) => a - b);
}

const w = (seq: number, disk: number, offset: number, data: Buffer, time = seq): Change => ({
  type: 'write',
  seq,
  disk,
  offset,
  length: data.length,
  data,
  time,
});
const mark = (seq: number, kind: 'crash' | 'app', tag: string, time = seq): Marker => ({
  type: 'marker',
  seq,
  kind,
  tag,
  time,
});

describe('Replica', () => {
  it('applies random writes, zeroes and trims; every point is exact', async () => {
    const rnd = prng(1);
    const opts = layout();
    const replica = await Replica.open(opts);
    const model = new Model(DISK);
    await applyAll(replica, model, workload(rnd, 1, 250, DISK), rnd);
    assert.equal(replica.appliedThrough, 250);
    assert.equal(replica.oldestPoint, 0);
    assertDisks(opts, model.imagesAt(250));
    const markers = model.items.filter((i) => i.type === 'marker').map((i) => i.seq);
    await assertViews(replica, model, [...new Set([...samplePoints(0, 250, 30, rnd), ...markers])], rnd);
    await replica.close();
  });

  it('skips re-sent items after a restart and continues exactly', async () => {
    const rnd = prng(2);
    const opts = layout();
    const model = new Model(DISK);
    const items = workload(rnd, 1, 160, DISK);
    let replica = await Replica.open(opts);
    await applyAll(replica, model, items.slice(0, 100), rnd);
    await replica.close();

    replica = await Replica.open(opts);
    assert.equal(replica.appliedThrough, 100);
    const journalBytes = replica.journal.bytes;
    // The sender did not see the acknowledgement of 71..100: it sends them again, then more.
    const again = await replica.applyBatch(items.slice(70, 110));
    assert.deepEqual(again, { applied: 10, redone: 0, skipped: 30, appliedThrough: 110 });
    model.items.push(...items.slice(100, 110));
    assert.ok(replica.journal.bytes > journalBytes);
    await applyAll(replica, model, items.slice(110), rnd);
    assertDisks(opts, model.imagesAt(160));
    await assertViews(replica, model, samplePoints(0, 160, 20, rnd), rnd);
    await replica.close();
  });

  for (const crash of ['replica untouched', 'replica half written', 'replica written'] as const) {
    it(`after a crash between journal and state (${crash}) a re-send redoes the writes only`, async () => {
      const rnd = prng(3);
      const opts = layout();
      const model = new Model(DISK);
      const items = workload(rnd, 1, 90, DISK);
      const replica = await Replica.open(opts);
      await applyAll(replica, model, items.slice(0, 60), rnd);
      // Keep the replica's files as they were before the next batch.
      const statePath = join(opts.stateDir, STATE_FILE);
      const saved = opts.disks.map((d) => readFileSync(d.path));
      const savedState = readFileSync(statePath);
      const batch = items.slice(60, 75);
      await replica.applyBatch(batch);
      await replica.close();
      // Roll back what the crash would have lost: the state file, and some replica writes.
      writeFileSync(statePath, savedState);
      if (crash !== 'replica written') {
        opts.disks.forEach((d, i) => {
          writeFileSync(d.path, saved[i]);
        });
      }
      if (crash === 'replica half written') {
        const images = new Map(opts.disks.map((d) => [d.id, readFileSync(d.path)]));
        for (const it of batch.slice(0, 7)) applyTo(images, it);
        for (const d of opts.disks) writeFileSync(d.path, images.get(d.id)!);
      }

      const reopened = await Replica.open(opts);
      assert.equal(reopened.appliedThrough, 60);
      const journalBytes = reopened.journal.bytes;
      // Before the re-send, a view of point 60 is already exact (pending records overlay).
      await assertViews(reopened, model, [60], rnd);
      const r = await reopened.applyBatch(items.slice(55, 80));
      assert.deepEqual(r, { applied: 5, redone: 15, skipped: 5, appliedThrough: 80 });
      model.items.push(...items.slice(60, 80));
      const newRecords = items.slice(75, 80);
      assert.ok(reopened.journal.bytes >= journalBytes + newRecords.length * JOURNAL_HEADER_SIZE);
      await applyAll(reopened, model, items.slice(80), rnd);
      assertDisks(opts, model.imagesAt(90));
      await assertViews(reopened, model, samplePoints(0, 90, 25, rnd), rnd);
      await reopened.close();
    });
  }

  it('a torn journal tail after a crash: complete records are redone, the rest journaled anew', async () => {
    const rnd = prng(4);
    const opts = layout(DISK, 1 << 30);
    const model = new Model(DISK);
    const items: ReplicaItem[] = [];
    for (let s = 1; s <= 20; s++) items.push(w(s, 1, (s % 5) * 1000, randomBytes(3000)));
    const replica = await Replica.open(opts);
    await applyAll(replica, model, items.slice(0, 10), rnd);
    const statePath = join(opts.stateDir, STATE_FILE);
    const saved = opts.disks.map((d) => readFileSync(d.path));
    const savedState = readFileSync(statePath);
    const seg = join(opts.retentionDir, segmentFileName(1));
    const before = statSync(seg).size;
    await replica.applyBatch(items.slice(10, 20));
    await replica.close();
    // Power loss: the batch's journal sync never completed; 4 records and a bit made it.
    writeFileSync(statePath, savedState);
    opts.disks.forEach((d, i) => {
      writeFileSync(d.path, saved[i]);
    });
    truncateSync(seg, before + 4 * (JOURNAL_HEADER_SIZE + 3000) + 100);

    const reopened = await Replica.open(opts);
    assert.equal(reopened.journal.lastSeq, 14);
    const r = await reopened.applyBatch(items.slice(10, 20));
    assert.deepEqual(r, { applied: 6, redone: 4, skipped: 0, appliedThrough: 20 });
    model.items.push(...items.slice(10, 20));
    assertDisks(opts, model.imagesAt(20));
    await assertViews(reopened, model, samplePoints(0, 20, 21, rnd), rnd);
    await reopened.close();
  });

  it('refuses re-sends that do not match the journal, or skip it, naming the seqs', async () => {
    const opts = layout();
    const replica = await Replica.open(opts);
    await replica.applyBatch([w(1, 1, 0, Buffer.alloc(10, 1))]);
    await replica.close();
    // Make seqs 2 and 3 pending: journaled, state not advanced.
    const statePath = join(opts.stateDir, STATE_FILE);
    const savedState = readFileSync(statePath);
    const r1 = await Replica.open(opts);
    await r1.applyBatch([w(2, 1, 0, Buffer.alloc(10, 2)), mark(3, 'app', 'x')]);
    await r1.close();
    writeFileSync(statePath, savedState);

    const r2 = await Replica.open(opts);
    await assert.rejects(
      r2.applyBatch([w(3, 1, 0, Buffer.alloc(10, 3))]),
      new Error('seq 3 received where seq 2 was expected (journaled, not yet applied)'),
    );
    await assert.rejects(
      r2.applyBatch([w(2, 1, 5, Buffer.alloc(10, 2))]),
      new Error('seq 2 does not match its journal record: disk 1 [5, +10), journal has disk 1 [0, +10)'),
    );
    await assert.rejects(
      r2.applyBatch([w(2, 1, 0, Buffer.alloc(10, 2)), mark(3, 'crash', 'x')]),
      new Error('seq 3 does not match its journal record: marker kind crash, journal has app'),
    );
    assert.equal(r2.appliedThrough, 1, 'a refused batch changes nothing');
    assert.deepEqual(await r2.applyBatch([w(2, 1, 0, Buffer.alloc(10, 2)), mark(3, 'app', 'x')]), {
      applied: 0,
      redone: 2,
      skipped: 0,
      appliedThrough: 3,
    });
    await r2.close();
  });

  it('validates items before doing anything', async () => {
    const opts = layout();
    const replica = await Replica.open(opts);
    await replica.applyBatch([w(5, 1, 0, Buffer.alloc(10, 1))]);
    const cases: [ReplicaItem[], string][] = [
      [[w(7, 1, 0, Buffer.alloc(1)), w(6, 1, 0, Buffer.alloc(1))], 'seq 6 does not follow seq 7'],
      [[w(7, 9, 0, Buffer.alloc(1))], 'seq 7: unknown disk 9'],
      [
        [w(7, 1, DISK - 1, Buffer.alloc(2))],
        `seq 7: range [${DISK - 1}, +2) is beyond the end of disk 1 (${DISK} bytes)`,
      ],
      [[{ ...w(7, 1, 0, Buffer.alloc(4)), length: 5 }], 'seq 7: write of 5 bytes carries 4 bytes of data'],
      [[{ type: 'zero', seq: 7, disk: 1, offset: -1, length: 1, time: 0 }], 'seq 7: invalid range [-1, +1)'],
      [[w(0, 1, 0, Buffer.alloc(1))], 'invalid seq 0'],
      [[w(8, 1, 0, Buffer.alloc(1)), w(8, 1, 0, Buffer.alloc(1))], 'seq 8 does not follow seq 8'],
    ];
    for (const [items, msg] of cases) await assert.rejects(replica.applyBatch(items), new Error(msg));
    assert.equal(replica.appliedThrough, 5);
    assert.equal(replica.journal.lastSeq, 5);
    await replica.close();
  });

  it('stores no payload for before-images of holes or zeroes', async () => {
    const opts = layout();
    const replica = await Replica.open(opts);
    await replica.applyBatch([
      { type: 'trim', seq: 1, disk: 1, offset: 0, length: MiB, time: 1 },
      w(2, 1, 4096, randomBytes(8192)),
      { type: 'zero', seq: 3, disk: 2, offset: 100, length: 2 * MiB, time: 3 },
      w(4, 2, 0, Buffer.alloc(4096)),
    ]);
    assert.equal(replica.journal.bytes, 4 * JOURNAL_HEADER_SIZE);
    // Over data, the before-image is stored (overlaid with the earlier change of the same batch).
    await replica.applyBatch([
      w(5, 1, 0, Buffer.alloc(16384, 7)),
      { type: 'zero', seq: 6, disk: 1, offset: 0, length: 8192, time: 6 },
    ]);
    assert.equal(replica.journal.bytes, 6 * JOURNAL_HEADER_SIZE + 16384 + 8192);
    await replica.close();
  });

  it('journals a change longer than one chunk as several records and views it exactly', async () => {
    const big = 2 * CHUNK_BYTES + 5 * MiB;
    const opts = layout(big + MiB);
    const replica = await Replica.open(opts);
    const model = new Model(big + MiB);
    const a = randomBytes(3 * MiB);
    const b = randomBytes(MiB);
    const items: ReplicaItem[] = [
      w(1, 1, MiB, a),
      w(2, 1, CHUNK_BYTES + 100, b),
      w(3, 1, big - 10, randomBytes(20)),
      { type: 'trim', seq: 4, disk: 1, offset: 512, length: big, time: 4 },
      w(5, 1, CHUNK_BYTES - 10, randomBytes(100)),
    ];
    await replica.applyBatch(items.slice(0, 3));
    await replica.applyBatch(items.slice(3));
    model.items.push(...items);
    const trimRecords = replica.journal.entriesAfter(3).filter((e) => e.seq === 4);
    assert.equal(trimRecords.length, 3);
    assert.deepEqual(
      trimRecords.map((e) => [e.offset, e.length]),
      [
        [512, CHUNK_BYTES],
        [512 + CHUNK_BYTES, CHUNK_BYTES],
        [512 + 2 * CHUNK_BYTES, big - 2 * CHUNK_BYTES],
      ],
    );
    const rnd = prng(5);
    await assertViews(replica, model, [0, 1, 2, 3, 4, 5], rnd);
    await replica.close();
  });

  it('lists recovery points and maps any time to a point', async () => {
    const opts = layout();
    const replica = await Replica.open(opts);
    await replica.applyBatch([
      w(1, 1, 0, Buffer.alloc(10, 1), 1000),
      mark(2, 'crash', '', 1500),
      w(3, 1, 0, Buffer.alloc(10, 3), 2000),
      mark(4, 'app', 'db-quiesced', 2500),
      w(6, 2, 0, Buffer.alloc(10, 6), 3000),
    ]);
    assert.deepEqual(replica.recoveryPoints(), [
      { seq: 2, time: 1500, kind: 'crash', tag: '' },
      { seq: 4, time: 2500, kind: 'app', tag: 'db-quiesced' },
    ]);
    assert.equal(replica.pointAtTime(999), undefined);
    assert.equal(replica.pointAtTime(1000), 1);
    assert.equal(replica.pointAtTime(1999), 2);
    assert.equal(replica.pointAtTime(2700), 4);
    assert.equal(replica.pointAtTime(3000), 6);
    assert.equal(replica.pointAtTime(9e12), 6);
    await replica.close();
    const again = await Replica.open(opts);
    assert.equal(again.recoveryPoints().length, 2);
    assert.equal(again.pointAtTime(2100), 3);
    await again.close();
  });

  it('prunes old segments: old points are refused, the rest stay exact', async () => {
    const rnd = prng(6);
    const opts = layout(DISK, 64 * 1024);
    const replica = await Replica.open(opts);
    const model = new Model(DISK);
    await applyAll(replica, model, workload(rnd, 1, 120, DISK), rnd);
    const segments = replica.journal.segmentCount;
    assert.ok(segments > 5);
    const r = await replica.pruneBefore(60);
    assert.ok(r.segments > 0 && r.segments < segments);
    const oldest = replica.oldestPoint;
    assert.equal(r.oldestPoint, oldest);
    assert.equal(oldest, replica.journal.firstSeq! - 1);
    assert.ok(oldest <= 59, 'point 59 (seq 60 - 1) is kept');
    assert.throws(
      () => replica.openView(oldest - 1),
      new Error(`recovery point ${oldest - 1} is older than the oldest retained point ${oldest}`),
    );
    assert.throws(
      () => replica.openView(121),
      new Error('recovery point 121 is newer than the latest applied seq 120'),
    );
    await assertViews(replica, model, samplePoints(oldest, 120, 12, rnd), rnd);
    assert.ok(replica.recoveryPoints().every((p) => p.seq > oldest));
    await replica.close();
    const again = await Replica.open(opts);
    assert.equal(again.oldestPoint, oldest);
    // Pruning everything leaves only "latest", which is exact and costs nothing.
    await again.pruneBefore(Number.MAX_SAFE_INTEGER);
    assert.equal(again.journal.segmentCount, 0);
    assert.equal(again.oldestPoint, 120);
    await assertViews(again, model, [120], rnd);
    assert.throws(
      () => again.openView(119),
      new Error('recovery point 119 is older than the oldest retained point 120'),
    );
    await again.applyBatch(workload(rnd, 121, 5, DISK));
    assert.equal(again.oldestPoint, 120);
    await again.close();
  });

  it('an open view holds back pruning of what it needs', async () => {
    const rnd = prng(7);
    const opts = layout(DISK, 64 * 1024);
    const replica = await Replica.open(opts);
    const model = new Model(DISK);
    await applyAll(replica, model, workload(rnd, 1, 80, DISK), rnd);
    const view = replica.openView(30);
    const before = await view.read(1, 0, DISK);
    await replica.pruneBefore(70);
    assert.ok(replica.oldestPoint <= 30);
    assert.ok((await view.read(1, 0, DISK)).equals(before));
    assert.ok(before.equals(model.imagesAt(30).get(1)!));
    view.close();
    await replica.pruneBefore(70);
    assert.ok(replica.oldestPoint > 30);
    await assert.rejects(view.read(1, 0, 1), /view of point 30 is closed/);
    await replica.close();
  });

  it('prunes by age, keeping the point at the cutoff', async () => {
    const rnd = prng(8);
    const opts = layout(DISK, 64 * 1024);
    const replica = await Replica.open(opts);
    const model = new Model(DISK);
    await applyAll(replica, model, workload(rnd, 1, 100, DISK), rnd);
    const cutoff = 1_000_000 + 50 * 1000 + 500; // between seq 50 and 51
    assert.equal(replica.pointAtTime(cutoff), 50);
    const r = await replica.pruneOlderThan(cutoff);
    assert.ok(r.segments > 0);
    assert.ok(replica.oldestPoint <= 50 && replica.oldestPoint > 0);
    await assertViews(replica, model, [50, replica.oldestPoint], rnd);
    await replica.close();
  });

  it('a full retention volume refuses the batch whole; it applies once there is room', async (t) => {
    const opts = layout(DISK, 64 * 1024);
    mkdirSync(opts.retentionDir);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', opts.retentionDir], {
        stdio: 'ignore',
      });
    } catch {
      t.skip('cannot mount a tmpfs here');
      return;
    }
    try {
      const rnd = prng(9);
      const model = new Model(DISK);
      const replica = await Replica.open(opts);
      let seq = 1;
      let failed: { batch: ReplicaItem[]; err: Error } | undefined;
      // Overwrites of random data: every before-image is stored, so the journal fills up.
      while (!failed) {
        const batch: ReplicaItem[] = [];
        for (let i = 0; i < 4; i++, seq++)
          batch.push(w(seq, 1, Math.floor(rnd() * 48) * 65536, randomBytes(65536)));
        try {
          await replica.applyBatch(batch);
          model.items.push(...batch);
        } catch (e) {
          failed = { batch, err: e as Error };
        }
      }
      assert.match(failed.err.message, /^retention volume full: /);
      const applied = replica.appliedThrough;
      assert.equal(applied, failed.batch[0].seq - 1);
      assert.equal(replica.journal.lastSeq, applied, 'no record of the refused batch');
      assertDisks(opts, model.imagesAt(applied));
      await assertViews(replica, model, [applied, replica.oldestPoint], rnd);
      // Still refused while full; nothing half-applied after a restart either.
      await assert.rejects(replica.applyBatch(failed.batch), /^Error: retention volume full: /);
      await replica.close();
      const reopened = await Replica.open(opts);
      assert.equal(reopened.appliedThrough, applied);
      assert.equal(reopened.journal.lastSeq, applied);
      // Retention frees space; the caller's retry succeeds.
      await reopened.pruneBefore(applied - 4);
      assert.deepEqual((await reopened.applyBatch(failed.batch)).applied, 4);
      model.items.push(...failed.batch);
      assertDisks(opts, model.imagesAt(seq - 1));
      await assertViews(reopened, model, [reopened.oldestPoint, seq - 3, seq - 1], rnd);
      await reopened.close();
    } finally {
      execFileSync('umount', ['-l', opts.retentionDir]); // lazy: works even if a failed test left files open
    }
  });

  it('a flipped byte in the journal is a named error, never used; points that do not need it still work', async () => {
    const opts = layout(DISK, 1 << 30);
    const replica = await Replica.open(opts);
    const zeroth = Buffer.alloc(4096);
    const first = randomBytes(4096);
    const second = randomBytes(4096);
    await replica.applyBatch([w(1, 1, 0, first)]);
    await replica.applyBatch([w(2, 1, 0, second)]);
    await replica.applyBatch([w(3, 1, 8192, randomBytes(4096))]);
    await replica.close();
    const seg = join(opts.retentionDir, segmentFileName(1));
    // Record 1 is a zero before-image (48 bytes); record 2 at offset 48 holds seq 1's data.
    const bytes = readFileSync(seg);
    bytes[JOURNAL_HEADER_SIZE + JOURNAL_HEADER_SIZE + 1000] ^= 0x01;
    writeFileSync(seg, bytes);
    // In the last segment the open-time check finds it; a record the replica applied is
    // not a torn tail: it is kept, named, and never used.
    const again = await Replica.open(opts);
    assert.equal(statSync(seg).size, bytes.length, 'nothing was cut');
    const named = `undo journal corrupt: ${seg} at offset ${JOURNAL_HEADER_SIZE}: crc mismatch (seq 2)`;
    assert.throws(() => again.openView(1), {
      message: `recovery point 1 needs the before-image of seq 2 that cannot be used: ${named}`,
    });
    // Point 0 reads that range from seq 1's before-image (zeroes): it does not need seq 2.
    const v0 = again.openView(0);
    assert.ok((await v0.read(1, 0, 4096)).equals(zeroth));
    v0.close();
    assert.deepEqual(again.healthProblems(), [
      {
        code: 'undo-journal-corrupt',
        message: `${named}: views of points that need it are refused; points after it are not affected`,
      },
    ]);
    for (const [p, want] of [
      [2, second],
      [3, second],
    ] as const) {
      const v = again.openView(p);
      assert.ok((await v.read(1, 0, 4096)).equals(want), `view of ${p}`);
      v.close();
    }
    await again.checkPoint(2);
    await assert.rejects(again.checkPoint(1), /needs the before-image of seq 2/);
    // Replication goes on.
    await again.applyBatch([w(4, 1, 0, randomBytes(4096))]);
    const v3 = again.openView(3);
    assert.ok((await v3.read(1, 0, 4096)).equals(second));
    v3.close();
    await again.close();

    // In a closed (non-last) segment a payload is checked before a view that may read it
    // opens (checkPoint), or when read: either way a named error, never its bytes.
    const opts2 = layout(DISK, 10); // one segment per batch
    const r2 = await Replica.open(opts2);
    await r2.applyBatch([w(1, 1, 0, first)]);
    await r2.applyBatch([w(2, 1, 0, randomBytes(4096))]);
    await r2.applyBatch([w(3, 2, 0, randomBytes(10))]);
    await r2.applyBatch([w(4, 1, 4096, randomBytes(4096))]);
    await r2.close();
    const seg2 = join(opts2.retentionDir, segmentFileName(2));
    const b2 = readFileSync(seg2);
    b2[JOURNAL_HEADER_SIZE + 7] ^= 0x80;
    writeFileSync(seg2, b2);
    const r3 = await Replica.open(opts2);
    assert.deepEqual(r3.healthProblems(), [], 'not known before it is checked');
    const named2 = `undo journal corrupt: ${seg2} at offset 0: crc mismatch (seq 2)`;
    await assert.rejects(r3.checkPoint(1), {
      message: `recovery point 1 needs the before-image of seq 2 that cannot be used: ${named2}`,
    });
    assert.equal(r3.healthProblems()[0]?.code, 'undo-journal-corrupt');
    // Point 0 reads seq 2's range from seq 1's before-image; points from 2 on never need it.
    await r3.checkPoint(0);
    await r3.checkPoint(2);
    const latest = r3.openView('latest');
    assert.equal((await latest.read(2, 0, 10)).length, 10, 'other reads still work');
    latest.close();
    await r3.close();
    // Found by a read instead (no check first): the read fails by name, and from then on
    // the point is refused at open.
    const r4 = await Replica.open(opts2);
    const view = r4.openView(1);
    await assert.rejects(
      view.read(1, 0, 4096),
      new Error(`undo journal corrupt: ${seg2} at offset 0: crc mismatch`),
    );
    view.close();
    assert.throws(() => r4.openView(1), /needs the before-image of seq 2/);
    await r4.close();
    assert.equal(statSync(seg2).size, JOURNAL_HEADER_SIZE + 4096);
  });
});
