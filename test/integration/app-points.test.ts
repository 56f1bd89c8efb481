// App-consistent points for real: ext4 on the agent's export (nbdfuse + loop), a writer
// copying files without pause, freeze/thaw hooks `fsfreeze -f/-u`. The image at each app
// point (the change log applied up to its bookmark) needs no journal recovery and is
// e2fsck -fn clean. A freeze that fails gives no app point, names its reason, takes a
// crash-consistent flush instead, and the thaw still runs. Scheduled points, a hook that
// times out, and an agent without hooks.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { applyLog } from '../../src/changelog/apply.js';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';
import { run, waitFor } from '../../src/util/exec.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { forceCleanup, mountExt4OverNbd } from '../support/ext4-mount.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const MiB = 1024 * 1024;

interface LogJson {
  log: { bookmarks: { seq: number; tag: string }[]; flushMarkers: number };
  live?: { appConsistent?: { taken: number; failed: number } };
}

async function agentLog(dataDir: string): Promise<LogJson> {
  const r = await runCli(['agent', 'log', '--json', '--data-dir', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The kinds of marker records in the log, in order, with their seq. */
async function markers(dataDir: string): Promise<{ seq: number; type: RecordType }[]> {
  const log = await ChangeLog.open(join(dataDir, 'log'), { maxBytes: 0, segmentBytes: 0, readOnly: true });
  const out: { seq: number; type: RecordType }[] = [];
  for await (const r of log.records())
    if (r.type === RecordType.Flush || r.type === RecordType.Bookmark) out.push({ seq: r.seq, type: r.type });
  return out;
}

/** The hook log's lines; every freeze attempt must be followed by its thaw. */
function hookLines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').filter(Boolean) : [];
}

function assertEveryFreezeThawed(lines: string[]): void {
  let open = false;
  for (const l of lines) {
    if (l === 'freeze-start') {
      assert.equal(open, false, `a freeze started before the previous one was thawed: ${lines.join(',')}`);
      open = true;
    } else if (l === 'thaw') {
      assert.equal(open, true, `a thaw without a freeze: ${lines.join(',')}`);
      open = false;
    }
  }
  assert.equal(open, false, `the last freeze was never thawed: ${lines.join(',')}`);
}

describe('app-consistent points', { timeout: 600_000 }, () => {
  const { dir, cleanup } = scratchDir('apppoints');
  const agents: RunningAgent[] = [];
  let writer: ChildProcess | undefined;
  /** Kills the writer's whole process group (its cp and rm too), so the mount is not busy. */
  const stopWriter = async () => {
    const w = writer;
    writer = undefined;
    if (!w || w.exitCode !== null || w.signalCode !== null) return;
    const exited = new Promise((r) => w.once('exit', r));
    process.kill(-w.pid!, 'SIGKILL');
    await exited;
    await run('sh', ['-c', `while pgrep -g ${w.pid} >/dev/null; do sleep 0.05; done`]);
  };
  after(async () => {
    if (process.env.REBOUND_TEST_DEBUG) for (const a of agents) console.error(a.stderr());
    await stopWriter();
    await forceCleanup(join(dir, 'ext4'));
    for (const a of agents) await a.kill();
    cleanup();
  });

  test('ext4 under a copying writer: every app point is clean without journal recovery', async () => {
    const work = join(dir, 'ext4');
    mkdirSync(work, { recursive: true });
    const dataDir = join(dir, 'agent-ext4');
    const disk = sparseImage(join(dir, 'ext4.img'), 128 * MiB);
    const mnt = join(work, 'mnt'); // where mountExt4OverNbd mounts
    const hooks = join(dir, 'ext4-hooks.log');
    const refuse = join(dir, 'refuse-freeze');
    // Never fsfreeze a directory that is not our mount point: that would freeze its parent file system.
    const freeze =
      `echo freeze-start >> ${hooks}; ` +
      `if [ -e ${refuse} ]; then echo 'freeze refused by the test' >&2; exit 3; fi; ` +
      `mountpoint -q ${mnt} && fsfreeze -f ${mnt}`;
    const thaw = `echo thaw >> ${hooks}; if mountpoint -q ${mnt}; then fsfreeze -u ${mnt}; fi`;
    const agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${disk}`,
      '--app-consistent-minutes',
      '0',
      '--freeze-script',
      freeze,
      '--thaw-script',
      thaw,
      '--hook-timeout',
      '30',
    ]);
    agents.push(agent);
    const src = join(dir, 'src');
    for (let i = 0; i < 40; i++) {
      mkdirSync(join(src, `d${i % 4}`), { recursive: true });
      writeFileSync(join(src, `d${i % 4}`, `f${i}.bin`), randomBytes(1024 + ((i * 7919) % (96 * 1024))));
    }
    const m = await mountExt4OverNbd(`${agent.url}/d`, work, { mkfs: true });
    const points: { seq: number; tag: string }[] = [];
    let crashSeq = 0;
    try {
      // The writer copies the tree again and again, keeping the last three copies.
      writer = spawn(
        '/bin/sh',
        [
          '-c',
          `i=0; while :; do i=$((i+1)); cp -r ${src} ${mnt}/c$i; ` +
            `echo "round $i" > ${mnt}/c$i/done; rm -rf ${mnt}/c$((i-3)); sleep 0.05; done`,
        ],
        { stdio: 'ignore', detached: true },
      );
      const rounds = () =>
        readdirSync(mnt)
          .filter((n) => /^c\d+$/.test(n))
          .map((n) => Number(n.slice(1)));
      await waitFor('the writer to copy twice', () => rounds().some((n) => n >= 2), 60_000);
      for (let k = 0; k < 3; k++) {
        const r = await runCli([
          'agent',
          'app-point',
          '--json',
          '--data-dir',
          dataDir,
          '--tag',
          `quiet-${k}`,
        ]);
        assert.equal(r.code, 0, r.stderr);
        const p = JSON.parse(r.stdout);
        assert.equal(p.kind, 'app');
        assert.equal(p.tag, `quiet-${k}`);
        assert.ok(p.frozenMs >= 0);
        points.push({ seq: p.seq, tag: p.tag });
        await new Promise((res) => setTimeout(res, 300));
      }
      // Without a tag the point is named app:<ISO time>.
      const d = await runCli(['agent', 'app-point', '--data-dir', dataDir]);
      assert.equal(d.code, 0, d.stderr);
      const named =
        /^app-consistent point '(app:\d{4}-\d\d-\d\dT[\d:.]+Z)' at seq (\d+) \(frozen \d+ ms\)$/.exec(
          d.stdout.trim(),
        );
      assert.ok(named, d.stdout);
      points.push({ seq: Number(named[2]), tag: named[1]! });

      // A freeze that fails: no app point, the reason named, a flush instead, the thaw ran.
      writeFileSync(refuse, '');
      const before = (await agentLog(dataDir)).log;
      const f = await runCli(['agent', 'app-point', '--data-dir', dataDir, '--tag', 'refused']);
      rmSync(refuse);
      assert.equal(f.code, 1);
      assert.match(
        f.stderr,
        /^rebound: error: no app-consistent point: freeze script exited with code 3: freeze refused by the test; a crash-consistent flush was taken instead at seq (\d+)\n$/,
      );
      crashSeq = Number(/at seq (\d+)/.exec(f.stderr)![1]);
      assert.deepEqual(hookLines(hooks).slice(-2), ['freeze-start', 'thaw']);
      const afterFail = await agentLog(dataDir);
      assert.equal(
        afterFail.log.bookmarks.length,
        before.bookmarks.length,
        'a failed freeze added a bookmark',
      );
      assert.ok(afterFail.log.flushMarkers > before.flushMarkers);
      assert.deepEqual(
        (await markers(dataDir)).find((x) => x.seq === crashSeq),
        { seq: crashSeq, type: RecordType.Flush },
        'the fallback is a flush marker',
      );
      assert.equal(afterFail.live?.appConsistent?.taken, 4);
      assert.equal(afterFail.live?.appConsistent?.failed, 1);
      const text = await runCli(['agent', 'log', '--data-dir', dataDir]);
      assert.match(
        text.stdout,
        /app-consistent points: off \(interval 0: only on request\); 4 taken, 1 failed/,
      );
      assert.match(text.stdout, /last: failed at .*: freeze script exited with code 3/);
      assert.match(agent.stderr(), /no app-consistent point: taking a crash-consistent flush instead/);
    } finally {
      await stopWriter();
      await m.unmount();
    }
    assertEveryFreezeThawed(hookLines(hooks));
    assert.equal(await agent.stop(), 0);

    // Each app point: the log applied up to its bookmark is a clean file system with a
    // journal that needs no recovery (the freeze checkpointed it).
    assert.deepEqual(
      (await agentLog(dataDir)).log.bookmarks.map((b) => [b.seq, b.tag]),
      points.map((p) => [p.seq, p.tag]),
    );
    const image = sparseImage(join(dir, 'point.img'), 128 * MiB);
    const log = await ChangeLog.open(join(dataDir, 'log'), { maxBytes: 0, segmentBytes: 0, readOnly: true });
    let from = 1;
    for (const p of points) {
      await applyLog(log, 1, image, { from, to: p.seq });
      from = p.seq + 1;
      const features = (await run('dumpe2fs', ['-h', image])).stdout;
      assert.match(features, /Filesystem features:/);
      assert.doesNotMatch(features, /needs_recovery/, `point ${p.tag} needs journal recovery`);
      const fsck = await run('e2fsck', ['-fn', image], [0, 1, 2, 4, 8]);
      assert.equal(fsck.code, 0, `point ${p.tag} (seq ${p.seq}): ${fsck.stdout}${fsck.stderr}`);
    }
    // The control: the crash-consistent flush taken while the file system was live does
    // need journal recovery, so the check above tells the two apart.
    await applyLog(log, 1, image, { from, to: crashSeq });
    assert.match((await run('dumpe2fs', ['-h', image])).stdout, /needs_recovery/);
  });

  test('scheduled points at the policy frequency; a hook that times out is killed and the thaw runs', async () => {
    const dataDir = join(dir, 'agent-sched');
    const hooks = join(dir, 'sched-hooks.log');
    const slow = join(dir, 'slow-freeze');
    const agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${sparseImage(join(dir, 'sched.img'), 8 * MiB)}`,
      '--app-consistent-minutes',
      '0.01',
      '--freeze-script',
      `echo freeze-start >> ${hooks}; if [ -e ${slow} ]; then sleep 30; fi`,
      '--thaw-script',
      `echo thaw >> ${hooks}`,
      '--hook-timeout',
      '1',
    ]);
    agents.push(agent);
    await waitFor(
      'two scheduled app points',
      async () => (await agentLog(dataDir)).log.bookmarks.filter((b) => b.tag.startsWith('app:')).length >= 2,
      20_000,
    );
    const text = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.match(text.stdout, /app-consistent points: every 0\.01 min, next at /);
    assert.match(text.stdout, /last: app point 'app:/);

    writeFileSync(slow, '');
    const t0 = Date.now();
    const r = await runCli(['agent', 'app-point', '--data-dir', dataDir, '--tag', 'slow']);
    rmSync(slow);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /no app-consistent point: freeze script timed out after 1 s \(killed\); a crash-consistent flush was taken instead at seq \d+/,
    );
    assert.ok(Date.now() - t0 < 15_000);
    assert.ok(!(await agentLog(dataDir)).log.bookmarks.some((b) => b.tag === 'slow'));
    assert.equal(await agent.stop(), 0);
    assertEveryFreezeThawed(hookLines(hooks));
  });

  test('an agent killed during a freeze runs the thaw when it starts again', async () => {
    const dataDir = join(dir, 'agent-killed');
    const hooks = join(dir, 'killed-hooks.log');
    const pidFile = join(dir, 'freeze.pid');
    const args = [
      '--data-dir',
      dataDir,
      '--disk',
      `d=${sparseImage(join(dir, 'killed.img'), MiB)}`,
      '--app-consistent-minutes',
      '0',
      '--freeze-script',
      `echo freeze-start >> ${hooks}; echo $$ > ${pidFile}; exec sleep 60`,
      '--thaw-script',
      `echo thaw >> ${hooks}`,
    ];
    let agent = await startAgent(args);
    agents.push(agent);
    const request = runCli(['agent', 'app-point', '--data-dir', dataDir]);
    await waitFor(
      'the freeze to start',
      () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').includes('\n'),
    );
    await agent.kill();
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); // the orphaned freeze script
    assert.equal((await request).code, 1);
    assert.deepEqual(hookLines(hooks), ['freeze-start']);
    agent = await startAgent(args);
    agents.push(agent);
    assert.deepEqual(hookLines(hooks), ['freeze-start', 'thaw']);
    assert.match(agent.stderr(), /the agent stopped during a freeze: ran the thaw hook now/);
    assert.ok(!existsSync(join(dataDir, 'app-point.freezing')));
    assert.equal(await agent.stop(), 0);
  });

  test('an agent without hooks takes no app point and says why', async () => {
    const dataDir = join(dir, 'agent-nohooks');
    const agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${sparseImage(join(dir, 'n.img'), MiB)}`,
    ]);
    agents.push(agent);
    const r = await runCli(['agent', 'app-point', '--data-dir', dataDir]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^rebound: error: no app-consistent hooks: start the agent with --freeze-script and --thaw-script/,
    );
    const text = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.match(text.stdout, /app-consistent points: off \(no freeze\/thaw hooks\); 0 taken, 0 failed/);
    assert.match(
      text.stdout,
      /acknowledgement mode async: a FLUSH is acknowledged once in the agent's change log/,
    );
    assert.equal(await agent.stop(), 0);
  });
});
