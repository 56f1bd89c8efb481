// Retention by time: whole segments older than the window go, every second of the
// window stays choosable and exact, views hold back pruning until they are older than
// the window, and the window option is validated.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { type Logger, pino } from 'pino';
import { resolvePoint } from '../../src/master-target/point-spec.js';
import { Replica, type ReplicaItem } from '../../src/master-target/replica.js';
import { parseRetentionHours, pruneReplica, RetentionPruner } from '../../src/master-target/retention.js';

const DISK = 256 * 1024;
const BLOCK = 4096;
const MIN = 60_000;

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-retention-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function logs(): { logger: Logger; lines: { msg: string; [k: string]: unknown }[] } {
  const lines: { msg: string }[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function openReplica(): Promise<{ replica: Replica; retentionDir: string }> {
  const dir = join(root, `r-${n++}`);
  mkdirSync(dir);
  const path = join(dir, 'disk-1.img');
  writeFileSync(path, '');
  truncateSync(path, DISK);
  const retentionDir = join(dir, 'retention');
  // Small segments: about four changes each, so pruning has whole segments to take.
  const replica = await Replica.open({
    stateDir: join(dir, 'state'),
    retentionDir,
    disks: [{ id: 1, path }],
    segmentBytes: 4 * (BLOCK + 48),
  });
  return { replica, retentionDir };
}

/**
 * One 4 KiB overwrite a minute for `minutes` minutes ending at `end`, one batch each,
 * a bookmark every ten minutes. Returns the disk's image after each seq.
 */
async function replicate(replica: Replica, end: number, minutes: number): Promise<Map<number, Buffer>> {
  const image = Buffer.alloc(DISK);
  const images = new Map<number, Buffer>([[0, Buffer.from(image)]]);
  let seq = 1;
  for (let m = minutes; m > 0; m--) {
    const time = end - m * MIN;
    const items: ReplicaItem[] = [];
    const data = randomBytes(BLOCK);
    const offset = (seq % 8) * BLOCK; // overwrites: before-images hold data
    items.push({ type: 'write', seq, disk: 1, offset, length: BLOCK, data, time });
    data.copy(image, offset);
    images.set(seq++, Buffer.from(image));
    if (m % 10 === 0) {
      items.push({ type: 'marker', seq, kind: 'app', tag: `t-${m}`, time });
      images.set(seq++, Buffer.from(image));
    }
    await replica.applyBatch(items);
  }
  return images;
}

async function viewEquals(replica: Replica, point: number, expected: Buffer): Promise<boolean> {
  const v = replica.openView(point);
  try {
    return (await v.read(1, 0, DISK)).equals(expected);
  } finally {
    v.close();
  }
}

describe('retention by time', () => {
  it('prunes whole segments older than the window; every second of the window stays choosable', async () => {
    const { replica, retentionDir } = await openReplica();
    const now = Date.now();
    const images = await replicate(replica, now, 120);
    const before = readdirSync(retentionDir).length;
    const windowMs = 30 * MIN;
    const { logger, lines } = logs();
    const r = await pruneReplica('m1', replica, { windowMs, now: () => now, logger });
    assert.ok(r.segments > 0 && r.segments < before, `pruned ${r.segments} of ${before} segments`);
    assert.equal(readdirSync(retentionDir).length, before - r.segments);
    assert.ok(lines.some((l) => l.msg === 'retention: pruned undo-journal segments older than the window'));
    // Nothing much older than the window is left: the oldest segment holds the window's start.
    const startPoint = replica.pointAtTime(now - windowMs)!;
    assert.ok(replica.oldestPoint < startPoint);
    assert.ok(replica.oldestPoint >= startPoint - 8, 'at most about one segment before the window');
    // Every second of the window resolves, by ISO time, to a viewable point, and each
    // such point's view is exact.
    const points = new Set<number>();
    for (let t = now - windowMs; t <= now; t += 1000) {
      const seq = resolvePoint(new Date(t).toISOString(), replica);
      assert.ok(seq >= replica.oldestPoint, `second ${new Date(t).toISOString()} resolves to ${seq}`);
      points.add(seq);
    }
    for (const p of points) assert.ok(await viewEquals(replica, p, images.get(p)!), `view of ${p}`);
    // Listed points are only those still viewable.
    assert.ok(replica.recoveryPoints().every((p) => p.seq > replica.oldestPoint));
    // A second pass has nothing more to take; neither has a pass after a restart.
    assert.equal((await pruneReplica('m1', replica, { windowMs, now: () => now, logger })).segments, 0);
    await replica.close();
  });

  it('an open view holds back pruning until it is older than the window, then is closed with a reason', async () => {
    const { replica } = await openReplica();
    const now = Date.now();
    const images = await replicate(replica, now, 60);
    const old = 5;
    const view = replica.openView(old);
    const windowMs = 10 * MIN;
    const { logger, lines } = logs();
    // Young view: pruning keeps what it needs.
    const r1 = await pruneReplica('m1', replica, { windowMs, now: () => now, logger });
    assert.equal(r1.closedViews, 0);
    assert.ok(replica.oldestPoint <= old);
    assert.ok((await view.read(1, 0, DISK)).equals(images.get(old)!));
    // The same view, once open for longer than the window: closed, and pruning goes on.
    // (From the real time the view opened: replicating may take a while on a busy machine.)
    const later = Date.now() + windowMs + 1000;
    const r2 = await pruneReplica('m1', replica, { windowMs, now: () => later, logger });
    assert.equal(r2.closedViews, 1);
    assert.ok(r2.segments > 0);
    assert.ok(replica.oldestPoint > old);
    assert.equal(view.isClosed, true);
    await assert.rejects(
      view.read(1, 0, 4096),
      /view of point 5 is closed: closed by retention: open for longer/,
    );
    const warn = lines.find((l) => /^retention: view of point 5 closed by retention/.test(l.msg));
    assert.ok(warn, 'the closing is logged with its reason');
    // A view that holds nothing back (of the point at the window's start or later) stays
    // open, however long.
    const latest = replica.openView('latest');
    const r3 = await pruneReplica('m1', replica, { windowMs, now: () => later + 100 * windowMs, logger });
    assert.equal(r3.closedViews, 0);
    assert.equal(latest.isClosed, false);
    const keep = latest;
    keep.close();
    await replica.close();
  });

  it('the pruner runs on a timer and stops cleanly', async () => {
    const { replica } = await openReplica();
    await replicate(replica, Date.now(), 40);
    const segments = replica.journal.segmentCount;
    const { logger } = logs();
    const pruner = new RetentionPruner(() => [['m1', replica]], {
      windowMs: 5 * MIN,
      intervalMs: 20,
      logger,
    });
    pruner.start();
    const deadline = Date.now() + 5000;
    while (replica.journal.segmentCount === segments) {
      assert.ok(Date.now() < deadline, 'the timer never pruned');
      await new Promise((r) => setTimeout(r, 20));
    }
    await pruner.stop();
    await replica.close();
    assert.ok(new RetentionPruner(() => [], { windowMs: 24 * 3_600_000, logger }).intervalMs === 60_000);
  });

  it('--retention-hours takes a positive number of hours and names a bad value', () => {
    assert.equal(parseRetentionHours('24'), 24);
    assert.equal(parseRetentionHours('0.5'), 0.5);
    for (const bad of ['0', '-1', 'a day', '1e3', '', '87601']) {
      assert.throws(() => parseRetentionHours(bad), {
        message: `--retention-hours '${bad}' is not a number of hours above 0 and at most 87600`,
      });
    }
  });
});
