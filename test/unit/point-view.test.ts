import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JournalRecordType } from '../../src/master-target/journal-record.js';
import { PointView, type ViewSource } from '../../src/master-target/point-view.js';
import {
  type Change,
  Replica,
  type ReplicaItem,
  type ReplicaOptions,
} from '../../src/master-target/replica.js';
import { UndoJournal } from '../../src/master-target/undo-journal.js';

const MiB = 1024 * 1024;
const DISK = 3 * MiB;

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-point-view-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function layout(): ReplicaOptions {
  const dir = join(root, `v-${n++}`);
  mkdirSync(dir);
  const path = join(dir, 'disk-1.img');
  writeFileSync(path, '');
  truncateSync(path, DISK);
  return {
    stateDir: dir,
    retentionDir: join(dir, 'retention'),
    disks: [{ id: 1, path }],
    segmentBytes: 128 * 1024,
  };
}

const w = (seq: number, offset: number, data: Buffer): Change => ({
  type: 'write',
  seq,
  disk: 1,
  offset,
  length: data.length,
  data,
  time: seq,
});

/** The disk image after every item with seq <= p. */
function imageAt(items: ReplicaItem[], p: number): Buffer {
  const img = Buffer.alloc(DISK);
  for (const it of items) {
    if (it.seq > p || it.type === 'marker') continue;
    if (it.type === 'write') it.data!.copy(img, it.offset);
    else img.fill(0, it.offset, it.offset + it.length);
  }
  return img;
}

/** Overlapping writes and zeroes, dense enough that most bytes change many times. */
function changes(fromSeq: number, count: number): ReplicaItem[] {
  const out: ReplicaItem[] = [];
  for (let seq = fromSeq; seq < fromSeq + count; seq++) {
    const offset = Math.floor(Math.random() * (DISK - 300 * 1024));
    const length = 1 + Math.floor(Math.random() * 300 * 1024);
    if (seq % 7 === 0) out.push({ type: 'zero', seq, disk: 1, offset, length, time: seq });
    else out.push(w(seq, offset, randomBytes(length)));
  }
  return out;
}

