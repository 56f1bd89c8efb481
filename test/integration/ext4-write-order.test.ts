// A real ext4 file system on the agent's export (nbdfuse + loop; nbdfuse opens
// 3 connections because the agent advertises CAN_MULTI_CONN). Proves:
//  - the file system comes out clean with every file's sha256 intact;
//  - write-order fidelity: the log applied to the base image up to any flush
//    marker gives a file system that e2fsck finds clean.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { applyLog } from '../../src/changelog/apply.js';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';
import { replayJournalAndCheck } from '../../src/drill/ext4-check.js';
import { sparseCopy } from '../../src/storage/sparse-copy.js';
import { runCli, startAgent } from '../support/agent-process.js';
import { forceCleanup, mountExt4OverNbd } from '../support/ext4-mount.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;
const ROUNDS = 60;

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

describe('ext4 through nbdfuse + loop on the agent', { timeout: 600_000 }, () => {
  const { dir, cleanup } = scratchDir('ext4');
  const dataDir = join(dir, 'agent');
  const disk = sparseImage(join(dir, 'disk.img'), 256 * MiB);
  const base = sparseImage(join(dir, 'base.img'), 256 * MiB); // the disk before seq 1: all zeroes
  let formattedSeq = 0;
  let expected = new Map<string, string>();

  after(async () => {
    await forceCleanup(dir);
    cleanup();
  });

  test('copy a tree and churn it with a sync per round; e2fsck -fn clean, every sha256 matches', async () => {
    // The source tree lives outside the mount; the workload copies, rewrites,
    // deletes and renames inside it, with a sync (NBD FLUSH) after every round.
    const src = join(dir, 'src');
    for (let i = 0; i < 120; i++) {
      mkdirSync(join(src, `d${i % 6}`), { recursive: true });
      writeFileSync(join(src, `d${i % 6}`, `f${i}.bin`), randomBytes(512 + ((i * 104_729) % (300 * 1024))));
    }
    const agent = await startAgent(['--data-dir', dataDir, '--disk', `disk0=${disk}`]);
    try {
      const m = await mountExt4OverNbd(`${agent.url}/disk0`, dir, { mkfs: true });
      try {
        await exec('sync', []);
        const bm = await runCli(['agent', 'bookmark', '--json', '--data-dir', dataDir, '--tag', 'formatted']);
        assert.equal(bm.code, 0, bm.stderr);
        formattedSeq = JSON.parse(bm.stdout).seq;
        const script = `
          set -e
          cd "$MNT"
          cp -r "$SRC/." tree
          sync
          for i in $(seq 1 ${ROUNDS}); do
            mkdir -p r$((i % 7))
            dd if=/dev/urandom of=r$((i % 7))/new$i bs=4k count=$(( (i * 37) % 64 + 1 )) status=none
            cp tree/d$((i % 6))/f$(( (i * 13) % 120 / 6 * 6 + i % 6 )).bin r$((i % 7))/copy$i 2>/dev/null || true
            if [ $i -gt 5 ]; then rm -f r$(( (i - 5) % 7 ))/new$((i - 5)); fi
            if [ -e r$((i % 7))/copy$((i - 7)) ]; then mv r$((i % 7))/copy$((i - 7)) r$((i % 7))/moved$i; fi
            dd if=/dev/urandom of=tree/d$((i % 6))/f$(( i % 120 )).bin bs=1k count=$(( i % 200 + 1 )) conv=notrunc status=none 2>/dev/null || true
            sync
          done
        `;
        await exec('bash', ['-c', script], { env: { ...process.env, MNT: m.mnt, SRC: src } });
        expected = sha256Tree(m.mnt);
        assert.ok(expected.size > 150, `files written: ${expected.size}`);
      } finally {
        await m.unmount();
      }
    } finally {
      assert.equal(await agent.stop(), 0);
    }
    // What a user checks: the disk as a file, fsck'd and mounted read-only.
    const check = join(dir, 'check.img');
    const agent2 = await startAgent(['--data-dir', dataDir, '--disk', `disk0=${disk}`]);
    try {
      await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `${agent2.url}/disk0`, check]);
    } finally {
      await agent2.stop();
    }
    const fsck = await exec('e2fsck', ['-fn', check]);
    assert.match(fsck.stdout, /clean|files/);
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    await exec('mount', ['-o', 'loop,ro', check, ro]);
    try {
      assert.deepEqual(sha256Tree(ro), expected);
    } finally {
      await exec('umount', [ro]);
    }
  });

  test('the log applied up to 50+ flush markers gives a clean file system (write-order fidelity)', async (t) => {
    assert.ok(formattedSeq > 0, 'the previous test ran');
    const log = await ChangeLog.open(join(dataDir, 'log'), { maxBytes: 0, segmentBytes: 0, readOnly: true });
    const markers: number[] = [];
    let lastSeq = 0;
    for await (const r of log.records(formattedSeq + 1)) {
      if (r.type === RecordType.Flush) markers.push(r.seq);
      lastSeq = r.seq;
    }
    assert.ok(markers.length >= 50, `flush markers after formatting: ${markers.length}`);
    // Check at least 50 markers spread evenly over the run, always including the last.
    const step = markers.length / 50;
    const chosen = new Set<number>();
    for (let i = 0; i < 50; i++) chosen.add(markers[Math.floor(i * step)]);
    chosen.add(markers[markers.length - 1]);

    const rolling = join(dir, 'rolling.img');
    await sparseCopy(base, rolling);
    let applied = 0;
    const unclean: string[] = [];
    for (const seq of [...chosen].sort((a, b) => a - b)) {
      await applyLog(log, 1, rolling, { from: applied + 1, to: seq });
      applied = seq;
      const probe = join(dir, 'probe.img');
      await sparseCopy(rolling, probe);
      const r = await replayJournalAndCheck(probe);
      if (!r.clean) unclean.push(`seq ${seq}: ${r.output}`);
    }
    t.diagnostic(`${markers.length} flush markers after formatting; ${chosen.size} checked with e2fsck -fn`);
    assert.deepEqual(unclean, [], 'every chosen flush marker is fsck-clean');
    assert.ok(chosen.size >= 50);

    // And the whole log rebuilds the final disk byte for byte.
    await applyLog(log, 1, rolling, { from: applied + 1, to: lastSeq });
    await exec('cmp', [rolling, disk]);
    assert.ok(statSync(rolling).size === 256 * MiB);
  });
});
