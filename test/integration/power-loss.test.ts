// FLUSH makes only the change log durable (it is a write-ahead log); the disks are
// fsynced at checkpoints. This proves the other half of that bargain: after a power
// loss, the disk writes since the last checkpoint may be gone, and the agent must
// rebuild them from the log. A power loss is simulated: the agent is SIGKILLed, its
// disk image loses every write since the checkpoint, and agent.json names another boot.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const MiB = 1024 * 1024;
const DISK = 64 * MiB;

function readState(dataDir: string): { durableThrough: number; appliedThrough: number; bootId: string } {
  return JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8'));
}

describe('power loss after FLUSH, before the disks were checkpointed', { timeout: 120_000 }, () => {
  const { dir, cleanup } = scratchDir('power');
  const dataDir = join(dir, 'agent');
  const disk = sparseImage(join(dir, 'disk.img'), DISK);
  let running: RunningAgent | undefined;
  after(async () => {
    await running?.kill();
    cleanup();
  });
  const start = (checkpointInterval: string) =>
    startAgent(['--data-dir', dataDir, '--disk', `d=${disk}`, '--checkpoint-interval', checkpointInterval]);

  test('checkpoints advance on their timer', async () => {
    running = await start('0.2');
    const c = await TestNbdClient.connect({ port: running.port }, 'd');
    await c.write(0, Buffer.alloc(4096, 1));
    await c.flush();
    const deadline = Date.now() + 10_000;
    while (readState(dataDir).durableThrough < 1) {
      assert.ok(Date.now() < deadline, 'durableThrough never reached the first write');
      await new Promise((r) => setTimeout(r, 50));
    }
    await c.disconnect();
    assert.equal(await running.stop(), 0);
    running = undefined;
  });

  test('the log rebuilds flushed writes the disk lost; every disk is marked resync required', async () => {
    // A checkpoint interval longer than the test: nothing written below is fsynced to the disk.
    running = await start('3600');
    const before = readState(dataDir);
    const diskAtCheckpoint = readFileSync(disk);
    const writes = Array.from({ length: 40 }, (_, i) => ({
      offset: (i * 1531 * 4096) % (DISK - 65536),
      data: randomBytes(4096 * (1 + (i % 16))),
    }));
    const c = await TestNbdClient.connect({ port: running.port }, 'd');
    for (const w of writes) await c.write(w.offset, w.data);
    await c.flush();
    await running.kill();
    running = undefined;
    assert.equal(readState(dataDir).durableThrough, before.durableThrough, 'no checkpoint ran');

    // The power loss: the disk is back to what was durable, and the boot id changed.
    writeFileSync(disk, diskAtCheckpoint);
    const state = readState(dataDir);
    writeFileSync(join(dataDir, 'agent.json'), JSON.stringify({ ...state, bootId: 'another-boot' }));

    running = await startAgent(['--data-dir', dataDir, '--disk', `d=${disk}`]);
    assert.match(
      running.stderr(),
      /unclean stop across a reboot: redid the change log from the last checkpoint/,
    );
    const r = await TestNbdClient.connect({ port: running.port }, 'd');
    for (const w of writes) {
      const got = await r.read(w.offset, w.data.length);
      assert.ok(got.equals(w.data), `flushed write at ${w.offset} lost by the power loss`);
    }
    await r.disconnect();
    const s = await runCli(['agent', 'log', '--json', '--data-dir', dataDir]);
    assert.equal(s.code, 0, s.stderr);
    const summary = JSON.parse(s.stdout);
    assert.deepEqual(summary.disks[0].resyncRequired, [{ offset: 0, length: DISK }]);
    assert.equal(await running.stop(), 0);
    running = undefined;
    // A clean stop checkpoints: everything applied is durable on the disk.
    const final = readState(dataDir);
    assert.equal(final.durableThrough, final.appliedThrough);
  });
});
