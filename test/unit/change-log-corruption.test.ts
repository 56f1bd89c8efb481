// Corruption of a change log (a process server's cache) versus a torn tail: records at or
// below durableThrough are never cut; every bad record is named by file, offset and the
// last good seq, and readers stop before it (passing on the good records first).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { ChangeLog, type ChangeLogOptions, segmentName } from '../../src/changelog/change-log.js';
import { LogCorruptError } from '../../src/changelog/log-corrupt-error.js';
import { LogTailer } from '../../src/changelog/log-tailer.js';
import { HEADER_SIZE, RecordType } from '../../src/changelog/record.js';
import { AckedWatermark } from '../../src/process-server/acked-watermark.js';

const PAYLOAD = 100;
const REC = HEADER_SIZE + PAYLOAD;
/** Two records per segment. */
const OPTS: ChangeLogOptions = { maxBytes: 1 << 30, segmentBytes: 200 };

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-logcorrupt-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function logWith(count: number, opts = OPTS): Promise<string> {
  const dir = join(root, `log-${n++}`);
  const log = await ChangeLog.open(dir, opts);
  for (let i = 1; i <= count; i++) {
    const payload = Buffer.alloc(PAYLOAD, i);
    await log.append({
      type: RecordType.Write,
      flags: 0,
      disk: 1,
      time: i,
      offset: 0,
      length: PAYLOAD,
      payload,
    }).written;
  }
  await log.sync();
  await log.close();
  return dir;
}

function flip(path: string, at: number): void {
  const b = readFileSync(path);
  b[at] ^= 0x10;
  writeFileSync(path, b);
}

async function drain(t: LogTailer): Promise<number[]> {
  const seqs: number[] = [];
  for (;;) {
    const got = await t.read(1 << 20);
    if (got.length === 0) return seqs;
    seqs.push(...got.map((r) => r.seq));
  }
}

describe('change-log corruption', () => {
  it('in a closed segment: readers pass on the good records, then name the bad one', async () => {
    const dir = await logWith(6); // segments [1,2] [3,4] [5,6]
    const path = join(dir, segmentName(3));
    flip(path, REC + HEADER_SIZE + 7); // the payload of seq 4
    const seen: LogCorruptError[] = [];
    const log = await ChangeLog.open(dir, { ...OPTS, durableThrough: 6, onCorruption: (e) => seen.push(e) });
    assert.equal(log.corruption, undefined, 'closed segments are not read on open');
    const t = new LogTailer(log, 1);
    await assert.rejects(drain(t), {
      name: 'Error',
      message: `change log corrupt: ${path} at offset ${REC}: CRC32C mismatch in record seq 4`,
    });
    assert.equal(t.next, 4, 'seqs 1-3 were handed out, 4 never');
    assert.equal(seen.length, 1);
    const found = seen[0]!;
    assert.deepEqual([found.path, found.offset, found.afterSeq], [path, REC, 3]);
    assert.ok(log.corruption === found);
    // Every later reader stops at the same place; the owner was told once.
    await assert.rejects(drain(new LogTailer(log, 2)), LogCorruptError);
    const viaRecords: number[] = [];
    await assert.rejects(async () => {
      for await (const r of log.records()) viaRecords.push(r.seq);
    }, LogCorruptError);
    assert.deepEqual(viaRecords, [1, 2, 3]);
    assert.equal(seen.length, 1);
    await log.close();
  });

  it('in the last segment at or below durableThrough: not cut, named, appends go to a new segment', async () => {
    const dir = await logWith(5, { ...OPTS, segmentBytes: 1 << 20 }); // one segment
    const path = join(dir, segmentName(1));
    const size = statSync(path).size;
    flip(path, 2 * REC + HEADER_SIZE + 50); // seq 3's payload
    const seen: LogCorruptError[] = [];
    const log = await ChangeLog.open(dir, {
      ...OPTS,
      segmentBytes: 1 << 20,
      durableThrough: 5,
      onCorruption: (e) => seen.push(e),
    });
    assert.equal(statSync(path).size, size, 'nothing was cut');
    assert.equal(seen.length, 1);
    assert.equal(
      seen[0]!.message,
      `change log corrupt: ${path} at offset ${2 * REC}: CRC32C mismatch in record seq 3`,
    );
    assert.equal(seen[0]!.afterSeq, 2);
    assert.equal(log.nextSeq, 6, 'acknowledged seqs are never handed out again');
    assert.equal(log.durableSeq, 5);
    const payload = Buffer.alloc(PAYLOAD, 6);
    await log.append({
      type: RecordType.Write,
      flags: 0,
      disk: 1,
      time: 6,
      offset: 0,
      length: PAYLOAD,
      payload,
    }).written;
    await log.sync();
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.rcl')),
      [segmentName(1), segmentName(6)],
    );
    const t = new LogTailer(log, 1);
    assert.deepEqual(
      (await t.read(1 << 20)).map((r) => r.seq),
      [1, 2],
    );
    await assert.rejects(t.read(1 << 20), LogCorruptError);
    await log.close();
  });

  it('above durableThrough it is a torn tail and is cut, as before', async () => {
    const dir = await logWith(5, { ...OPTS, segmentBytes: 1 << 20 });
    const path = join(dir, segmentName(1));
    flip(path, 3 * REC + HEADER_SIZE + 50); // seq 4's payload, never acknowledged
    const seen: LogCorruptError[] = [];
    const log = await ChangeLog.open(dir, {
      ...OPTS,
      segmentBytes: 1 << 20,
      durableThrough: 3,
      logger: pino({ level: 'silent' }),
      onCorruption: (e) => seen.push(e),
    });
    assert.equal(statSync(path).size, 3 * REC);
    assert.deepEqual(seen, []);
    assert.equal(log.nextSeq, 4);
    await log.close();
  });

  it('the acked watermark survives a restart', async () => {
    const path = join(root, `acked-${n++}.json`);
    const logger = pino({ level: 'silent' });
    const w = await AckedWatermark.open(path, logger);
    assert.equal(w.ackedThrough, 0);
    w.set(10);
    w.set(7); // never goes back
    w.set(12);
    await w.close();
    assert.equal((await AckedWatermark.open(path, logger)).ackedThrough, 12);
    writeFileSync(path, '{"ackedThrough": "x"}');
    assert.equal((await AckedWatermark.open(path, logger)).ackedThrough, 0, 'nonsense reads as nothing');
  });
});
