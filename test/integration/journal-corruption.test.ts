// A flipped byte in an undo-journal segment on the retention volume, at service level:
// the master target is stopped, one byte of a before-image that an older bookmark needs
// is flipped, and the master target restarts. Opening a view of that bookmark fails with
// an error naming the file, offset and seq; views and exports of points that do not
// need it still equal the source; the problem is listed; replication goes on.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { JOURNAL_HEADER_SIZE } from '../../src/master-target/journal-record.js';
import { segmentFileName } from '../../src/master-target/undo-journal.js';
import { type RunningAgent, runCli } from '../support/agent-process.js';
import { killChild, type RunningComponent, startComponent } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { bookmark, issueTrioCerts, startShippingAgent, until, waitProtected } from '../support/trio.js';

const MiB = 1024 * 1024;
const DISK = 16 * MiB;

describe('a flipped byte in the undo journal', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('journal-corruption');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: RunningComponent | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    await killChild(mt?.child);
    cleanup();
  });

  test('is named when a view needs it, never used; other points still work', async () => {
    const tls = await issueTrioCerts(dir);
    const mtData = join(dir, 'mt');
    const retention = join(dir, 'retention');
    const mtArgs = [
      ...['--data-dir', mtData, '--retention-dir', retention, '--tls-dir', tls, '--name', 'mt1'],
    ];
    mt = await startComponent('master-target', mtArgs);
    const mtPort = mt.port;
    ps = await startComponent('process-server', [
      ...['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'],
      ...['--master-target', `127.0.0.1:${mtPort}`],
    ]);
    const agentDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    const started = await startShippingAgent(tls, agentDir, disk, ps.port);
    await waitProtected(agentDir);
    agent = started.agent;
    const machine = started.machineId;
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    const generation = async (from: number, tag: string) => {
      for (let off = from; off < from + MiB; off += 128 * 1024)
        await client.write(off, randomBytes(128 * 1024));
      await client.flush();
      return { seq: await bookmark(agentDir, tag), image: readFileSync(disk) };
    };
    // b0: region A written; b1: A overwritten (its before-images hold b0's data, which
    // only points before b1 need); b2: region B written.
    const b0 = await generation(0, 'b0');
    const b1 = await generation(0, 'b1');
    const b2 = await generation(8 * MiB, 'b2');
    const points = async () => {
      const r = await runCli([
        'master-target',
        'points',
        '--json',
        '--data-dir',
        mtData,
        '--machine',
        machine,
      ]);
      return r.code === 0 ? JSON.parse(r.stdout) : undefined;
    };
    await until('b2 at the master target', async () => (await points())?.appliedThrough >= b2.seq);
    assert.equal(await mt.stop(), 0);

    // Flip one byte of the payload of a before-image of a change between b0 and b1.
    const seg = join(retention, machine, segmentFileName(1));
    const bytes = readFileSync(seg);
    let victim: { offset: number; seq: number } | undefined;
    for (let off = 0; off < bytes.length; ) {
      const seq = Number(bytes.readBigUInt64LE(off + 8));
      const payload = bytes.readUInt32LE(off + 36);
      if (!victim && seq > b0.seq && seq < b1.seq && payload > 0) victim = { offset: off, seq };
      off += JOURNAL_HEADER_SIZE + payload;
    }
    assert.ok(victim, 'a before-image of a change between b0 and b1');
    bytes[victim.offset + JOURNAL_HEADER_SIZE + 100] ^= 0x20;
    writeFileSync(seg, bytes);

    mt = await startComponent('master-target', mtArgs, mtPort);
    const named = `undo journal corrupt: ${seg} at offset ${victim.offset}: crc mismatch (seq ${victim.seq})`;
    assert.ok(mt.stderr().includes(named), 'the master target logs the damage at start');
    const view = (point: number) =>
      runCli([
        ...['master-target', 'view', '--json', '--data-dir', mtData, '--machine', machine],
        ...['--point', String(point)],
      ]);
    const refused = await view(b0.seq);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr.trim(),
      `rebound: error: recovery point ${b0.seq} needs the before-image of seq ${victim.seq} that cannot be used: ${named}`,
    );
    const exportOf = async (point: number, name: string) => {
      const out = join(dir, name);
      const r = await runCli([
        ...['master-target', 'export', '--data-dir', mtData, '--machine', machine],
        ...['--point', String(point), '--out', out],
      ]);
      assert.equal(r.code, 0, r.stderr);
      return readFileSync(out);
    };
    assert.ok((await exportOf(b1.seq, 'b1.img')).equals(b1.image), 'b1 does not need the damaged record');
    assert.ok((await exportOf(b2.seq, 'b2.img')).equals(b2.image));
    const ok = await view(b1.seq);
    assert.equal(ok.code, 0, ok.stderr);
    const listed = await points();
    assert.deepEqual(listed.problems, [
      {
        code: 'undo-journal-corrupt',
        message: `${named}: views of points that need it are refused; points after it are not affected`,
      },
    ]);

    // The operator's listing says it too, and which times can be chosen.
    const text = await runCli(['master-target', 'points', '--data-dir', mtData, '--machine', machine]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.split('\n');
    assert.match(lines[0]!, /^applied through seq \d+; points from seq 0 on are viewable$/);
    assert.match(
      lines[1]!,
      /^any time from \S+Z on can be chosen with --point <ISO time> \(retention 24 h\)$/,
    );
    assert.equal(lines[2], `problem undo-journal-corrupt: ${listed.problems[0].message}`);
    assert.ok(lines.some((l) => / app +b1$/.test(l)));
    const all = await runCli([
      'master-target',
      'points',
      '--json',
      '--all',
      '--data-dir',
      mtData,
      '--machine',
      machine,
    ]);
    assert.deepEqual(JSON.parse(all.stdout).points, listed.points, 'all recent: nothing thinned');
    assert.equal(listed.thinned, null);

    // Replication goes on after the restart.
    const b3 = await generation(0, 'b3');
    await until('b3 at the master target', async () => (await points())?.appliedThrough >= b3.seq);
    assert.ok((await exportOf(b3.seq, 'b3.img')).equals(b3.image));
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
