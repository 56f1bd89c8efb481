// Reprotect's data path: the master target adopts an existing image that differs from the
// agent's disk in 1 % of its blocks; the agent, reset (its old change log discarded, as
// after a failback), does its initial copy by block hash: the files end equal and the
// block bytes it sent are at most 1.05x the differing bytes; nothing of the discarded log
// reaches the replica. Refusals of adopt and of a reset of a running agent are exact.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { callAgent } from '../../src/agent/control-server.js';
import type { ResyncStatus } from '../../src/agent/resync.js';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, startMasterTarget, until, waitProtected } from '../support/trio.js';

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;

function writeAt(image: string, offset: number, data: Buffer): void {
  const fd = openSync(image, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

function sameFiles(a: string, b: string): boolean {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.alloc(16 * MiB);
    const bb = Buffer.alloc(16 * MiB);
    for (let at = 0; ; at += ba.length) {
      const na = readSync(fa, ba, 0, ba.length, at);
      const nb = readSync(fb, bb, 0, bb.length, at);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

describe('adopt existing disks; agent reset', { timeout: 240_000 }, () => {
  const { dir, cleanup } = scratchDir('adopt');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: MasterTarget | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    await mt?.close();
    cleanup();
  });

  test('only the differing blocks move, and the old log is discarded', async () => {
    const size = 256 * MiB;
    const disk = sparseImage(join(dir, 'disk.img'), size);
    writeAt(disk, 0, randomBytes(64 * MiB));
    const dataDir = join(dir, 'agent');
    // The agent's past: a log with changes (as before a failover), never to be shipped now.
    agent = await startAgent(['--data-dir', dataDir, '--disk', `d=${disk}`]);
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    for (let at = 100 * MiB; at < 104 * MiB; at += MiB) await client.write(at, randomBytes(MiB));
    await client.flush();
    await client.disconnect();
    const running = await runCli(['agent', 'reset', '--data-dir', dataDir]);
    assert.notEqual(running.code, 0);
    assert.match(
      running.stderr,
      new RegExp(
        `cannot reset ${dataDir}: data dir ${dataDir} is in use by another agent \\(pid ${agent.child.pid}\\): stop the agent first`,
      ),
    );
    assert.equal(await agent.stop(), 0);
    agent = undefined;
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;

    // The image the master target adopts: the disk with 1 % of its blocks different.
    const image = join(dir, 'adopted.img');
    copyFileSync(disk, image);
    const rand = prng(5);
    const changed = new Set<number>();
    while (changed.size < Math.ceil((size * 0.01) / BLOCK)) {
      const b = Math.floor(rand() * (size / BLOCK));
      if (changed.has(b)) continue;
      changed.add(b);
      writeAt(image, b * BLOCK, randomBytes(BLOCK));
    }
    const differing = changed.size * BLOCK;

    const tls = await issueTrioCerts(dir);
    mt = await startMasterTarget(tls, {
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      logger: pino({ level: 'silent' }),
    });
    await assert.rejects(mt.adopt(machineId, [{ id: 1, name: 'd', size: size + 4096, path: image }]), {
      message: `disk 1 ('d'): ${image} is ${size} bytes, but the machine's disk is ${size + 4096} bytes`,
    });
    await assert.rejects(mt.adopt(machineId, [{ id: 1, name: 'd', size, path: join(dir, 'nope.img') }]), {
      message: `disk 1 ('d'): cannot open ${join(dir, 'nope.img')}: no such file`,
    });
    assert.equal(mt.replica(machineId), undefined, 'a refused adopt created a replica');
    await mt.adopt(machineId, [{ id: 1, name: 'd', size, path: image }]);
    await assert.rejects(mt.adopt(machineId, [{ id: 1, name: 'd', size, path: image }]), {
      message: `machine ${machineId} already has a replica on this master target`,
    });
    assert.equal(mt.snapshot(machineId)?.protected, false, 'an adopted replica has no point before its copy');

    const reset = await runCli(['agent', 'reset', '--data-dir', dataDir, '--json']);
    assert.equal(reset.code, 0, reset.stderr);
    const r = JSON.parse(reset.stdout) as {
      discardedRecords: number;
      trimmedThrough: number;
      disks: string[];
    };
    assert.ok(r.discardedRecords >= 4, `discarded ${r.discardedRecords} records`);
    assert.deepEqual(r.disks, ['d']);

    ps = await startProcessServer([
      ...['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'],
      ...['--master-target', `127.0.0.1:${mt.port}`],
    ]);
    agent = await startAgent([
      ...['--data-dir', dataDir, '--disk', `d=${disk}`],
      ...['--process-server', `127.0.0.1:${ps.port}`, '--tls-dir', tls, '--name', 'a1'],
    ]);
    await waitProtected(dataDir, 120_000);
    const st = (await callAgent(dataDir, 'GET', '/status')).body as {
      lastSeq: number;
      replication: { resync: ResyncStatus };
    };
    await until(
      'the replica to apply everything',
      () => mt!.replica(machineId)!.appliedThrough >= st.lastSeq,
    );
    // Blocks that hold data on the disk are sent; those that are holes there are zeroed
    // at the replica without data.
    const isData = (b: number) => b * BLOCK < 64 * MiB || (b * BLOCK >= 100 * MiB && b * BLOCK < 104 * MiB);
    const dataDiffering = [...changed].filter(isData).length * BLOCK;
    const { sentBytes: sent, zeroedBytes: zeroed } = st.replication.resync;
    assert.ok(sent >= dataDiffering, `sent ${sent} bytes, fewer than the ${dataDiffering} that differ`);
    assert.ok(sent <= differing * 1.05, `sent ${sent} bytes for ${differing} differing`);
    assert.ok(zeroed >= differing - dataDiffering, `zeroed ${zeroed} bytes`);
    assert.ok(sameFiles(disk, image), 'the adopted image does not equal the disk after the copy');
    const replica = mt.replica(machineId)!;
    assert.ok(
      replica.journal.entriesAfter(0).every((e) => e.seq > r.trimmedThrough),
      'a record of the discarded log reached the replica',
    );
    assert.equal(mt.snapshot(machineId)?.protected, true);
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
