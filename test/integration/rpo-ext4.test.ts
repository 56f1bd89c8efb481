// End to end on one machine, every hop over mutual TLS, each component its own process:
// ext4 through nbdfuse + loop on the agent, a tree copied in and synced; then wait until
// the master target reports an RPO under 5 s that covers the sync. The latest view, exported
// to an image while the source stays mounted, passes `e2fsck -fn` (after the journal replay
// a recovered machine's mount would do) and every file's sha256 equals the source's.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { replayJournalAndCheck } from '../../src/drill/ext4-check.js';
import { run } from '../../src/util/exec.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent } from '../support/component-process.js';
import { forceCleanup, mountExt4OverNbd, type NbdfuseMount } from '../support/ext4-mount.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, startRecoverySite } from '../support/trio.js';

const MiB = 1024 * 1024;
const RPO_GOAL_SECONDS = 5;

function sha256Tree(root: string): Map<string, string> {
  const sums = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile())
        sums.set(relative(root, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(root);
  return sums;
}

interface StatusJson {
  rpoSeconds: number | null;
  currentAsOf: string | null;
  appliedThrough: number;
  health: { code: string }[];
}

describe('ext4 over TLS to the master target: RPO and the latest view', { timeout: 300_000 }, () => {
  const { dir, cleanup } = scratchDir('rpo-ext4');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: RunningComponent | undefined;
  let source: NbdfuseMount | undefined;
  const checkMnt = join(dir, 'check');
  after(async () => {
    await run('umount', ['-l', checkMnt], [0, 1, 32]).catch(() => undefined);
    await source?.unmount().catch(() => undefined);
    await forceCleanup(dir);
    await agent?.kill();
    await killChild(ps?.child);
    await killChild(mt?.child);
    cleanup();
  });

  test('copy a tree, sync, RPO < 5 s; latest is fsck-clean and every sha256 matches', async () => {
    const tls = await issueTrioCerts(dir);
    const site = await startRecoverySite(dir, tls);
    ({ mt, ps } = site);
    const mtData = site.mtData;
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), 256 * MiB);
    agent = await startAgent([
      ...['--data-dir', dataDir, '--disk', `root=${disk}`],
      ...['--process-server', `127.0.0.1:${ps.port}`, '--tls-dir', tls, '--name', 'a1'],
    ]);
    const machine = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;

    // The tree, outside the mount: files of assorted sizes in a few directories.
    const src = join(dir, 'src');
    for (let i = 0; i < 150; i++) {
      const sub = join(src, `d${i % 7}`, i % 2 ? 'deep' : '');
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, `f${i}.bin`), randomBytes(256 + ((i * 104_729) % (400 * 1024))));
    }
    const expected = sha256Tree(src);

    source = await mountExt4OverNbd(agent.url, join(dir, 'source'), { mkfs: true });
    // The workload runs in other processes: this process serves nothing, but cp and sync
    // are what a real workload would be.
    await run('cp', ['-r', `${src}/.`, source.mnt]);
    await run('sync', ['-f', source.mnt]);
    const synced = Date.now();

    // The master target proves it holds everything written before a moment after the sync.
    const status = async (): Promise<StatusJson> => {
      const r = await runCli([
        'master-target',
        'status',
        '--json',
        '--data-dir',
        mtData,
        '--machine',
        machine,
      ]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).machines[0] as StatusJson;
    };
    const deadline = Date.now() + 120_000;
    let s = await status();
    while (
      !(s.rpoSeconds !== null && s.rpoSeconds < RPO_GOAL_SECONDS && Date.parse(s.currentAsOf ?? '') >= synced)
    ) {
      assert.ok(Date.now() < deadline, `RPO never got under ${RPO_GOAL_SECONDS} s: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 250));
      s = await status();
    }
    const reached = Date.now() - synced;
    assert.deepEqual(s.health, []);

    // The latest view, while the source stays mounted and replication goes on.
    const image = join(dir, 'latest.img');
    const e = await runCli([
      ...['master-target', 'export', '--json', '--data-dir', mtData, '--machine', machine],
      ...['--point', 'latest', '--out', image],
    ]);
    assert.equal(e.code, 0, e.stderr);
    assert.ok(JSON.parse(e.stdout).point >= s.appliedThrough);
    const fsck = await replayJournalAndCheck(image);
    assert.ok(fsck.clean, `e2fsck -fn found problems in the latest view:\n${fsck.output}`);
    mkdirSync(checkMnt, { recursive: true });
    await run('mount', ['-o', 'loop,ro', image, checkMnt]);
    let got: Map<string, string>;
    try {
      got = sha256Tree(checkMnt);
    } finally {
      await run('umount', [checkMnt]);
    }
    assert.equal(got.size, expected.size, 'the latest view has the same number of files');
    for (const [name, sum] of expected)
      assert.equal(got.get(name), sum, `${name} differs in the latest view`);

    await source.unmount();
    source = undefined;
    assert.equal(await agent.stop(), 0);
    agent = undefined;
    console.log(
      `RPO under ${RPO_GOAL_SECONDS} s covering the sync ${reached} ms after it; ${expected.size} files`,
    );
  });
});
