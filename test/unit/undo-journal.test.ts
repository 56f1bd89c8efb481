import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Logger } from 'pino';
import {
  type BeforeImageRecord,
  JOURNAL_HEADER_SIZE,
  type JournalRecord,
  JournalRecordType,
  type MarkerRecord,
} from '../../src/master-target/journal-record.js';
import {
  INDEX_REGION,
  isZeroBeforeImage,
  markerKind,
  segmentFileName,
  UndoJournal,
} from '../../src/master-target/undo-journal.js';
import { mountTmpfs, unmountTmpfs } from '../support/tmpfs.js';

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-undo-journal-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const freshDir = () => join(root, `j-${n++}`);

function bi(seq: number, offset: number, length: number, fill?: number, disk = 1): BeforeImageRecord {
  return {
    type: JournalRecordType.BeforeImage,
    seq,
    disk,
    time: 1000 + seq,
    offset,
    length,
    beforeImage: fill === undefined ? null : Buffer.alloc(length, fill),
  };
}

function marker(seq: number, kind: 'crash' | 'app', tag = ''): MarkerRecord {
  return { type: JournalRecordType.Marker, seq, time: 1000 + seq, kind, tag };
}

function warnings(): { logger: Logger; seen: { obj: Record<string, unknown>; msg: string }[] } {
  const seen: { obj: Record<string, unknown>; msg: string }[] = [];
  const noop = () => undefined;
  const logger = {
    warn: (obj: Record<string, unknown>, msg: string) => seen.push({ obj, msg }),
    error: noop,
    info: noop,
    debug: noop,
  } as unknown as Logger;
  return { logger, seen };
}

const segs = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.ruj'))
    .sort();
const seqs = (j: UndoJournal) => j.entriesAfter(0).map((e) => e.seq);
const size = (len: number) => JOURNAL_HEADER_SIZE + len;

