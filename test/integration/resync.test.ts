// Initial replication and resync over the whole path (agent -> process server -> master
// target, mutual TLS). A disk that already holds data is copied while the workload keeps
// writing, holes and zero blocks cost no transfer, and no point before the copy ends is
// offered; then 1 % of a 1 GiB disk is changed while the agent is down and a resync sends
// only those blocks (counted), and the replica equals the source byte for byte.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { callAgent } from '../../src/agent/control-server.js';
import type { ResyncStatus } from '../../src/agent/resync.js';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import type { Replica } from '../../src/master-target/replica.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, startMasterTarget } from '../support/trio.js';

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;

interface AgentStatus {
  nextSeq: number;
  disks: { resyncRequired: unknown[] }[];
  replication?: { resync: ResyncStatus };
}

async function agentStatus(dataDir: string): Promise<AgentStatus> {
  const r = await callAgent(dataDir, 'GET', '/status');
  assert.equal(r.status, 200);
  return r.body as unknown as AgentStatus;
}

/** Waits until the agent has no resync-required region and the replica has everything it logged. */
async function waitReplicated(dataDir: string, replicaOf: () => Replica | undefined, what: string) {
  const deadline = Date.now() + Number(process.env.REBOUND_TEST_WAIT_MS ?? 120_000);
  for (;;) {
    const s = await agentStatus(dataDir);
    const r = replicaOf();
    const idle =
      s.replication?.resync.state === 'idle' && s.disks.every((d) => d.resyncRequired.length === 0);
    if (idle && r && r.appliedThrough >= s.nextSeq - 1 && r.resyncOpenSince === undefined) return s;
    assert.ok(
      Date.now() < deadline,
      `${what}: not replicated after 120 s: agent next seq ${s.nextSeq}, replica applied through ` +
        `${r?.appliedThrough}, resync open since ${r?.resyncOpenSince}: ${JSON.stringify(s.replication)}`,
    );
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Compares the latest view with the source image, 16 MiB at a time. */
async function assertViewEquals(replica: Replica, image: string, size: number, what: string) {
  const view = replica.openView('latest');
  const fd = openSync(image, 'r');
  try {
    const want = Buffer.alloc(16 * MiB);
    for (let at = 0; at < size; at += want.length) {
      const n = Math.min(want.length, size - at);
      readSync(fd, want, 0, n, at);
      const got = await view.read(1, at, n);
      assert.ok(
        got.equals(want.subarray(0, n)),
        `${what}: the replica differs from the source in [${at}, +${n})`,
      );
    }
  } finally {
    closeSync(fd);
    view.close();
  }
}

function writeAt(image: string, offset: number, data: Buffer): void {
  const fd = openSync(image, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe('initial replication and resync', { timeout: 300_000 }, () => {
  const { dir, cleanup } = scratchDir('resync');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: MasterTarget | undefined;
  let tls = '';
  after(async () => {
    if (process.env.REBOUND_TEST_DEBUG) {
      console.error('--- process server log ---\n', ps?.stderr().slice(-6000));
      console.error('--- agent log ---\n', agent?.stderr().slice(-6000));
    }
    await agent?.kill();
    await killChild(ps?.child);
    await mt?.close();
    cleanup();
  });

  async function startStack(): Promise<void> {
    tls = await issueTrioCerts(dir);
    mt = await startMasterTarget(tls, {
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      logger: pino({ level: 'silent' }),
    });
    ps = await startProcessServer([
      '--data-dir',
      join(dir, 'ps'),
      '--tls-dir',
      tls,
      '--name',
      'ps1',
      '--master-target',
      `127.0.0.1:${mt.port}`,
    ]);
  }

  function agentArgs(dataDir: string, disk: string): string[] {
    return [
      '--data-dir',
      dataDir,
      '--disk',
      `d=${disk}`,
      '--process-server',
      `127.0.0.1:${ps!.port}`,
      '--tls-dir',
      tls,
      '--name',
      'a1',
    ];
  }

  test('a disk holding data is copied while it is written; holes and zero blocks cost nothing', async () => {
    await startStack();
    const size = 64 * MiB;
    const disk = sparseImage(join(dir, 'a.img'), size);
    const data = randomBytes(8 * MiB);
    writeAt(disk, 0, data); // data
    writeAt(disk, 8 * MiB, Buffer.alloc(4 * MiB)); // allocated zeroes
    writeAt(disk, 40 * MiB, randomBytes(MiB)); // more data after a hole
    const dataDir = join(dir, 'agent-a');
    agent = await startAgent(agentArgs(dataDir, disk));
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    // The workload keeps writing while the copy runs.
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    // Into the hole between the data regions, so the zeroes at 8 MiB stay untouched. A block
    // written before the replica applied the write may be compared, differ and be sent
    // again: at most the 64 KiB blocks these writes touch.
    const rand = prng(7);
    const touched = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const offset = 16 * MiB + Math.floor(rand() * ((20 * MiB) / 4096)) * 4096;
      const len = 4096 * (1 + Math.floor(rand() * 4));
      await client.write(offset, randomBytes(len));
      for (let b = Math.floor(offset / BLOCK); b <= Math.floor((offset + len - 1) / BLOCK); b++)
        touched.add(b);
    }
    await client.flush();
    const s = await waitReplicated(dataDir, () => mt!.replica(machineId), 'initial replication');
    const r = s.replication!.resync;
    // Only data crosses: the 9 MiB of data and at most the blocks the workload touched
    // (under 2.5 MiB), never the 4 MiB of zeroes or the holes.
    const touchedBytes = touched.size * BLOCK;
    assert.ok(r.sentBytes <= 9 * MiB + touchedBytes, `sent ${r.sentBytes} bytes (${touchedBytes} touched)`);
    assert.ok(r.sentBytes >= 9 * MiB, `sent only ${r.sentBytes} bytes`);
    assert.equal(r.percent, 100);
    const replica = mt!.replica(machineId)!;
    await assertViewEquals(replica, disk, size, 'after the initial copy');
    // No point before the copy ended is offered; one after it is.
    const b = await runCli(['agent', 'bookmark', '--data-dir', dataDir, '--tag', 'after-copy']);
    assert.equal(b.code, 0, b.stderr);
    const deadline = Date.now() + 30_000;
    while (!replica.recoveryPoints().some((p) => p.tag === 'after-copy')) {
      assert.ok(Date.now() < deadline, 'the bookmark after the copy never arrived');
      await new Promise((res) => setTimeout(res, 100));
    }
    const points = replica.recoveryPoints();
    assert.ok(
      points.every((p) => !p.tag.startsWith('rebound:')),
      'system markers are not points',
    );
    // The copy ended (the machine is protected) and no resync is open.
    assert.equal(replica.everConsistent, true);
    assert.equal(replica.resyncOpenSince, undefined);
    const flushBefore = 1; // the first markers were written before the copy ended
    assert.ok(replica.pointProblem(flushBefore) !== undefined, 'a point before the copy would be offered');
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });

  test('1 % of a 1 GiB disk changed while the agent was down: only those blocks are sent', async (t) => {
    const size = 1024 * MiB;
    const disk = sparseImage(join(dir, 'b.img'), size);
    writeAt(disk, 0, randomBytes(64 * MiB));
    const dataDir = join(dir, 'agent-b');
    agent = await startAgent(agentArgs(dataDir, disk));
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    await waitReplicated(dataDir, () => mt!.replica(machineId), 'initial replication');
    assert.equal(await agent.stop(), 0);

    // 1 % of the disk, in runs of 256 KiB at random places (inside the data and in holes),
    // written behind the agent's back.
    const rand = prng(99);
    const changed = new Set<number>();
    const target = Math.ceil((size * 0.01) / BLOCK);
    while (changed.size < target) {
      const first = Math.floor(rand() * (size / BLOCK - 4));
      for (let b = first; b < first + 4 && changed.size < target; b++) {
        if (changed.has(b)) continue;
        changed.add(b);
        writeAt(disk, b * BLOCK, randomBytes(BLOCK));
      }
    }
    const changedBytes = changed.size * BLOCK;

    agent = await startAgent(agentArgs(dataDir, disk));
    const before = (await agentStatus(dataDir)).replication!.resync;
    const req = await runCli(['agent', 'resync', '--data-dir', dataDir, '--json']);
    assert.equal(req.code, 0, req.stderr);
    assert.deepEqual(JSON.parse(req.stdout).disks, ['d']);
    const s = await waitReplicated(dataDir, () => mt!.replica(machineId), 'resync');
    const r = s.replication!.resync;
    const sent = r.sentBytes - before.sentBytes + (r.hashBytes - before.hashBytes);
    t.diagnostic(
      `changed ${changedBytes} bytes; sent ${r.sentBytes - before.sentBytes} bytes of blocks and ` +
        `${r.hashBytes - before.hashBytes} bytes of hashes (${(sent / changedBytes).toFixed(4)}x)`,
    );
    assert.ok(
      sent <= changedBytes * 1.05,
      `sent ${sent} bytes (${r.sentBytes - before.sentBytes} of blocks, ${r.hashBytes - before.hashBytes} of hashes) for ${changedBytes} changed`,
    );
    assert.ok(r.sentBytes - before.sentBytes >= changedBytes, 'some changed blocks were not sent');
    await assertViewEquals(mt!.replica(machineId)!, disk, size, 'after the resync');
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
