// An operator's view of the recovery site: `rebound master-target points`, `view` (read
// with qemu-img over NBD) and `export`, against running processes, with the exact errors
// for a point or a machine that does not exist.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, startRecoverySite } from '../support/trio.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;
const DISK = 16 * MiB;

describe('rebound master-target points | view | export', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('mtcli');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: RunningComponent | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    await killChild(mt?.child);
    cleanup();
  });

  test('points list the bookmarks; a view and an export of a point equal the source at that point', async () => {
    const tls = await issueTrioCerts(dir);
    const site = await startRecoverySite(dir, tls);
    ({ mt, ps } = site);
    const mtData = site.mtData;
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    agent = await startAgent([
      ...['--data-dir', dataDir, '--disk', `root=${disk}`],
      ...['--process-server', `127.0.0.1:${ps.port}`, '--tls-dir', tls, '--name', 'a1'],
    ]);
    const machine = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const client = await TestNbdClient.connect({ port: agent.port }, 'root');
    for (let i = 0; i < 40; i++) await client.write(i * 65536, randomBytes(8192));
    await client.flush();
    const b = await runCli(['agent', 'bookmark', '--json', '--data-dir', dataDir, '--tag', 'before-upgrade']);
    assert.equal(b.code, 0, b.stderr);
    const bookmark = JSON.parse(b.stdout).seq as number;
    const atBookmark = readFileSync(disk);
    await new Promise((r) => setTimeout(r, 20)); // a moment strictly after the bookmark
    const afterBookmark = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 40; i++) await client.write(i * 65536 + 8192, randomBytes(4096));
    await client.flush();
    await client.disconnect();

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
    const deadline = Date.now() + 30_000;
    while (!((await points())?.appliedThrough > bookmark + 40)) {
      assert.ok(Date.now() < deadline, 'the master target never applied the writes after the bookmark');
      await new Promise((r) => setTimeout(r, 100));
    }
    const listed = (await points()).points as { seq: number; kind: string; tag: string }[];
    assert.deepEqual(
      listed.filter((p) => p.kind === 'app').map((p) => [p.seq, p.tag]),
      [[bookmark, 'before-upgrade']],
    );

    // A view of the app-consistent point, read by a real NBD client.
    const v = await runCli([
      'master-target',
      'view',
      '--json',
      '--data-dir',
      mtData,
      '--machine',
      machine,
      '--point',
      'latest-app',
    ]);
    assert.equal(v.code, 0, v.stderr);
    const view = JSON.parse(v.stdout) as { id: number; point: number; url: string; exports: string[] };
    assert.equal(view.point, bookmark);
    assert.deepEqual(view.exports, ['root']);
    const copy = join(dir, 'view.img');
    await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `${view.url}/root`, copy]);
    assert.ok(readFileSync(copy).equals(atBookmark), 'the view of the bookmark differs from the source then');
    const closed = await runCli(['master-target', 'view', '--data-dir', mtData, '--close', String(view.id)]);
    assert.equal(closed.stdout.trim(), `view ${view.id} closed`);

    // A copy-on-write view (a test failover writes to its disks): writes read back, unaligned
    // ones merged with the point's bytes; the point itself is untouched.
    const w = await runCli(
      ['master-target', 'view', '--json', '--writable', '--data-dir', mtData].concat([
        '--machine',
        machine,
        '--point',
        'latest-app',
      ]),
    );
    assert.equal(w.code, 0, w.stderr);
    const cow = JSON.parse(w.stdout) as { id: number; url: string; writable: boolean };
    assert.equal(cow.writable, true);
    const io = (cmd: string) => exec('qemu-io', ['-f', 'raw', '-c', cmd, `${cow.url}/root`]);
    await io('write -P 0x5a 1000 10000');
    await io('write -z 65536 4096');
    const cowCopy = join(dir, 'cow.img');
    await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `${cow.url}/root`, cowCopy]);
    const expected = Buffer.from(atBookmark);
    expected.fill(0x5a, 1000, 11000);
    expected.fill(0, 65536, 65536 + 4096);
    assert.ok(readFileSync(cowCopy).equals(expected), 'the copy-on-write view does not read back its writes');
    const cowClosed = await runCli([
      'master-target',
      'view',
      '--data-dir',
      mtData,
      '--close',
      String(cow.id),
    ]);
    assert.equal(cowClosed.code, 0, cowClosed.stderr);
    assert.deepEqual(readdirSync(join(mtData, 'scratch')), [], 'the scratch file was not removed');
    const reopened = await runCli(
      ['master-target', 'view', '--json', '--data-dir', mtData].concat([
        '--machine',
        machine,
        '--point',
        'latest-app',
      ]),
    );
    const fresh = JSON.parse(reopened.stdout) as { id: number; url: string };
    const freshCopy = join(dir, 'fresh.img');
    await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `${fresh.url}/root`, freshCopy]);
    assert.ok(readFileSync(freshCopy).equals(atBookmark), 'the writes reached the point');
    await runCli(['master-target', 'view', '--data-dir', mtData, '--close', String(fresh.id)]);

    // An export by time, and of the latest point.
    const byTime = join(dir, 'by-time.img');
    const e = await runCli([
      ...['master-target', 'export', '--data-dir', mtData, '--machine', machine],
      ...['--point', afterBookmark, '--out', byTime],
    ]);
    assert.equal(e.code, 0, e.stderr);
    assert.ok(readFileSync(byTime).equals(atBookmark), 'the export at a time after the bookmark differs');
    const latest = join(dir, 'latest.img');
    const l = await runCli([
      'master-target',
      'export',
      '--data-dir',
      mtData,
      '--machine',
      machine,
      '--out',
      latest,
    ]);
    assert.equal(l.code, 0, l.stderr);
    assert.ok(readFileSync(latest).equals(readFileSync(disk)), 'the latest export differs from the source');

    // Errors name the problem; nothing is written.
    const bad = await runCli([
      'master-target',
      'view',
      '--data-dir',
      mtData,
      '--machine',
      machine,
      '--point',
      '7x',
    ]);
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr.trim(),
      "rebound: error: point '7x' is not latest, latest-app, a recovery point id or an ISO time (2026-11-23T08:00:00Z)",
    );
    const unknown = await runCli(['master-target', 'points', '--data-dir', mtData, '--machine', 'nope']);
    assert.equal(
      unknown.stderr.trim(),
      "rebound: error: no machine 'nope' has streamed to this master target",
    );
    const again = await runCli([
      'master-target',
      'export',
      '--data-dir',
      mtData,
      '--machine',
      machine,
      '--out',
      latest,
    ]);
    assert.match(again.stderr, /already exists: refusing to overwrite it/);
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