describe('UndoJournal', () => {
  it('names segments after their first seq, zero-padded to 20 digits', () => {
    assert.equal(segmentFileName(1), 'undo-00000000000000000001.ruj');
    assert.ok(segmentFileName(9) < segmentFileName(10));
  });

  it('appends a batch, indexes it and keeps it across a reopen', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    assert.equal(j.lastSeq, 0);
    assert.equal(j.firstSeq, undefined);
    assert.equal(j.segmentCount, 0);
    await j.append([bi(1, 0, 100, 0xaa), bi(2, 50, 100), marker(3, 'app', 'tag'), bi(5, 4096, 10, 7, 2)]);
    assert.equal(j.lastSeq, 5);
    assert.equal(j.firstSeq, 1);
    assert.deepEqual(segs(dir), [segmentFileName(1)]);
    assert.equal(statSync(join(dir, segmentFileName(1))).size, size(100) + size(0) + size(3) + size(10));
    await j.close();

    const again = await UndoJournal.open(dir);
    assert.deepEqual(seqs(again), [1, 2, 3, 5]);
    const found = again.overlapping(1, 60, 10, 0);
    assert.deepEqual(
      found.map((e) => e.seq),
      [2, 1],
      'highest seq first',
    );
    assert.ok(isZeroBeforeImage(found[0]));
    assert.equal(await again.readBeforeImage(found[0]), null);
    assert.deepEqual(await again.readBeforeImage(found[1]), Buffer.alloc(100, 0xaa));
    assert.deepEqual(
      again.overlapping(1, 60, 10, 1).map((e) => e.seq),
      [2],
      'only records after the point',
    );
    assert.deepEqual(again.overlapping(1, 150, 10, 0), []);
    assert.deepEqual(
      again.overlapping(2, 0, 8192, 0).map((e) => e.seq),
      [5],
    );
    const m = again.markers();
    assert.deepEqual(
      m.map((e) => [e.seq, markerKind(e), e.tag, e.time]),
      [[3, 'app', 'tag', 1003]],
    );
    assert.equal(again.entry(3)?.seq, 3);
    assert.equal(again.entry(4), undefined);
    await again.close();
  });

  it('finds records by 1 MiB region, once each even when they span several', async () => {
    const j = await UndoJournal.open(freshDir());
    await j.append([
      bi(1, INDEX_REGION - 10, 3 * INDEX_REGION, 1), // regions 0..3
      bi(2, 5 * INDEX_REGION, 100, 2),
      bi(3, 2 * INDEX_REGION + 5, 10, 3),
    ]);
    assert.deepEqual(
      j.overlapping(1, 0, 8 * INDEX_REGION, 0).map((e) => e.seq),
      [3, 2, 1],
    );
    assert.deepEqual(
      j.overlapping(1, 3 * INDEX_REGION, INDEX_REGION, 0).map((e) => e.seq),
      [1],
    );
    assert.deepEqual(j.overlapping(1, 4 * INDEX_REGION, INDEX_REGION, 0), [], 'region 4 is empty');
    assert.deepEqual(j.overlapping(1, INDEX_REGION - 11, 1, 0), [], 'the byte before record 1');
    assert.deepEqual(
      j.overlapping(1, INDEX_REGION - 10, 1, 0).map((e) => e.seq),
      [1],
    );
    await j.close();
  });

  it('refuses records out of order and leaves the file unchanged', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([bi(5, 0, 10, 1)]);
    await assert.rejects(
      j.append([bi(6, 0, 10, 1), bi(6, 0, 10, 1)]),
      /undo journal: sequence 6 does not follow 6/,
    );
    await assert.rejects(j.append([bi(4, 0, 10, 1)]), /undo journal: sequence 4 does not follow 5/);
    await assert.rejects(
      j.append([{ ...bi(7, 0, 10, 1), more: true }, bi(8, 10, 10, 1)]),
      /change seq 7 is incomplete: its next chunk is missing/,
    );
    await assert.rejects(j.append([{ ...bi(7, 0, 10, 1), more: true }]), /change seq 7 ends with a chunk/);
    assert.equal(j.lastSeq, 5);
    assert.equal(statSync(join(dir, segmentFileName(5))).size, size(10));
    await j.append([{ ...bi(7, 0, 10, 1), more: true }, bi(7, 10, 5, 2), bi(8, 0, 1, 3)]);
    assert.deepEqual(seqs(j), [5, 7, 7, 8]);
    await j.close();
  });

  it('starts a new segment once the current one reaches segmentBytes', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir, { segmentBytes: 300 });
    for (let s = 1; s <= 6; s++) await j.append([bi(s, s * 10, 100, s)]);
    // 148 bytes per record: a segment takes a batch while it is below 300 bytes.
    assert.deepEqual(segs(dir), [segmentFileName(1), segmentFileName(4)]);
    await j.close();
    const again = await UndoJournal.open(dir, { segmentBytes: 300 });
    assert.deepEqual(seqs(again), [1, 2, 3, 4, 5, 6]);
    for (let s = 1; s <= 6; s++) {
      assert.deepEqual(await again.readBeforeImage(again.entry(s)!), Buffer.alloc(100, s));
    }
    await again.close();
  });

  it('reads records through the index with their offsets', async () => {
    const j = await UndoJournal.open(freshDir(), { segmentBytes: 1 << 20 });
    const recs: JournalRecord[] = [];
    for (let s = 1; s <= 200; s++) recs.push(bi(s, s * 512, 512, s & 0xff));
    await j.append(recs);
    for (let s = 1; s <= 200; s += 17) {
      assert.deepEqual(await j.readBeforeImage(j.entry(s)!), Buffer.alloc(512, s & 0xff));
    }
    await j.close();
  });

  it('writes a batch bigger than one write group from an async generator', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    const chunk = 6 * 1024 * 1024;
    const parts = [randomBytes(chunk), randomBytes(chunk), randomBytes(chunk)];
    async function* gen(): AsyncGenerator<JournalRecord> {
      for (let i = 0; i < 3; i++) yield { ...bi(1, i * chunk, chunk), beforeImage: parts[i], more: i < 2 };
      yield marker(2, 'crash');
    }
    await j.append(gen());
    const found = j.overlapping(1, 0, 3 * chunk, 0);
    assert.equal(found.length, 3);
    for (const e of found) assert.deepEqual(await j.readBeforeImage(e), parts[e.offset / chunk]);
    await j.close();
  });

  it('rolls a failed batch back: a throwing generator leaves nothing behind', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([bi(1, 0, 10, 1)]);
    const big = 9 * 1024 * 1024;
    async function* gen(): AsyncGenerator<JournalRecord> {
      // Two records pass the 16 MiB write threshold, so bytes reach the file first.
      yield { ...bi(2, 0, big), beforeImage: Buffer.alloc(big, 1), more: true };
      yield { ...bi(2, big, big), beforeImage: Buffer.alloc(big, 2), more: true };
      throw new Error('source failed');
    }
    await assert.rejects(j.append(gen()), /^Error: source failed$/);
    assert.equal(j.lastSeq, 1);
    assert.equal(statSync(join(dir, segmentFileName(1))).size, size(10));
    assert.deepEqual(j.overlapping(1, 0, 2 * big, 1), []);
    await j.append([bi(2, 0, 10, 3)]);
    await j.close();
    const again = await UndoJournal.open(dir);
    assert.deepEqual(seqs(again), [1, 2]);
    await again.close();
  });

  it('removes a segment created by a failed batch', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir, { segmentBytes: 10 });
    await j.append([bi(1, 0, 10, 1)]);
    async function* gen(): AsyncGenerator<JournalRecord> {
      yield bi(2, 0, 10, 1);
      throw new Error('nope');
    }
    await assert.rejects(j.append(gen()), /nope/);
    assert.deepEqual(segs(dir), [segmentFileName(1)]);
    await j.append([bi(3, 0, 10, 1)]);
    assert.deepEqual(segs(dir), [segmentFileName(1), segmentFileName(3)]);
    await j.close();
  });

  it('cuts a torn tail of the last segment on open', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([bi(1, 0, 100, 1), bi(2, 0, 100, 2), bi(3, 0, 100, 3)]);
    await j.close();
    const path = join(dir, segmentFileName(1));
    truncateSync(path, 2 * size(100) + 60); // in the middle of record 3's payload
    const w = warnings();
    const again = await UndoJournal.open(dir, { logger: w.logger });
    assert.deepEqual(seqs(again), [1, 2]);
    assert.equal(again.lastSeq, 2);
    assert.equal(statSync(path).size, 2 * size(100));
    assert.equal(w.seen.length, 1);
    assert.equal(w.seen[0].msg, 'undo journal: cutting torn tail');
    assert.deepEqual(w.seen[0].obj, {
      segment: path,
      offset: 2 * size(100),
      bytesCut: 60,
      reason: 'truncated record payload',
    });
    await again.append([bi(3, 0, 100, 9)]);
    assert.deepEqual(await again.readBeforeImage(again.entry(3)!), Buffer.alloc(100, 9));
    await again.close();
  });

  it('cuts garbage after the last record (crc mismatch in the tail)', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([bi(1, 0, 100, 1), bi(2, 0, 100, 2)]);
    await j.close();
    const path = join(dir, segmentFileName(1));
    const bytes = readFileSync(path);
    bytes[size(100) + JOURNAL_HEADER_SIZE + 5] ^= 0xff; // record 2's payload
    writeFileSync(path, bytes);
    const w = warnings();
    const again = await UndoJournal.open(dir, { logger: w.logger });
    assert.deepEqual(seqs(again), [1]);
    assert.equal(w.seen[0].obj.reason, 'crc mismatch');
    await again.close();
  });

  it('cuts a change whose last chunk is missing back to its first chunk', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([
      bi(1, 0, 10, 1),
      { ...bi(2, 0, 100, 2), more: true },
      { ...bi(2, 100, 100, 3), more: true },
      bi(2, 200, 100, 4),
    ]);
    await j.close();
    const path = join(dir, segmentFileName(1));
    truncateSync(path, size(10) + 2 * size(100)); // the third chunk never reached the disk
    const w = warnings();
    const again = await UndoJournal.open(dir, { logger: w.logger });
    assert.deepEqual(seqs(again), [1]);
    assert.equal(statSync(path).size, size(10));
    assert.equal(w.seen[0].obj.reason, 'change seq 2 is incomplete');
    await again.close();
  });

  it('never cuts a record at or below durableThrough: that is damage, named and kept', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([bi(1, 0, 100, 1), bi(2, 0, 100, 2)]);
    await j.close();
    const path = join(dir, segmentFileName(1));
    truncateSync(path, size(100) + 10);
    const again = await UndoJournal.open(dir, { durableThrough: 2 });
    assert.equal(statSync(path).size, size(100) + 10, 'nothing was cut');
    assert.deepEqual(seqs(again), [1]);
    assert.equal(again.lastSeq, 2);
    assert.deepEqual(
      again.damage.map((d) => [d.path, d.offset, d.reason, d.afterSeq, d.throughSeq]),
      [[path, size(100), 'truncated record header', 1, 2]],
    );
    assert.equal(
      again.damageFor(1),
      `recovery point 1 needs undo-journal records that cannot be used: undo journal corrupt: ${path} at offset ${size(100)}: truncated record header (records after seq 1 through seq 2 cannot be read)`,
    );
    assert.equal(again.damageFor(2), undefined);
    // Never appended after bytes a reader cannot get past: a new segment starts.
    await again.append([bi(3, 0, 100, 3)]);
    assert.deepEqual(segs(dir), [segmentFileName(1), segmentFileName(3)]);
    await again.close();
    const third = await UndoJournal.open(dir, { durableThrough: 3 });
    assert.deepEqual(seqs(third), [1, 3]);
    assert.equal(third.damage.length, 1);
    // Pruning the damaged segment forgets the damage.
    await third.pruneBefore(3);
    assert.deepEqual(third.damage, []);
    await third.close();
  });

  it('removes an empty last segment on open', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir);
    await j.append([bi(1, 0, 10, 1)]);
    await j.close();
    writeFileSync(join(dir, segmentFileName(2)), '');
    const again = await UndoJournal.open(dir);
    assert.deepEqual(segs(dir), [segmentFileName(1)]);
    await again.append([bi(2, 0, 10, 1)]);
    assert.deepEqual(segs(dir), [segmentFileName(1)]);
    await again.close();
  });

  it('opens when a segment other than the last is corrupt, naming it; only points before it are refused', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir, { segmentBytes: 100 });
    for (let s = 1; s <= 3; s++) await j.append([bi(s, 0, 100, s)]);
    await j.close();
    const path = join(dir, segmentFileName(2));
    const bytes = readFileSync(path);
    bytes[12] ^= 1; // seq field of its only record
    writeFileSync(path, bytes);
    const again = await UndoJournal.open(dir, { segmentBytes: 100 });
    assert.deepEqual(seqs(again), [1, 3]);
    assert.equal(again.firstSeq, 1);
    assert.equal(
      again.damageFor(0),
      `recovery point 0 needs undo-journal records that cannot be used: undo journal corrupt: ${path} at offset 0: header crc mismatch (records after seq 1 through seq 2 cannot be read)`,
    );
    assert.match(again.damageFor(1)!, /^recovery point 1 needs/);
    assert.equal(again.damageFor(2), undefined);
    await again.close();
  });

  it('reading a corrupt before-image names the segment and offset', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir, { segmentBytes: 100 });
    for (let s = 1; s <= 3; s++) await j.append([bi(s, 0, 100, s)]);
    await j.close();
    const path = join(dir, segmentFileName(1));
    const bytes = readFileSync(path);
    bytes[JOURNAL_HEADER_SIZE + 50] ^= 0x40; // payload of a closed segment: found only when read
    writeFileSync(path, bytes);
    const again = await UndoJournal.open(dir, { segmentBytes: 100 });
    await assert.rejects(
      again.readBeforeImage(again.entry(1)!),
      new Error(`undo journal corrupt: ${path} at offset 0: crc mismatch`),
    );
    assert.deepEqual(await again.readBeforeImage(again.entry(2)!), Buffer.alloc(100, 2));
    await again.close();
  });

  it('prunes whole segments only, oldest first, and forgets their index entries', async () => {
    const dir = freshDir();
    const j = await UndoJournal.open(dir, { segmentBytes: 200 });
    // Two records per segment: [1,2] [3,4] [5,6]
    for (let s = 1; s <= 6; s++) await j.append([bi(s, 0, 100, s)]);
    assert.equal(j.segmentCount, 3);
    assert.deepEqual(await j.pruneBefore(4), { segments: 1, bytes: 2 * size(100) });
    assert.deepEqual(segs(dir), [segmentFileName(3), segmentFileName(5)]);
    assert.equal(j.firstSeq, 3);
    assert.deepEqual(
      j.overlapping(1, 0, 100, 0).map((e) => e.seq),
      [6, 5, 4, 3],
    );
    assert.deepEqual(await j.pruneBefore(4), { segments: 0, bytes: 0 }, 'segment [3,4] still holds 4');
    assert.deepEqual(await j.pruneBefore(100), { segments: 2, bytes: 4 * size(100) });
    assert.deepEqual(segs(dir), []);
    assert.equal(j.firstSeq, undefined);
    assert.equal(j.lastSeq, 6);
    assert.deepEqual(j.overlapping(1, 0, 100, 0), []);
    await j.append([bi(7, 0, 100, 7)]);
    assert.deepEqual(segs(dir), [segmentFileName(7)]);
    await j.close();
  });

  it('finds the latest record at or before a time', async () => {
    const j = await UndoJournal.open(freshDir(), { segmentBytes: 100 });
    for (let s = 1; s <= 5; s++) await j.append([bi(s, 0, 100, s)]); // times 1001..1005
    assert.equal(j.latestAtOrBefore(1003, 99), 3);
    assert.equal(j.latestAtOrBefore(1003.5, 99), 3);
    assert.equal(j.latestAtOrBefore(99999, 4), 4, 'not beyond maxSeq');
    assert.equal(j.latestAtOrBefore(1000, 99), undefined);
    await j.close();
  });

  it('runs a failed append (ENOSPC) back and reports a full retention volume', async (t) => {
    const mnt = freshDir();
    if (!mountTmpfs(mnt, '256k')) {
      t.skip('cannot mount a tmpfs here');
      return;
    }
    try {
      const j = await UndoJournal.open(mnt, { segmentBytes: 1 << 30 });
      let seq = 0;
      let err: Error | undefined;
      while (!err) {
        try {
          await j.append([bi(++seq, 0, 50_000, seq & 0xff), bi(++seq, 0, 50_000, seq & 0xff)]);
        } catch (e) {
          err = e as Error;
        }
      }
      assert.match(err.message, /^retention volume full: cannot append to the undo journal in .*: ENOSPC/);
      const kept = seq - 2;
      assert.equal(j.lastSeq, kept);
      const path = join(mnt, segmentFileName(1));
      assert.equal(statSync(path).size, kept * size(50_000), 'the partial batch was cut back');
      await j.close();
      const again = await UndoJournal.open(mnt);
      assert.equal(again.lastSeq, kept);
      await again.close();
    } finally {
      unmountTmpfs(mnt);
    }
    assert.ok(!existsSync(join(mnt, segmentFileName(1))));
  });
});
