// LogTailer follows a growing log: only durable records, in order, across segments,
// with the followed segment kept open between reads.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { LogTailer } from '../../src/changelog/log-tailer.js';
import { HEADER_SIZE, RecordType } from '../../src/changelog/record.js';

const PAYLOAD = 100;
/** Three records per segment. */
const OPTS = { maxBytes: 1 << 30, segmentBytes: 3 * (HEADER_SIZE + PAYLOAD) };

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-tailer-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function append(log: ChangeLog, fill: number): Promise<void> {
  return log.append({
    type: RecordType.Write,
    flags: 0,
    disk: 0,
    time: Date.now(),
    offset: fill * PAYLOAD,
    length: PAYLOAD,
    payload: Buffer.alloc(PAYLOAD, fill),
  }).written;
}

describe('LogTailer', () => {
  it('hands out durable records only, in order, as the log grows across segments', async () => {
    const log = await ChangeLog.open(join(root, 'grow'), OPTS);
    const t = new LogTailer(log, 1);
    assert.deepEqual(await t.read(1 << 20), [], 'an empty log');

    await append(log, 1);
    assert.deepEqual(await t.read(1 << 20), [], 'written, not durable');
    await log.sync();
    const first = await t.read(1 << 20);
    assert.deepEqual(
      first.map((r) => [r.seq, r.payload[0]]),
      [[1, 1]],
    );

    // The same segment grows: the next read goes on from where the last stopped.
    await append(log, 2);
    await log.sync();
    await append(log, 3); // written after the sync: not handed out yet
    assert.deepEqual(
      (await t.read(1 << 20)).map((r) => r.seq),
      [2],
    );
    // Into the next segments.
    for (let i = 4; i <= 8; i++) await append(log, i);
    await log.sync();
    const rest = await t.read(1 << 20);
    assert.deepEqual(
      rest.map((r) => [r.seq, r.payload[0]]),
      [3, 4, 5, 6, 7, 8].map((i) => [i, i]),
    );
    assert.equal(t.next, 9);

    // Bounded reads: at least one record each, at most maxBytes of payload.
    await t.close();
    const u = new LogTailer(log, 2);
    assert.deepEqual(
      (await u.read(2 * PAYLOAD)).map((r) => r.seq),
      [2, 3],
    );
    assert.deepEqual(
      (await u.read(1)).map((r) => r.seq),
      [4],
    );
    await u.close();
    await log.close();
  });
});
