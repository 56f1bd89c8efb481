// When the change log reaches its size limit, further changes go to the
// persistent dirty-region bitmap ("resync required"): never an unbounded
// queue, never silent loss; flushes keep working.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('a full change log', { timeout: 120_000 }, () => {
  const { dir, cleanup } = scratchDir('logfull');
  after(cleanup);

  test('changes beyond the limit are marked resync required, persistently', async () => {
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
});
