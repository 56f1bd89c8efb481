// The whole replication path on one machine: agent -> process server -> master target,
// each hop over mutual TLS. Generations of writes, write-zeroes and trims, each closed
// with a bookmark; the master target's view of each bookmark equals the agent's disk as
// it was then, byte for byte, and its latest view equals the disk at the end, also after
// a SIGKILL of the process server in between.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import type { Replica } from '../../src/master-target/replica.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, startMasterTarget, waitProtected } from '../support/trio.js';

const MiB = 1024 * 1024;
const DISK = 32 * MiB;
const GENERATIONS = 4;

async function readView(replica: Replica, point: number | 'latest', disk: number): Promise<Buffer> {
  const view = replica.openView(point);
  try {
    return await view.read(disk, 0, DISK);
  } finally {
    view.close();
  }
}

describe('agent -> process server -> master target', { timeout: 240_000 }, () => {
  const { dir, cleanup } = scratchDir('pipeline');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: MasterTarget | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    await mt?.close();
    cleanup();
  });

  test('every bookmark view equals the source at that moment; latest equals the source', async () => {
    const rand = prng(Number(process.env.REBOUND_TEST_SEED ?? 4242));
    const tls = await issueTrioCerts(dir);
    mt = await startMasterTarget(tls, {
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      logger: pino({ level: 'silent' }),
    });
    const psArgs = [
      '--data-dir',
      join(dir, 'ps'),
      '--tls-dir',
      tls,
      '--name',
      'ps1',
      '--master-target',
      `127.0.0.1:${mt.port}`,
    ];
    ps = await startProcessServer(psArgs);
    const psPort = ps.port;
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${disk}`,
      '--checkpoint-interval',
      '0.2',
      '--process-server',
      `127.0.0.1:${psPort}`,
      '--tls-dir',
      tls,
      '--name',
      'a1',
    ]);
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    // A bookmark taken while the initial copy runs is no recovery point (the replica is not
    // consistent until the copy ends): every generation's bookmark must come after it.
    await waitProtected(dataDir);
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');

    const expected: Buffer[] = [];
    for (let g = 0; g < GENERATIONS; g++) {
      for (let i = 0; i < 60; i++) {
        const offset = Math.floor(rand() * (DISK / 4096 - 64)) * 4096;
        const r = rand();
        if (r < 0.8) await client.write(offset, randomBytes(4096 * (1 + Math.floor(rand() * 32))));
        else if (r < 0.9) await client.writeZeroes(offset, 4096 * (1 + Math.floor(rand() * 64)));
        else await client.trim(offset, 4096 * (1 + Math.floor(rand() * 64)));
      }
      await client.flush();
      const b = await runCli(['agent', 'bookmark', '--data-dir', dataDir, '--tag', `gen-${g}`]);
      assert.equal(b.code, 0, b.stderr);
      expected.push(readFileSync(disk));
      if (g === 1) {
        // The process server dies between generations and comes back on its port.
        await killChild(ps.child);
        ps = await startProcessServer(psArgs, psPort);
      }
    }

    // Wait until the master target has the last bookmark.
    const deadline = Date.now() + 60_000;
    let replica: Replica | undefined;
    for (;;) {
      replica = mt.replica(machineId);
      if (replica?.recoveryPoints().some((p) => p.tag === `gen-${GENERATIONS - 1}`)) break;
      assert.ok(Date.now() < deadline, 'the last bookmark never reached the master target');
      await new Promise((r) => setTimeout(r, 100));
    }
    const points = replica.recoveryPoints().filter((p) => p.kind === 'app');
    assert.deepEqual(
      points.map((p) => p.tag),
      Array.from({ length: GENERATIONS }, (_, g) => `gen-${g}`),
    );
    for (let g = 0; g < GENERATIONS; g++) {
      const got = await readView(replica, points[g]!.seq, 1);
      assert.ok(got.equals(expected[g]!), `the view of gen-${g} differs from the disk at that bookmark`);
    }
    const latest = await readView(replica, 'latest', 1);
    assert.ok(latest.equals(readFileSync(disk)), 'the latest view differs from the source');
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
