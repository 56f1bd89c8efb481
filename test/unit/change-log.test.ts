import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Logger } from 'pino';
import { ChangeLog, type ChangeLogOptions, segmentName } from '../../src/changelog/change-log.js';
import { HEADER_SIZE, type LogRecord, RecordType } from '../../src/changelog/record.js';

let root: string;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-changelog-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function freshDir(): string {
  return join(root, `log-${n++}`);
}

const PAYLOAD = 100;
const REC = HEADER_SIZE + PAYLOAD; // 148 bytes on disk
/** Two records per segment: the second write starts below 200 bytes, the third rotates. */
const TWO_PER_SEGMENT: ChangeLogOptions = { maxBytes: 1 << 30, segmentBytes: 200 };

function payloadFor(i: number): Buffer {
  return Buffer.alloc(PAYLOAD, i & 0xff);
}

function capture(): { logger: Logger; warnings: { obj: Record<string, unknown>; msg: string }[] } {
  const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
  const noop = () => undefined;
  const logger = {
    warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }),
    error: noop,
    info: noop,
    debug: noop,
  } as unknown as Logger;
  return { logger, warnings };
}

async function appendOne(log: ChangeLog, i: number, payload = payloadFor(i)): Promise<number> {
  const { seq, written } = log.append({
    type: RecordType.Write,
    flags: 0,
    disk: 1,
    time: 1000 + i,
    offset: i * 4096,
    length: payload.length,
    payload,
  });
  await written;
  return seq;
}

async function appendMany(log: ChangeLog, count: number, from = 1): Promise<number[]> {
  const out: number[] = [];
  for (let i = from; i < from + count; i++) out.push(await appendOne(log, i));
  return out;
}

async function collect(log: ChangeLog, from?: number, to?: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const r of log.records(from, to)) out.push({ ...r, payload: Buffer.from(r.payload) });
  return out;
}

async function seqsOf(log: ChangeLog, from?: number, to?: number): Promise<number[]> {
  return (await collect(log, from, to)).map((r) => r.seq);
}

function segFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.rcl'))
    .sort();
}

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) out[f] = readFileSync(join(dir, f)).toString('base64');
  return out;
}

describe('segmentName', () => {
  it('zero-pads the first sequence to 20 digits so names sort numerically', () => {
    assert.equal(segmentName(1), 'seg-00000000000000000001.rcl');
    assert.equal(segmentName(Number.MAX_SAFE_INTEGER), 'seg-00009007199254740991.rcl');
    assert.ok(segmentName(9) < segmentName(10));
  });
});

