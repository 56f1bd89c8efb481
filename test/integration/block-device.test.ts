// A block device as the backing store (a loop device here): size from
// BLKGETSIZE64, writes and zeroes captured, contents round-trip through NBD.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir } from '../support/tmp.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;

describe('a block device behind the agent', { timeout: 120_000 }, () => {
  const { dir, cleanup } = scratchDir('blockdev');
  let loop = '';
  after(async () => {
    if (loop) await exec('losetup', ['-d', loop]).catch(() => undefined);
    cleanup();
  });

  test('serves and captures a loop device', async () => {
    const backing = join(dir, 'backing.img');
    writeFileSync(backing, Buffer.alloc(48 * MiB, 0x33));
    loop = (await exec('losetup', ['-f', '--show', backing])).stdout.trim();
    assert.match(loop, /^\/dev\/loop\d+$/);
    const dataDir = join(dir, 'agent');
    const agent = await startAgent(['--data-dir', dataDir, '--disk', `blk=${loop}`]);
    try {
      const info = JSON.parse((await exec('nbdinfo', ['--json', `${agent.url}/blk`])).stdout);
      assert.equal(info.exports[0]['export-size'], 48 * MiB);

      const src = join(dir, 'src.raw');
      const img = randomBytes(48 * MiB);
      writeFileSync(src, img);
      await exec('nbdcopy', [src, `${agent.url}/blk`]);
      const c = await TestNbdClient.connect({ port: agent.port }, 'blk');
      await c.writeZeroes(MiB, MiB);
      await c.trim(4 * MiB, MiB); // a no-op on a device (see BlockStore.trim): acknowledged, nothing changes
      await c.flush();
      assert.ok((await c.read(MiB, MiB)).equals(Buffer.alloc(MiB)));
      await c.disconnect();
      img.fill(0, MiB, 2 * MiB);
      const back = join(dir, 'back.raw');
      await exec('nbdcopy', [`${agent.url}/blk`, back]);
      assert.ok(readFileSync(back).equals(img), 'the device holds exactly what was written');
    } finally {
      assert.equal(await agent.stop(), 0);
    }
    const s = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    assert.equal(s.disks[0].path, loop);
    assert.ok(
      s.disks[0].writes > 0 && s.disks[0].zeroes === 1 && s.disks[0].trims === 0,
      JSON.stringify(s.disks[0]),
    );
  });
});
