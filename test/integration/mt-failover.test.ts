// Failover at the master target, over the real pipeline (agent -> process server -> master
// target, mutual TLS): ext4 on a protected disk, a bookmark in the middle of the run, then
// a failover to it. The moved replica file equals the source image at the bookmark byte for
// byte, passes e2fsck and holds every file with its sha256; the rollback wrote exactly the
// distinct bytes the journal after the point covers; refusals carry their exact messages and
// change nothing; the stream is refused with a named reason; release keeps the files and
// removes the journal. Then a master target SIGKILLed in the middle of a rollback finishes
// it at its next start, with the same result.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { callAgent } from '../../src/agent/control-server.js';
import { replayJournalAndCheck } from '../../src/drill/ext4-check.js';
import { ByteRanges } from '../../src/master-target/byte-ranges.js';
import { callMasterTarget } from '../../src/master-target/control-server.js';
import { JournalRecordType } from '../../src/master-target/journal-record.js';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import { openViewServer } from '../../src/master-target/view-server.js';
import { run } from '../../src/util/exec.js';
import type { RunningAgent } from '../support/agent-process.js';
import {
  killChild,
  type RunningComponent,
  startComponent,
  startProcessServer,
} from '../support/component-process.js';
import { forceCleanup, mountExt4OverNbd } from '../support/ext4-mount.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import {
  bookmark,
  issueTrioCerts,
  startMasterTarget,
  startRecoverySite,
  startShippingAgent,
  until,
  waitProtected,
} from '../support/trio.js';

const MiB = 1024 * 1024;

