// The change log keeps only its newest bytes in the page cache: measured with fincore
// (util-linux), the pages of the segment files that are resident after a run.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';

const MiB = 1024 * 1024;
let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rebound-unit-logcache-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes 96 MiB in 1 MiB records; returns the bytes of the log resident in the page cache. */
async function residentAfterRun(dir: string, cacheWindowBytes: number): Promise<number> {
  const log = await ChangeLog.open(dir, { maxBytes: 1 << 30, segmentBytes: 32 * MiB, cacheWindowBytes });
  const payload = Buffer.alloc(MiB);
  for (let i = 0; i < 96; i++) {
    payload.fill(i);
    await log.append({
      type: RecordType.Write,
      flags: 0,
      disk: 1,
      time: 0,
      offset: i * MiB,
      length: MiB,
      payload,
    }).written;
  }
  await log.close();
  const paths = log.segmentsSnapshot().map((s) => s.path);
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', ...paths], {
    encoding: 'utf8',
  });
  return out
    .trim()
    .split('\n')
    .reduce((sum, line) => sum + Number(line.trim()), 0);
}

describe('change log and the page cache', () => {
  it('keeps about its newest window cached, and every record still reads back whole', async () => {
    const dir = join(root, 'windowed');
    const resident = await residentAfterRun(dir, 16 * MiB);
    // The window, plus at most one step (8 MiB) not yet advised, plus partial pages.
    assert.ok(resident <= 25 * MiB, `resident ${resident / MiB} MiB of 96 MiB written (window 16 MiB)`);
    const log = await ChangeLog.open(dir, { maxBytes: 1 << 30, segmentBytes: 32 * MiB, readOnly: true });
    let i = 0;
    for await (const r of log.records()) {
      assert.equal(r.offset, i * MiB);
      assert.ok(
        r.payload.every((b) => b === (i & 0xff)),
        `record ${r.seq} reads back its own bytes`,
      );
      i++;
    }
    assert.equal(i, 96);
    await log.close();
  });

  it('leaves the cache to the kernel with a window of 0 (the control: the measure sees cached pages)', async () => {
    const resident = await residentAfterRun(join(root, 'unwindowed'), 0);
    assert.ok(resident >= 64 * MiB, `resident ${resident / MiB} MiB of 96 MiB written`);
  });
});
