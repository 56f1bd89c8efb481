// Failover's rollback in place: the replica disks become exactly their state at the
// point, the bytes written are the distinct bytes the journal after the point covers
// (the same on a 1 GiB and a 100 GiB sparse disk: nothing depends on the disk size),
// batches are refused afterwards, and the rollback can be redone (after a crash) with
// the same result.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ByteRanges } from '../../src/master-target/byte-ranges.js';
import { Replica, type ReplicaItem } from '../../src/master-target/replica.js';
import { prng } from '../support/prng.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-rollback-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function read(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** Writes at the same pseudo-random offsets (inside the first 64 MiB) whatever the disk size. */
function workload(seed: number, count: number, fromSeq: number): { items: ReplicaItem[]; next: number } {
  const rand = prng(seed);
  const items: ReplicaItem[] = [];
  let seq = fromSeq;
  for (let i = 0; i < count; i++) {
    const offset = Math.floor(rand() * 16_000) * 4096;
    const length = 4096 * (1 + Math.floor(rand() * 16));
    if (rand() < 0.15) items.push({ type: 'zero', seq: seq++, disk: 1, offset, length, time: 1000 + seq });
    else
      items.push({
        type: 'write',
        seq: seq++,
        disk: 1,
        offset,
        length,
        data: randomBytes(length),
        time: 1000 + seq,
      });
  }
  items.push({ type: 'marker', seq: seq++, kind: 'crash', tag: '', time: 1000 + seq });
  return { items, next: seq };
}

async function scenario(diskBytes: number, name: string) {
  const dir = join(root, name);
  mkdirSync(dir);
  const disk = join(dir, 'disk-1.img');
  writeFileSync(disk, '');
  truncateSync(disk, diskBytes);
  const replica = await Replica.open({
    stateDir: dir,
    retentionDir: join(dir, 'retention'),
    disks: [{ id: 1, path: disk }],
  });
  const first = workload(1, 300, 1);
  await replica.applyBatch(first.items);
  const point = first.next - 1;
  const atPoint = read(disk, 0, 64 * MiB);
  const second = workload(2, 300, first.next);
  await replica.applyBatch(second.items);
  // The distinct bytes changed after the point, from the items themselves.
  const changed = new ByteRanges();
  let changedBytes = 0;
  for (const it of second.items) {
    if (it.type === 'marker') continue;
    for (const [a, b] of changed.gaps(it.offset, it.offset + it.length)) changedBytes += b - a;
    changed.add(it.offset, it.offset + it.length);
  }
  let marked: number | undefined;
  const r = await replica.rollBackTo(point, 'machine m has failed over', async (p) => {
    marked = p;
  });
  return { replica, disk, atPoint, point, r, marked, changedBytes };
}

test('rollback in place: exact state at the point, cost independent of the disk size', async () => {
  const small = await scenario(GiB, 'one-gib');
  const big = await scenario(100 * GiB, 'hundred-gib');
  for (const s of [small, big]) {
    assert.equal(s.marked, s.point, 'the marker callback runs first, with the point');
    assert.equal(s.r.point, s.point);
    assert.ok(read(s.disk, 0, 64 * MiB).equals(s.atPoint), 'the disk is not as it was at the point');
    assert.equal(s.r.bytesWritten, s.changedBytes, 'bytes written = distinct bytes changed after the point');
    assert.ok(s.r.bytesWritten <= s.r.journalBytesAfter);
    // Sparse stays sparse: nothing beyond what the workload touched is allocated.
    assert.ok(statSync(s.disk).blocks * 512 < 80 * MiB);
    await assert.rejects(
      s.replica.applyBatch([{ type: 'marker', seq: 10_000, kind: 'crash', tag: '', time: 1 }]),
      /machine m has failed over/,
    );
    assert.throws(() => s.replica.openView('latest'), /machine m has failed over/);
  }
  // The same journal after the same point: the same bytes, whatever the disk size.
  assert.equal(small.r.bytesWritten, big.r.bytesWritten);
  assert.equal(small.r.journalBytesAfter, big.r.journalBytesAfter);
  // Redone (as after a crash in the middle): the same result, nothing else changes.
  const again = await small.replica.rollBackTo(small.point, 'x', async () => undefined);
  assert.equal(again.bytesWritten, small.r.bytesWritten);
  assert.ok(read(small.disk, 0, 64 * MiB).equals(small.atPoint));
  await small.replica.close();
  await big.replica.close();
});

test('rollback refuses a point it cannot recover, and changes nothing', async () => {
  const dir = join(root, 'refuse');
  mkdirSync(dir);
  const disk = join(dir, 'disk-1.img');
  writeFileSync(disk, '');
  truncateSync(disk, 64 * MiB);
  const replica = await Replica.open({
    stateDir: dir,
    retentionDir: join(dir, 'retention'),
    disks: [{ id: 1, path: disk }],
  });
  const w = workload(3, 20, 1);
  await replica.applyBatch(w.items);
  const before = read(disk, 0, 64 * MiB);
  let called = false;
  await assert.rejects(
    replica.rollBackTo(w.next + 5, 'r', async () => {
      called = true;
    }),
    { message: `recovery point ${w.next + 5} is newer than the latest applied seq ${w.next - 1}` },
  );
  assert.equal(called, false, 'no marker for a refused point');
  assert.ok(read(disk, 0, 64 * MiB).equals(before));
  await replica.close();
});
