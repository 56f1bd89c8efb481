// The redo after a crash and the dirty bitmap. A range is dirty when a change the log
// could not take (log full) was written to the disk alone. Two writes to such a range
// must both come out right after a crash:
// - a logged write newer than the dirty range, acknowledged, whose disk write the crash
//   cut short: the redo must lay it on the disk (it used to skip dirty ranges, and lost it);
// - an unlogged write newer than a logged one: the redo must not lay the older logged
//   one over it, after a process crash or, once flushed, a power loss.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { DirtyBitmap } from '../../src/changelog/dirty-bitmap.js';
import { RecordType } from '../../src/changelog/record.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const DISK = 64 * MiB;
const R = 8 * MiB; // the range both writes of each test go to
const LEN = 64 * KiB;

interface State {
  clean: boolean;
  bootId: string;
  appliedThrough: number;
  durableThrough: number;
}
const readState = (dataDir: string): State => JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8'));
const writeState = (dataDir: string, s: State) =>
  writeFileSync(join(dataDir, 'agent.json'), JSON.stringify(s));

describe('redo after a crash over dirty ranges', { timeout: 120_000 }, () => {
  const { dir, cleanup } = scratchDir('redo-dirty');
  let running: RunningAgent | undefined;
  after(async () => {
    await running?.kill();
    cleanup();
  });

  async function readBack(dataDir: string, disk: string): Promise<Buffer> {
    running = await startAgent(['--data-dir', dataDir, '--disk', `d=${disk}`]);
    assert.match(running.stderr(), /redid the change-log tail|redid the change log from the last checkpoint/);
    const c = await TestNbdClient.connect({ port: running.port }, 'd');
    const got = await c.read(R, LEN);
    await c.disconnect();
    assert.equal(await running.stop(), 0);
    running = undefined;
    return got;
  }

  test('a logged write over a dirty range, its disk write cut short, is redone', async () => {
    const dataDir = join(dir, 'cut-short');
    const disk = sparseImage(join(dir, 'cut-short.img'), DISK);
    const older = randomBytes(LEN);
    running = await startAgent(['--data-dir', dataDir, '--disk', `d=${disk}`]);
    const c = await TestNbdClient.connect({ port: running.port }, 'd');
    await c.write(R, older);
    await c.flush();
    await c.disconnect();
    assert.equal(await running.stop(), 0);
    running = undefined;

    // What a crash leaves: the range dirty from an earlier unlogged write, then a newer
    // write whose record reached the log (so it was acknowledged) but not the disk.
    const stateBefore = readState(dataDir);
    const newer = randomBytes(LEN);
    const log = await ChangeLog.open(join(dataDir, 'log'), {
      maxBytes: 1024 * MiB,
      segmentBytes: 64 * MiB,
      logger: pino({ level: 'silent' }),
    });
    const { written } = log.append({
      type: RecordType.Write,
      flags: 0,
      disk: 1,
      time: Date.now(),
      offset: R,
      length: LEN,
      payload: newer,
    });
    await written;
    await log.sync();
    await log.close();
    const bitmap = await DirtyBitmap.open(join(dataDir, 'dirty', 'disk-1.bitmap'), DISK);
    await bitmap.mark(R, LEN);
    await bitmap.sync();
    await bitmap.close();
    writeState(dataDir, { ...stateBefore, clean: false });

    const got = await readBack(dataDir, disk);
    assert.ok(got.equals(newer), 'the acknowledged write over the dirty range is on the disk');
    const s = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    assert.ok(s.disks[0].resyncRequired.length > 0, 'the range stays resync required');
  });

  /** A logged write at R, the log filled up, then an unlogged write at R, flushed. */
  async function loggedThenUnlogged(
    name: string,
  ): Promise<{ dataDir: string; disk: string; unlogged: Buffer }> {
    const dataDir = join(dir, name);
    const disk = sparseImage(join(dir, `${name}.img`), DISK);
    running = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${disk}`,
      '--log-limit',
      '1M',
      '--segment-size',
      '256K',
      '--checkpoint-interval',
      '3600',
    ]);
    const c = await TestNbdClient.connect({ port: running.port }, 'd');
    await c.write(R, randomBytes(LEN));
    for (let o = 0; o < 2 * MiB; o += LEN) await c.write(32 * MiB + o, randomBytes(LEN));
    const unlogged = randomBytes(LEN);
    await c.write(R, unlogged);
    await c.flush();
    const s = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    const dirty = s.disks[0].resyncRequired as { offset: number; length: number }[];
    assert.ok(
      dirty.some((r) => r.offset <= R && R + LEN <= r.offset + r.length),
      `the second write at R went to the bitmap: ${JSON.stringify(dirty)}`,
    );
    await running.kill();
    running = undefined;
    return { dataDir, disk, unlogged };
  }

  test('an unlogged write over an older logged one survives a process crash', async () => {
    const { dataDir, disk, unlogged } = await loggedThenUnlogged('process-crash');
    const got = await readBack(dataDir, disk);
    assert.ok(got.equals(unlogged), 'the redo did not lay the older logged write over the newer one');
  });

  test('an unlogged write over an older logged one, flushed, survives a power loss', async () => {
    const { dataDir, disk, unlogged } = await loggedThenUnlogged('power-loss');
    // The flush synced the disk for the unlogged write: a power loss keeps it. The boot changes.
    writeState(dataDir, { ...readState(dataDir), bootId: 'another-boot' });
    const got = await readBack(dataDir, disk);
    assert.ok(got.equals(unlogged), 'the redo did not lay the older logged write over the newer one');
  });
});