function sha256Tree(root: string): Map<string, string> {
  const sums = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name !== 'lost+found')
        sums.set(relative(root, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(root);
  return sums;
}

/** Byte compare of two images, 16 MiB at a time; the first differing offset in the message. */
function assertSameImage(a: string, b: string, what: string): void {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.alloc(16 * MiB);
    const bb = Buffer.alloc(16 * MiB);
    for (let at = 0; ; at += ba.length) {
      const na = readSync(fa, ba, 0, ba.length, at);
      const nb = readSync(fb, bb, 0, bb.length, at);
      assert.equal(na, nb, `${what}: sizes differ`);
      if (na === 0) return;
      if (!ba.subarray(0, na).equals(bb.subarray(0, nb))) {
        let i = 0;
        while (ba[i] === bb[i]) i++;
        assert.fail(`${what}: the images differ at byte ${at + i}`);
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

async function lastSeq(dataDir: string): Promise<number> {
  return (await callAgent(dataDir, 'GET', '/status')).body.lastSeq as number;
}

describe('failover at the master target', { timeout: 420_000 }, () => {
  const { dir, cleanup } = scratchDir('mt-failover');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: MasterTarget | undefined;
  let mtChild: RunningComponent | undefined;
  let tls = '';
  after(async () => {
    await forceCleanup(join(dir, 'src'));
    await run('umount', ['-l', join(dir, 'check')], [0, 1, 32]).catch(() => undefined);
    await agent?.kill();
    await killChild(ps?.child);
    await killChild(mtChild?.child);
    await mt?.close();
    cleanup();
  });

  test('to a bookmark in the middle of a run: the exact image, e2fsck clean, every file intact', async () => {
    tls = await issueTrioCerts(dir);
    mt = await startMasterTarget(tls, {
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      logger: pino({ level: 'silent' }),
    });
    ps = await startProcessServer([
      ...['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'],
      ...['--master-target', `127.0.0.1:${mt.port}`],
    ]);
    const agentDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), 128 * MiB);
    const started = await startShippingAgent(tls, agentDir, disk, ps.port);
    agent = started.agent;
    const id = started.machineId;
    await waitProtected(agentDir);

    const src = await mountExt4OverNbd(`${agent.url}/d`, join(dir, 'src'), { mkfs: true });
    const sh = (script: string) => run('sh', ['-c', script]);
    await sh(
      `mkdir -p ${src.mnt}/a && for i in $(seq 1 30); do head -c $((i * 37000)) /dev/urandom > ${src.mnt}/a/f$i; done; sync`,
    );
    const sums = sha256Tree(src.mnt);
    // The point: the file system frozen (consistent on the disk), bookmarked, the source copied.
    await run('fsfreeze', ['-f', src.mnt]);
    let point: number;
    const atPoint = join(dir, 'at-point.img');
    try {
      point = await bookmark(agentDir, 'before-change');
      await run('cp', ['--sparse=always', disk, atPoint]);
    } finally {
      await run('fsfreeze', ['-u', src.mnt]);
    }
    // The run goes on: files overwritten, removed and added after the point.
    await sh(
      `for i in $(seq 1 10); do head -c 200000 /dev/urandom > ${src.mnt}/a/f$i; done; rm ${src.mnt}/a/f2*; ` +
        `mkdir ${src.mnt}/b && head -c 3000000 /dev/urandom > ${src.mnt}/b/new; sync`,
    );
    await src.unmount();
    const through = await lastSeq(agentDir);
    await until('the master target to apply everything', () => mt!.replica(id)!.appliedThrough >= through);
    const replica = mt.replica(id)!;
    const applied = replica.appliedThrough;

    // Refusals: exact messages, and the replica goes on as before.
    const view = await openViewServer(mt, id, point, {
      writable: true,
      listen: { host: '127.0.0.1', port: 0 },
      scratchDir: join(dir, 'scratch'),
      logger: pino({ level: 'silent' }),
    });
    await assert.rejects(mt.failover(id, point), {
      message: `a test failover view of machine ${id} is open: clean it up first`,
    });
    await view.close();
    await assert.rejects(mt.failover(id, applied + 100), {
      message: `cannot fail over machine ${id}: recovery point ${applied + 100} is newer than the latest applied seq ${applied}`,
    });
    await assert.rejects(mt.failover(id, 1), {
      message: `cannot fail over machine ${id}: point 1 is inside a resync: the replica was not consistent then`,
    });
    await assert.rejects(mt.release(id), {
      message: `machine ${id} has not failed over: there is nothing to release`,
    });
    const unknown = '00000000-0000-4000-8000-000000000000';
    await assert.rejects(mt.failover(unknown, 'latest'), {
      message: `no machine '${unknown}' has a replica on this master target`,
    });
    await assert.rejects(mt.failover(id, point, { moveTo: 'relative/dir' }), {
      message: `moveTo 'relative/dir' is not an absolute path`,
    });
    assert.equal(mt.replica(id), replica, 'a refused failover changed the machine');
    assert.equal(mt.snapshot(id)?.connected, true, 'a refused failover stopped the stream');
    assert.equal(existsSync(join(dir, 'mt', 'machines', id, 'failover.json')), false);

    // What the rollback must write: the distinct bytes changed after the point.
    const ranges = new ByteRanges();
    let expected = 0;
    for (const e of replica.journal.entriesAfter(point)) {
      if (e.type !== JournalRecordType.BeforeImage) continue;
      for (const [a, b] of ranges.gaps(e.offset, e.offset + e.length)) expected += b - a;
      ranges.add(e.offset, e.offset + e.length);
    }
    const moveTo = join(dir, 'recovered');
    const result = await mt.failover(id, point, { moveTo });
    assert.equal(result.point, point);
    assert.ok(result.pointTime > 0);
    assert.deepEqual(result.disks, [{ id: 1, name: 'd', size: 128 * MiB, path: join(moveTo, 'disk-1.img') }]);
    assert.equal(
      result.bytesWritten,
      expected,
      'the rollback wrote other bytes than those changed after the point',
    );
    assert.ok(expected > 0 && expected < 32 * MiB, `${expected} bytes changed after the point`);
    assertSameImage(
      result.disks[0]!.path,
      atPoint,
      'the failed-over disk against the source at the bookmark',
    );
    assert.deepEqual(await mt.failover(id, 'latest'), result, 'a second call returns the same result');
    assert.equal(mt.snapshot(id), undefined);

    // The process server's forwarder is told why its stream is refused.
    await until('the process server to name the refusal', () =>
      ps!
        .stderr()
        .includes(`machine ${id} has failed over at point ${point}: its replica is no longer replicated`),
    );

    // The recovered disk, as the recovered machine will see it.
    const check = join(dir, 'check');
    mkdirSync(check, { recursive: true });
    const fsck = await replayJournalAndCheck(result.disks[0]!.path);
    assert.ok(fsck.clean, fsck.output);
    await run('mount', ['-o', 'loop,ro', result.disks[0]!.path, check]);
    try {
      assert.deepEqual(sha256Tree(check), sums);
    } finally {
      await run('umount', [check]);
    }

    // Commit: the journal and the machine's state go, the disk file stays.
    const r = await mt.release(id);
    assert.deepEqual(r.disks, result.disks);
    assert.equal(existsSync(join(dir, 'retention', id)), false, 'the journal is still there');
    assert.equal(existsSync(join(dir, 'mt', 'machines', id)), false, 'the machine state is still there');
    assert.ok(existsSync(result.disks[0]!.path), 'release removed the disk');
    await assert.rejects(mt.release(id), {
      message: `no machine '${id}' has failed over on this master target`,
    });
    assert.equal(await agent.stop(), 0);
    agent = undefined;
    await killChild(ps.child);
    ps = undefined;
  });

  test('a master target SIGKILLed in the middle of a rollback finishes it at its next start', async () => {
    const site = await startRecoverySite(join(dir, 'site2'), tls);
    mtChild = site.mt;
    ps = site.ps;
    const agentDir = join(dir, 'agent2');
    const size = 256 * MiB;
    const disk = sparseImage(join(dir, 'disk2.img'), size);
    const started = await startShippingAgent(tls, agentDir, disk, ps.port);
    agent = started.agent;
    const id = started.machineId;
    await waitProtected(agentDir);
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    const span = 128 * MiB;
    for (let at = 0; at < span; at += MiB) await client.write(at, randomBytes(MiB));
    await client.flush();
    const point = await bookmark(agentDir, 'p');
    const atPoint = join(dir, 'at-point-2.img');
    await run('cp', ['--sparse=always', disk, atPoint]);
    // Everything after the point overwrites it: the rollback has 128 MiB of before-images to write.
    for (let at = 0; at < span; at += MiB) await client.write(at, randomBytes(MiB));
    await client.flush();
    await client.disconnect();
    const through = await lastSeq(agentDir);
    const status = async () =>
      (
        (await callMasterTarget(site.mtData, 'GET', `/status?machine=${id}`)).body.machines as {
          appliedThrough: number;
        }[]
      )[0]!;
    await until(
      'the master target to apply everything',
      async () => (await status()).appliedThrough >= through,
      120_000,
    );
    assert.equal(await agent.stop(), 0);
    agent = undefined;

    const marker = join(site.mtData, 'machines', id, 'failover.json');
    const moveTo = join(dir, 'recovered2');
    const asked = callMasterTarget(
      site.mtData,
      'POST',
      `/failover?machine=${id}&point=${point}&moveTo=${moveTo}`,
    );
    asked.catch(() => undefined);
    // The marker is durable before the first byte changes: kill right after it appears.
    const deadline = Date.now() + 60_000;
    while (!existsSync(marker)) {
      assert.ok(Date.now() < deadline, 'no failover marker after 60 s');
      await new Promise((r) => setImmediate(r));
    }
    site.mt.child.kill('SIGKILL');
    await killChild(site.mt.child);
    const killedIn = JSON.parse(readFileSync(marker, 'utf8')).state as string;
    assert.equal(killedIn, 'rolling-back', 'the kill came too late to interrupt the rollback');

    // The next start finishes the rollback (and the move) before it serves anything.
    const mtArgs = [
      ...['--data-dir', site.mtData, '--retention-dir', join(dir, 'site2', 'retention')],
      ...['--tls-dir', tls, '--name', 'mt1'],
    ];
    mtChild = await startComponent('master-target', mtArgs);
    assert.match(mtChild.stderr(), /a failover was interrupted: finishing the rollback/);
    const again = await callMasterTarget(site.mtData, 'POST', `/failover?machine=${id}&point=${point}`);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.point, point);
    const disks = again.body.disks as { path: string }[];
    assert.equal(disks[0]!.path, join(moveTo, 'disk-1.img'));
    assert.equal(JSON.parse(readFileSync(marker, 'utf8')).state, 'done');
    assertSameImage(
      disks[0]!.path,
      atPoint,
      'after the restart, the failed-over disk against the source at the point',
    );
    const rel = await callMasterTarget(site.mtData, 'POST', `/release?machine=${id}`);
    assert.equal(rel.status, 200, JSON.stringify(rel.body));
    assert.equal(existsSync(join(dir, 'site2', 'retention', id)), false);
    assert.ok(existsSync(disks[0]!.path));
  });
});
