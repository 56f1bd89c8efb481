// When the change log reaches its size limit, further changes go to the
// persistent dirty-region bitmap ("resync required"): never an unbounded
// queue, never silent loss; flushes keep working.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { mountTmpfs, unmountTmpfs } from '../support/tmpfs.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('a full change log', { timeout: 120_000 }, () => {
  const { dir, cleanup } = scratchDir('logfull');
  after(cleanup);

  test('changes beyond the limit are marked resync required, persistently', async (t) => {
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), 64 * MiB);
    const args = [
      '--data-dir',
      dataDir,
      '--disk',
      `disk0=${disk}`,
      '--log-limit',
      '1M',
      '--segment-size',
      '256K',
    ];
    let agent = await startAgent(args);
    // However the test ends, no agent is left running (a live child keeps the test process up).
    t.after(() => agent.kill());
    const c = await TestNbdClient.connect({ port: agent.port }, 'disk0');
    // 512 KiB fit in the log; the next 2 MiB at 16 MiB do not.
    const logged = randomBytes(512 * KiB);
    await c.write(0, logged);
    await c.flush();
    const unlogged = randomBytes(2 * MiB);
    for (let o = 0; o < unlogged.length; o += 64 * KiB) {
      await c.write(16 * MiB + o, unlogged.subarray(o, o + 64 * KiB));
    }
    await c.flush(); // a flush still succeeds: the disk and the bitmap are durable
    assert.ok((await c.read(16 * MiB, unlogged.length)).equals(unlogged), 'the disk has every write');
    await c.disconnect();

    const s = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    assert.ok(s.log.bytes <= 2 * MiB, `log stays near its limit: ${s.log.bytes}`);
    const dirty = s.disks[0].resyncRequired as { offset: number; length: number }[];
    assert.ok(dirty.length > 0, 'some regions are resync required');
    // Every unlogged write is inside a dirty region; the logged one is not.
    const covered = (off: number, len: number) =>
      dirty.some((r) => r.offset <= off && off + len <= r.offset + r.length);
    const lastLogged = s.log.lastSeq;
    assert.ok(lastLogged > 0);
    assert.ok(covered(16 * MiB + unlogged.length - 64 * KiB, 64 * KiB), JSON.stringify(dirty));
    assert.ok(!covered(0, 4096), 'the logged write is not resync required');

    // The regions survive a restart, and the summary names them.
    assert.equal(await agent.stop(), 0);
    agent = await startAgent(args);
    const text = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.match(text.stdout, /resync required: \d+ regions, [\d.]+ [KMG]iB/);
    assert.equal(await agent.stop(), 0);
  });

  test('a log volume that fills up: every acknowledged write lands on the disk, resync required', async (t) => {
    // The log fails on its volume (ENOSPC) below its size limit. Small writes take the
    // agent's fast path; the write whose log append meets the failure takes the usual
    // path instead: it must still reach the disk and be marked resync required.
    const mnt = join(dir, 'small-volume');
    if (!mountTmpfs(mnt, '3m')) {
      t.skip('cannot mount a tmpfs here (needs root)');
      return;
    }
    let agent: RunningAgent | undefined;
    try {
      const disk = sparseImage(join(dir, 'disk-small-volume.img'), 64 * MiB);
      agent = await startAgent(['--data-dir', join(mnt, 'agent'), '--disk', `disk0=${disk}`]);
      const c = await TestNbdClient.connect({ port: agent.port }, 'disk0');
      const data = randomBytes(6 * MiB); // twice what the volume holds
      for (let o = 0; o < data.length; o += 4 * KiB) await c.write(o, data.subarray(o, o + 4 * KiB));
      await c.flush(); // the disks and the bitmap are durable; the failed log is not needed
      assert.ok((await c.read(0, data.length)).equals(data), 'the disk has every acknowledged write');
      await c.disconnect();
      assert.match(agent.stderr(), /change log: append failed; further changes go to the dirty bitmap/);
      const s = JSON.parse(
        (await runCli(['agent', 'log', '--json', '--data-dir', join(mnt, 'agent')])).stdout,
      );
      const dirty = s.disks[0].resyncRequired as { offset: number; length: number }[];
      const covered = (off: number, len: number) =>
        dirty.some((r) => r.offset <= off && off + len <= r.offset + r.length);
      const lastLogged = s.log.lastSeq as number;
      // Writes are sequential, one per 4 KiB: every one after the last logged is resync required.
      const firstUnlogged = lastLogged * 4 * KiB; // seq n wrote offset (n - 1) * 4 KiB
      assert.ok(firstUnlogged < data.length, `the log failed before the end (last seq ${lastLogged})`);
      assert.ok(covered(firstUnlogged, data.length - firstUnlogged), JSON.stringify({ lastLogged, dirty }));
      await agent.stop();
    } finally {
      await agent?.kill(); // after a failure; the tmpfs cannot be unmounted under a live agent
      unmountTmpfs(mnt);
    }
  });
});