describe('ChangeLog', () => {
  it('opens an empty log in a new directory', async () => {
    const dir = freshDir();
    const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    assert.equal(log.nextSeq, 1);
    assert.equal(log.lastWritten, 0);
    assert.equal(log.trimmedThrough, 0);
    assert.equal(log.bytes, 0);
    assert.equal(log.segmentCount, 0);
    assert.equal(log.maxBytes, 1 << 30);
    assert.ok(existsSync(dir));
    assert.deepEqual(await collect(log), []);
    await log.close();
  });

  it('appends records with increasing sequence numbers and reads them back', async () => {
    const log = await ChangeLog.open(freshDir(), { maxBytes: 1 << 20, segmentBytes: 1 << 20 });
    const s1 = await appendOne(log, 1);
    const s2 = await appendOne(log, 2, Buffer.alloc(0));
    const s3 = await appendOne(log, 3);
    assert.deepEqual([s1, s2, s3], [1, 2, 3]);
    assert.equal(log.nextSeq, 4);
    assert.equal(log.lastWritten, 3);
    assert.equal(log.bytes, REC + HEADER_SIZE + REC);
    const recs = await collect(log);
    assert.deepEqual(
      recs.map((r) => [r.seq, r.type, r.disk, r.time, r.offset, r.length, r.payloadLength]),
      [
        [1, RecordType.Write, 1, 1001, 4096, 100, 100],
        [2, RecordType.Write, 1, 1002, 8192, 0, 0],
        [3, RecordType.Write, 1, 1003, 12288, 100, 100],
      ],
    );
    assert.deepEqual(recs[0].payload, payloadFor(1));
    assert.deepEqual(recs[2].payload, payloadFor(3));
    await log.close();
  });

  it('appendNow writes at once when nothing is queued, and steps aside otherwise', async () => {
    const dir = freshDir();
    const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    const rec = (i: number) => ({
      type: RecordType.Write as const,
      flags: 0,
      disk: 1,
      time: 1000 + i,
      offset: i * 4096,
      length: PAYLOAD,
      payload: payloadFor(i),
    });
    // No segment open yet: the first record must go through append(), which creates one.
    assert.equal(log.appendNow(rec(1)), undefined);
    assert.equal(await appendOne(log, 1), 1);
    await new Promise((r) => setImmediate(r));
    assert.equal(log.appendNow(rec(2)), 2);
    assert.equal(log.lastWritten, 2, 'written before it returns');
    // The segment is full (two records): rotation is append()'s job.
    assert.equal(log.appendNow(rec(3)), undefined);
    assert.equal(log.nextSeq, 3, 'a refused appendNow hands out no sequence');
    const queued = log.append(rec(3));
    // While a batch is queued or being written, appendNow would overtake it.
    assert.equal(log.appendNow(rec(4)), undefined);
    await queued.written;
    await new Promise((r) => setImmediate(r));
    assert.equal(log.appendNow(rec(4)), 4);
    assert.equal(
      log.appendNow({ ...rec(5), payload: Buffer.alloc(65 * 1024) }),
      undefined,
      'large payloads go async',
    );
    assert.deepEqual(await seqsOf(log), [1, 2, 3, 4]);
    const recs = await collect(log);
    assert.deepEqual(recs[1].payload, payloadFor(2));
    assert.deepEqual(recs[3].payload, payloadFor(4));
    await log.close();
    const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    assert.deepEqual(await seqsOf(again), [1, 2, 3, 4]);
    assert.equal(again.nextSeq, 5);
    await again.close();
  });

  it('concurrent appends are written in sequence order', async () => {
    const dir = freshDir();
    const log = await ChangeLog.open(dir, { maxBytes: 1 << 30, segmentBytes: 1 << 30 });
    const appended = Array.from({ length: 50 }, (_, i) =>
      log.append({
        type: RecordType.Zero,
        flags: 0,
        disk: 0,
        time: 0,
        offset: i,
        length: 1,
        payload: Buffer.alloc(0),
      }),
    );
    assert.deepEqual(
      appended.map((a) => a.seq),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    assert.equal(log.bytes, 50 * HEADER_SIZE, 'queued bytes count before they are written');
    await Promise.all(appended.map((a) => a.written));
    assert.equal(log.lastWritten, 50);
    assert.deepEqual(
      (await collect(log)).map((r) => r.offset),
      Array.from({ length: 50 }, (_, i) => i),
    );
    await log.close();
    assert.equal(statSync(join(dir, segmentName(1))).size, 50 * HEADER_SIZE);
  });

  it('close waits for queued appends', async () => {
    const dir = freshDir();
    const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    for (let i = 1; i <= 5; i++) {
      log.append({
        type: RecordType.Trim,
        flags: 0,
        disk: 2,
        time: 0,
        offset: 0,
        length: 1,
        payload: Buffer.alloc(0),
      });
    }
    await log.close();
    const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    assert.deepEqual(await seqsOf(again), [1, 2, 3, 4, 5]);
    await again.close();
  });

  it('keeps sequences and records across reopen', async () => {
    const dir = freshDir();
    const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    await appendMany(log, 3);
    await log.sync();
    await log.close();
    const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    assert.equal(again.nextSeq, 4);
    assert.equal(again.lastWritten, 3);
    assert.equal(again.bytes, 3 * REC);
    assert.deepEqual(await seqsOf(again), [1, 2, 3]);
    assert.equal(await appendOne(again, 4), 4);
    assert.deepEqual(await seqsOf(again), [1, 2, 3, 4]);
    await again.close();
  });

  it('starts a new segment, named after its first sequence, once the current one is full', async () => {
    const dir = freshDir();
    const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    await appendMany(log, 5);
    assert.equal(log.segmentCount, 3);
    assert.deepEqual(segFiles(dir), [segmentName(1), segmentName(3), segmentName(5)]);
    assert.equal(statSync(join(dir, segmentName(1))).size, 2 * REC);
    assert.equal(statSync(join(dir, segmentName(3))).size, 2 * REC);
    assert.equal(statSync(join(dir, segmentName(5))).size, REC);
    assert.equal(log.bytes, 5 * REC);
    assert.deepEqual(await seqsOf(log), [1, 2, 3, 4, 5]);
    await log.close();

    const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
    assert.equal(again.segmentCount, 3);
    assert.equal(again.nextSeq, 6);
    assert.equal(again.bytes, 5 * REC);
    await appendMany(again, 2, 6); // 6 goes into seg 5, 7 starts seg 7
    assert.deepEqual(segFiles(dir), [segmentName(1), segmentName(3), segmentName(5), segmentName(7)]);
    assert.deepEqual(await seqsOf(again), [1, 2, 3, 4, 5, 6, 7]);
    await again.close();
  });

  it('records(from, to) returns exactly the requested range', async () => {
    const log = await ChangeLog.open(freshDir(), TWO_PER_SEGMENT);
    await appendMany(log, 7);
    assert.deepEqual(await seqsOf(log, 1), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(await seqsOf(log, 2, 4), [2, 3, 4]);
    assert.deepEqual(await seqsOf(log, 3, 3), [3]);
    assert.deepEqual(await seqsOf(log, 4, 5), [4, 5]);
    assert.deepEqual(await seqsOf(log, 6), [6, 7]);
    assert.deepEqual(await seqsOf(log, 0, 2), [1, 2]);
    assert.deepEqual(await seqsOf(log, 7, 100), [7]);
    assert.deepEqual(await seqsOf(log, 8), []);
    assert.deepEqual(await seqsOf(log, 5, 4), []);
    const [r] = await collect(log, 6, 6);
    assert.deepEqual(r.payload, payloadFor(6));
    await log.close();
  });

  it('records() can stop early without leaking readers', async () => {
    const log = await ChangeLog.open(freshDir(), TWO_PER_SEGMENT);
    await appendMany(log, 5);
    for (let i = 0; i < 20; i++) {
      for await (const r of log.records(3)) {
        assert.equal(r.seq, 3);
        break;
      }
    }
    await log.close();
  });

  describe('torn tail', () => {
    it('a last segment cut mid-record is truncated to the last whole record on reopen', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 4);
      await log.close();
      const last = join(dir, segmentName(3));
      truncateSync(last, REC + 70); // record 4 loses part of its payload

      const { logger, warnings } = capture();
      const again = await ChangeLog.open(dir, { ...TWO_PER_SEGMENT, logger });
      assert.equal(statSync(last).size, REC);
      assert.equal(again.nextSeq, 4);
      assert.equal(again.lastWritten, 3);
      assert.equal(again.bytes, 3 * REC);
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0].msg, 'change log: cutting torn tail');
      assert.deepEqual(warnings[0].obj, {
        segment: last,
        offset: REC,
        bytesCut: 70,
        reason: 'truncated record payload',
      });
      assert.deepEqual(await seqsOf(again), [1, 2, 3]);

      assert.equal(await appendOne(again, 40), 4);
      await again.close();
      const third = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      const recs = await collect(third);
      assert.deepEqual(
        recs.map((r) => r.seq),
        [1, 2, 3, 4],
      );
      assert.deepEqual(recs[3].payload, payloadFor(40), 'the new record 4, not the torn one');
      assert.equal(third.nextSeq, 5);
      await third.close();
    });

    it('a header cut short is truncated too', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 2);
      await log.close();
      truncateSync(join(dir, segmentName(1)), REC + 10);
      const { logger, warnings } = capture();
      const again = await ChangeLog.open(dir, { ...TWO_PER_SEGMENT, logger });
      assert.equal(warnings[0].obj.reason, 'truncated record header');
      assert.equal(again.nextSeq, 2);
      assert.equal(await appendOne(again, 2), 2);
      assert.deepEqual(await seqsOf(again), [1, 2]);
      await again.close();
    });

    it('garbage after the last record is cut on reopen', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 3);
      await log.close();
      const last = join(dir, segmentName(3));
      await appendFile(last, Buffer.alloc(300, 0x5a));

      const { logger, warnings } = capture();
      const again = await ChangeLog.open(dir, { ...TWO_PER_SEGMENT, logger });
      assert.deepEqual(warnings[0].obj, {
        segment: last,
        offset: REC,
        bytesCut: 300,
        reason: 'bad record magic 0x5a5a5a5a',
      });
      assert.equal(statSync(last).size, REC);
      assert.equal(again.nextSeq, 4);
      assert.equal(again.bytes, 3 * REC);
      assert.equal(await appendOne(again, 4), 4);
      assert.equal(await appendOne(again, 5), 5);
      assert.deepEqual(await seqsOf(again), [1, 2, 3, 4, 5]);
      await again.close();
    });

    it('a last segment whose only record is torn becomes empty and is reused', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 3);
      await log.close();
      truncateSync(join(dir, segmentName(3)), 20);
      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(statSync(join(dir, segmentName(3))).size, 0);
      assert.equal(again.nextSeq, 3);
      assert.equal(again.segmentCount, 2);
      assert.equal(await appendOne(again, 3), 3);
      assert.deepEqual(segFiles(dir), [segmentName(1), segmentName(3)]);
      assert.deepEqual(await seqsOf(again), [1, 2, 3]);
      await again.close();
    });

    it('an empty last segment (crash right after rotation) is reused', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 2);
      await log.close();
      writeFileSync(join(dir, segmentName(3)), '');
      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(again.nextSeq, 3);
      assert.equal(again.segmentCount, 2);
      assert.equal(await appendOne(again, 3), 3);
      assert.equal(statSync(join(dir, segmentName(3))).size, REC);
      assert.deepEqual(await seqsOf(again), [1, 2, 3]);
      await again.close();
    });

    it('a tail cut below the trim watermark does not reuse trimmed sequence numbers', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, { maxBytes: 1 << 20, segmentBytes: 1 << 20 });
      await appendMany(log, 5);
      await log.trimThrough(5); // e.g. shipped to the replica before it was durable here
      await log.close();
      truncateSync(join(dir, segmentName(1)), 3 * REC + 10); // records 4 and 5 were torn
      const again = await ChangeLog.open(dir, { maxBytes: 1 << 20, segmentBytes: 1 << 20 });
      assert.equal(again.trimmedThrough, 5);
      assert.equal(again.nextSeq, 6);
      assert.equal(await appendOne(again, 6), 6);
      assert.deepEqual(await seqsOf(again), [6], 'new records must not be hidden by the trim watermark');
      await again.close();
    });
  });

  describe('corruption', () => {
    it('a corrupt record in an earlier segment makes records() fail with file and offset', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 6);
      await log.close();
      const mid = join(dir, segmentName(3));
      const buf = readFileSync(mid);
      buf[REC + HEADER_SIZE + 5] ^= 0x80; // payload of record 4
      writeFileSync(mid, buf);

      // Only the last segment is scanned on open, so the damage shows when reading.
      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(again.nextSeq, 7);
      assert.equal(statSync(mid).size, 2 * REC, 'an earlier segment is never truncated');
      const seen: number[] = [];
      await assert.rejects(
        async () => {
          for await (const r of again.records()) seen.push(r.seq);
        },
        { message: `change log corrupt: ${mid} at offset ${REC}: CRC32C mismatch in record seq 4` },
      );
      assert.deepEqual(seen, [1, 2, 3]);
      assert.deepEqual(await seqsOf(again, 5), [5, 6], 'records after the damage are still readable');
      await again.close();
    });

    it('a corrupt header in an earlier segment is reported with its reason', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 4);
      await log.close();
      const first = join(dir, segmentName(1));
      const buf = readFileSync(first);
      buf.writeUInt32LE(0x12345678, REC); // magic of record 2
      writeFileSync(first, buf);
      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await assert.rejects(collect(again), {
        message: `change log corrupt: ${first} at offset ${REC}: bad record magic 0x12345678`,
      });
      await again.close();
    });

    it('a corrupt record inside the last segment is treated as a torn tail: it and what follows are cut', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, { maxBytes: 1 << 20, segmentBytes: 1 << 20 });
      await appendMany(log, 4);
      await log.close();
      const seg = join(dir, segmentName(1));
      const buf = readFileSync(seg);
      buf[REC + HEADER_SIZE] ^= 0x01; // payload of record 2
      writeFileSync(seg, buf);

      const { logger, warnings } = capture();
      const again = await ChangeLog.open(dir, { maxBytes: 1 << 20, segmentBytes: 1 << 20, logger });
      assert.deepEqual(warnings[0].obj, {
        segment: seg,
        offset: REC,
        bytesCut: 3 * REC,
        reason: 'CRC32C mismatch in record seq 2',
      });
      assert.equal(statSync(seg).size, REC);
      assert.equal(again.nextSeq, 2);
      assert.deepEqual(await seqsOf(again), [1]);
      await again.close();
    });
  });

  describe('trimThrough', () => {
    it('removes only segments whose records are all trimmed and persists the watermark', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 6); // segments 1-2, 3-4, 5-6
      await log.trimThrough(1);
      assert.equal(log.trimmedThrough, 1);
      assert.equal(log.segmentCount, 3, 'segment 1 still holds record 2');
      assert.deepEqual(await seqsOf(log), [2, 3, 4, 5, 6]);
      assert.deepEqual(await seqsOf(log, 1, 2), [2]);

      await log.trimThrough(3);
      assert.equal(log.trimmedThrough, 3);
      assert.deepEqual(segFiles(dir), [segmentName(3), segmentName(5)]);
      assert.equal(log.segmentCount, 2);
      assert.equal(log.bytes, 4 * REC);
      assert.deepEqual(await seqsOf(log), [4, 5, 6]);
      assert.equal(JSON.parse(readFileSync(join(dir, 'log-state.json'), 'utf8')).trimmedThrough, 3);

      await log.trimThrough(2); // going backwards is a no-op
      assert.equal(log.trimmedThrough, 3);
      await log.close();

      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(again.trimmedThrough, 3);
      assert.equal(again.segmentCount, 2);
      assert.equal(again.bytes, 4 * REC);
      assert.equal(again.nextSeq, 7);
      assert.deepEqual(await seqsOf(again), [4, 5, 6]);
      assert.deepEqual(await seqsOf(again, 1, 4), [4]);
      await again.close();
    });

    it('makes the watermark durable only before a segment goes; a crash brings back an older one whose records are all there', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 6); // segments 1-2, 3-4, 5-6
      await log.sync();
      await log.trimThrough(1); // deletes nothing: no state write (no fsync on every ack)
      assert.equal(log.trimmedThrough, 1);
      assert.equal(existsSync(join(dir, 'log-state.json')), false);
      await log.trimThrough(4); // segments 1-2 and 3-4 go: the watermark is durable first
      assert.equal(JSON.parse(readFileSync(join(dir, 'log-state.json'), 'utf8')).trimmedThrough, 4);
      await log.trimThrough(5); // inside the current segment: deletes nothing
      assert.equal(log.trimmedThrough, 5);
      assert.deepEqual(await seqsOf(log), [6]);

      // A crash (no close): the durable watermark is 4, and record 5 is still there.
      const crashed = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(crashed.trimmedThrough, 4);
      assert.equal(crashed.nextSeq, 7);
      assert.deepEqual(await seqsOf(crashed), [5, 6]);
      await crashed.trimThrough(5);
      await crashed.close(); // a clean close records the exact watermark
      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(again.trimmedThrough, 5);
      assert.deepEqual(await seqsOf(again), [6]);
      await again.close();
      await log.close();
    });

    it('removes a segment exactly when the next one starts right after the watermark', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 4);
      await log.trimThrough(2);
      assert.deepEqual(segFiles(dir), [segmentName(3)]);
      assert.deepEqual(await seqsOf(log), [3, 4]);
      await log.close();
    });

    it('never removes the current segment and clamps the watermark to what was appended', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 5);
      await log.trimThrough(1000);
      assert.equal(log.trimmedThrough, 5);
      assert.deepEqual(segFiles(dir), [segmentName(5)]);
      assert.deepEqual(await seqsOf(log), []);
      await log.close();
      const again = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      assert.equal(again.trimmedThrough, 5);
      assert.equal(again.nextSeq, 6);
      assert.equal(await appendOne(again, 6), 6);
      assert.deepEqual(await seqsOf(again), [6]);
      await again.close();
    });

    it('frees room under the size limit', async () => {
      const log = await ChangeLog.open(freshDir(), { maxBytes: 4 * REC, segmentBytes: 200 });
      await appendMany(log, 4);
      assert.equal(log.hasRoom(PAYLOAD), false);
      await log.trimThrough(2);
      assert.equal(log.bytes, 2 * REC);
      assert.equal(log.hasRoom(PAYLOAD), true);
      await log.close();
    });
  });

  describe('size limit', () => {
    it('hasRoom counts written and queued bytes against maxBytes', async () => {
      const log = await ChangeLog.open(freshDir(), { maxBytes: 3 * REC, segmentBytes: 1 << 20 });
      assert.equal(log.hasRoom(3 * REC - HEADER_SIZE), true);
      assert.equal(log.hasRoom(3 * REC - HEADER_SIZE + 1), false);
      await appendMany(log, 2);
      assert.equal(log.hasRoom(PAYLOAD), true, 'exactly fills the log');
      assert.equal(log.hasRoom(PAYLOAD + 1), false);
      const { written } = log.append({
        type: RecordType.Write,
        flags: 0,
        disk: 1,
        time: 0,
        offset: 0,
        length: PAYLOAD,
        payload: payloadFor(3),
      });
      assert.equal(log.bytes, 3 * REC, 'a queued record counts at once');
      assert.equal(log.hasRoom(0), false);
      await written;
      assert.equal(log.bytes, 3 * REC);
      assert.equal(log.hasRoom(0), false);
      await log.close();
    });

    it('markers may use a 1 MiB reserve beyond the limit', async () => {
      const log = await ChangeLog.open(freshDir(), { maxBytes: 2 * REC, segmentBytes: 1 << 20 });
      await appendMany(log, 2);
      assert.equal(log.hasRoom(8), false);
      assert.equal(log.hasRoom(8, true), true);
      assert.equal(log.hasRoom(1024 * 1024 - HEADER_SIZE, true), true);
      assert.equal(log.hasRoom(1024 * 1024 - HEADER_SIZE + 1, true), false);
      await log.close();
    });

    it('the limit applies to the bytes found on reopen', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 3);
      await log.close();
      const again = await ChangeLog.open(dir, { maxBytes: 3 * REC, segmentBytes: 200 });
      assert.equal(again.bytes, 3 * REC);
      assert.equal(again.hasRoom(0), false);
      await again.close();
    });
  });

  describe('write failure', () => {
    it('rejects the failed append and every later one until resetFailure', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      // The first append creates segment 1 with O_EXCL: make that fail.
      writeFileSync(join(dir, segmentName(1)), 'in the way');
      const a = log.append({
        type: RecordType.Zero,
        flags: 0,
        disk: 0,
        time: 0,
        offset: 0,
        length: 1,
        payload: Buffer.alloc(0),
      });
      await assert.rejects(a.written, { code: 'EEXIST' });
      const b = log.append({
        type: RecordType.Zero,
        flags: 0,
        disk: 0,
        time: 0,
        offset: 1,
        length: 1,
        payload: Buffer.alloc(0),
      });
      assert.equal(b.seq, 2);
      await assert.rejects(b.written, { code: 'EEXIST' });
      await assert.rejects(log.sync(), { code: 'EEXIST' });
      assert.equal(log.lastWritten, 0);
      assert.equal(log.bytes, 0, 'refused records do not count');

      log.resetFailure();
      const c = log.append({
        type: RecordType.Zero,
        flags: 0,
        disk: 0,
        time: 0,
        offset: 2,
        length: 1,
        payload: Buffer.alloc(0),
      });
      assert.equal(c.seq, 3, 'refused sequence numbers are not reused');
      await c.written;
      await log.sync();
      assert.deepEqual(await seqsOf(log), [3]);
      assert.ok(existsSync(join(dir, segmentName(3))));
      await log.close();
    });
  });

  describe('readOnly', () => {
    it('reads a log without modifying anything, even a torn tail', async () => {
      const dir = freshDir();
      const log = await ChangeLog.open(dir, TWO_PER_SEGMENT);
      await appendMany(log, 5);
      await log.trimThrough(2);
      await log.close();
      await appendFile(join(dir, segmentName(5)), Buffer.from('torn tail'));
      const before = snapshot(dir);

      const ro = await ChangeLog.open(dir, { maxBytes: 0, segmentBytes: 0, readOnly: true });
      assert.equal(ro.nextSeq, 6);
      assert.equal(ro.trimmedThrough, 2);
      assert.equal(ro.bytes, 3 * REC, 'the torn bytes do not count');
      assert.deepEqual(await seqsOf(ro), [3, 4, 5]);
      assert.throws(
        () =>
          ro.append({
            type: RecordType.Zero,
            flags: 0,
            disk: 0,
            time: 0,
            offset: 0,
            length: 1,
            payload: Buffer.alloc(0),
          }),
        { message: 'change log opened read-only' },
      );
      await assert.rejects(ro.trimThrough(4), { message: 'change log opened read-only' });
      await ro.sync();
      await ro.close();
      assert.deepEqual(snapshot(dir), before);
      assert.equal(ro.trimmedThrough, 2);
    });

    it('opens a missing directory as an empty log without creating it', async () => {
      const dir = freshDir();
      const ro = await ChangeLog.open(dir, { maxBytes: 0, segmentBytes: 0, readOnly: true });
      assert.equal(ro.nextSeq, 1);
      assert.equal(ro.segmentCount, 0);
      assert.deepEqual(await collect(ro), []);
      await ro.close();
      assert.equal(existsSync(dir), false);
    });
  });
});