describe('PointView', () => {
  it('for each byte, the before-image of the smallest seq after the point wins', async () => {
    const replica = await Replica.open(layout());
    const A = Buffer.alloc(10, 0xaa);
    const B = Buffer.alloc(10, 0xbb);
    const C = Buffer.alloc(20, 0xcc);
    const items: ReplicaItem[] = [
      w(1, 0, A),
      w(2, 5, B),
      { type: 'marker', seq: 3, kind: 'app', tag: 'x', time: 3 },
      w(4, 0, C),
      { type: 'trim', seq: 5, disk: 1, offset: 2, length: 3, time: 5 },
    ];
    await replica.applyBatch(items.slice(0, 2));
    await replica.applyBatch(items.slice(2));
    const expect = [
      Buffer.alloc(20),
      Buffer.concat([A, Buffer.alloc(10)]),
      Buffer.concat([A.subarray(0, 5), B, Buffer.alloc(5)]),
      Buffer.concat([A.subarray(0, 5), B, Buffer.alloc(5)]),
      C,
      Buffer.concat([C.subarray(0, 2), Buffer.alloc(3), C.subarray(5)]),
    ];
    for (let p = 0; p <= 5; p++) {
      const view = replica.openView(p);
      assert.deepEqual(await view.read(1, 0, 20), expect[p], `point ${p}`);
      assert.deepEqual(await view.read(1, 7, 6), expect[p].subarray(7, 13), `point ${p}, inner range`);
      view.close();
    }
    await replica.close();
  });

  it('"latest" reads the replica with no overlays', async () => {
    const replica = await Replica.open(layout());
    await replica.applyBatch(changes(1, 20));
    const view = replica.openView('latest');
    assert.equal(view.point, 20);
    assert.deepEqual(replica.journal.overlapping(1, 0, DISK, view.point), []);
    view.close();
    await replica.close();
  });

  it('stays exact while replication continues under it', async () => {
    const replica = await Replica.open(layout());
    const items = changes(1, 40);
    await replica.applyBatch(items);
    const view = replica.openView(25);
    const latest = replica.openView('latest');
    const first = await view.read(1, 0, DISK);
    assert.ok(first.equals(imageAt(items, 25)));
    for (let b = 0; b < 6; b++) {
      const more = changes(41 + b * 10, 10);
      await replica.applyBatch(more);
      items.push(...more);
      assert.ok((await view.read(1, 0, DISK)).equals(first), `view of 25 after batch ${b}`);
      assert.ok((await latest.read(1, 0, DISK)).equals(imageAt(items, 40)), `view of 40 after batch ${b}`);
    }
    view.close();
    latest.close();
    await replica.close();
  });

  it('reads interleaved with batches always return the point exactly', async () => {
    const replica = await Replica.open(layout());
    const items = changes(1, 30);
    await replica.applyBatch(items);
    const points = [0, 10, 30];
    const truth = points.map((p) => imageAt(items, p));
    const views = points.map((p) => replica.openView(p));
    let seq = 31;
    for (let round = 0; round < 12; round++) {
      const more = changes(seq, 8);
      seq += 8;
      // Many small reads race with the batch at every await it makes.
      const reads = views.flatMap((v, i) =>
        Array.from({ length: 6 }, () => {
          const off = Math.floor(Math.random() * (DISK - 64 * 1024));
          const len = 1 + Math.floor(Math.random() * 64 * 1024);
          return v
            .read(1, off, len)
            .then((b) => assert.ok(b.equals(truth[i].subarray(off, off + len)), `point ${v.point}`));
        }),
      );
      await Promise.all([replica.applyBatch(more), ...reads]);
      items.push(...more);
    }
    for (const [i, v] of views.entries()) assert.ok((await v.read(1, 0, DISK)).equals(truth[i]));
    for (const v of views) v.close();
    await replica.close();
  });

  it('collects overlays only after the replica read (a change landing during the read is covered)', async () => {
    // A hand-driven source: the replica write of seq 2 lands while the view's read is in
    // flight. Had the view looked at the index first, it would miss seq 2's before-image.
    const dir = join(root, `race-${n++}`);
    const journal = await UndoJournal.open(dir);
    const replica = Buffer.alloc(16, 1); // state at point 1
    await journal.append([
      {
        type: JournalRecordType.BeforeImage,
        seq: 1,
        disk: 1,
        time: 1,
        offset: 0,
        length: 16,
        beforeImage: null,
      },
    ]);
    const source: ViewSource = {
      journal,
      diskSize: () => 16,
      readReplica: async (_disk, buf, offset) => {
        // Apply seq 2 the way Replica does: journal (indexed) first, then the replica.
        await journal.append([
          {
            type: JournalRecordType.BeforeImage,
            seq: 2,
            disk: 1,
            time: 2,
            offset: 4,
            length: 8,
            beforeImage: replica.subarray(4, 12),
          },
        ]);
        replica.fill(2, 4, 12);
        replica.copy(buf, 0, offset, offset + buf.length);
      },
      release: () => undefined,
    };
    const view = new PointView(1, source);
    assert.deepEqual(await view.read(1, 0, 16), Buffer.alloc(16, 1));
    view.close();
    await journal.close();
  });

  it('refuses bad reads with a clear error', async () => {
    const replica = await Replica.open(layout());
    await replica.applyBatch(changes(1, 3));
    const view = replica.openView(2);
    await assert.rejects(view.read(9, 0, 1), new Error('unknown disk 9'));
    await assert.rejects(
      view.read(1, DISK - 1, 2),
      new Error(`read [${DISK - 1}, +2) is beyond the end of disk 1 (${DISK} bytes)`),
    );
    await assert.rejects(view.read(1, -1, 2), new Error('invalid read range [-1, +2) of disk 1'));
    assert.throws(
      () => replica.openView(4),
      new Error('recovery point 4 is newer than the latest applied seq 3'),
    );
    assert.throws(() => replica.openView(1.5), new Error('invalid recovery point 1.5'));
    view.close();
    await assert.rejects(view.read(1, 0, 1), new Error('view of point 2 is closed'));
    await replica.close();
    assert.throws(() => replica.openView(1), new Error('replica is closed'));
  });
});
