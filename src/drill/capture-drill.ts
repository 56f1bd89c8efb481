// The main job on the embedded default, at this stage of the project: a disk
// captured by the agent, a real ext4 file system written through it, replicated to a
// master target through a process server (mutual TLS on loopback); then the proof
// that the recovery site has the file system at the bookmark (a failover image of that
// point, e2fsck and every file's sha256). The agent's log is trimmed as the process server
// acknowledges, so the log alone no longer rebuilds the disk: the replica does.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Agent } from '../agent/agent.js';
import { formatSummary, summarizeDataDir } from '../agent/log-summary.js';
import { exportImage } from '../master-target/export-image.js';
import { exportMap } from '../nbd/export.js';
import { NbdServer } from '../nbd/server.js';
import { missingTools, run, startBackground, waitFor } from '../util/exec.js';
import { formatSize } from '../util/size.js';
import { replayJournalAndCheck } from './ext4-check.js';
import { startReplicationStack } from './replication-stack.js';

export interface DrillOptions {
  workDir?: string;
  diskBytes: number;
  files: number;
  logger: Logger;
  say: (line: string) => void;
}

export interface DrillResult {
  ok: boolean;
  filesWritten: number;
  filesMatching: number;
  bookmarkSeq: number;
  fsckClean: boolean;
}

const TOOLS = ['nbdfuse', 'fusermount3', 'mkfs.ext4', 'e2fsck', 'mount', 'umount'];

export async function runCaptureDrill(o: DrillOptions): Promise<DrillResult> {
  const missing = await missingTools(TOOLS);
  if (missing.length) {
    throw new Error(`missing tools: ${missing.join(', ')} (run scripts/install-deps.sh as root)`);
  }
  if (process.getuid?.() !== 0) throw new Error('the drill mounts loop devices: run it as root');
  const work = o.workDir ?? mkdtempSync(join(tmpdir(), 'rebound-drill-'));
  mkdirSync(work, { recursive: true });
  const disk = join(work, 'disk.img');
  const fuseDir = join(work, 'fuse');
  const mnt = join(work, 'mnt');
  // A drill always starts from nothing: leftovers of an earlier run would be
  // taken for a crashed agent and redone, which is not what a drill shows.
  for (const old of [
    'agent',
    'source',
    'ca',
    'tls',
    'ps',
    'mt',
    'retention',
    'failover.img',
    'recovered.img',
  ])
    rmSync(join(work, old), { recursive: true, force: true });
  for (const d of [fuseDir, mnt]) mkdirSync(d, { recursive: true });
  writeFileSync(disk, '');
  await truncate(disk, o.diskBytes);
  o.say(`work dir ${work}: a sparse ${formatSize(o.diskBytes)} disk image`);

  const agent = await Agent.open({
    dataDir: join(work, 'agent'),
    disks: [{ name: 'disk0', path: disk }],
    logger: o.logger,
  });
  const site = await startReplicationStack(work, agent, o.logger);
  o.say(
    `recovery site: master target on 127.0.0.1:${site.masterTarget.port}, ` +
      `process server on 127.0.0.1:${site.processServer.port} (mutual TLS, a CA made for this drill)`,
  );
  // Bookmarks are recovery points only once the initial copy has ended.
  const copyMs = await site.waitForProtected(agent.machineId);
  o.say(`protected: initial replication of disk0 done in ${copyMs} ms`);
  const server = new NbdServer(exportMap(agent.exports()), o.logger);
  const addr = await server.listenTcp('127.0.0.1', 0);
  const url = `nbd://127.0.0.1:${addr.port}`;
  o.say(`agent serving disk0 on ${url}`);
  const fuse = startBackground('nbdfuse', [fuseDir, url]);
  let mounted = false;
  try {
    await waitFor('nbdfuse to expose the export', () => existsSync(join(fuseDir, 'nbd')));
    await run('mkfs.ext4', ['-q', '-F', join(fuseDir, 'nbd')]);
    await run('mount', ['-o', 'loop', join(fuseDir, 'nbd'), mnt]);
    mounted = true;
    o.say('ext4 created and mounted through nbdfuse + loop');

    // The workload runs in other processes (cp, sync): a process that serves the
    // export must never write through it itself, or kernel writeback waits on it.
    const { sums, bytes } = makeSourceTree(join(work, 'source'), o.files);
    await run('cp', ['-r', `${join(work, 'source')}/.`, mnt]);
    await run('sync', []);
    const bookmarkSeq = (await agent.bookmark('drill-files-written'))!;
    o.say(
      `wrote ${o.files} files (${formatSize(bytes)}), synced; bookmark 'drill-files-written' at seq ${bookmarkSeq}`,
    );
    await run('umount', [mnt]);
    mounted = false;
    await run('fusermount3', ['-u', fuseDir]);
    await new Promise((r) => (fuse.exitCode === null ? fuse.once('exit', r) : r(undefined)));

    // The recovery site: wait for the bookmark, then fail over to it as an image.
    const started = Date.now();
    const replica = await site.waitForBookmark(agent.machineId, 'drill-files-written');
    const point = replica.recoveryPoints().find((p) => p.tag === 'drill-files-written')!;
    o.say(
      `the master target holds the bookmark (seq ${point.seq}) ${Date.now() - started} ms after it was taken`,
    );
    const failover = join(work, 'failover.img');
    const view = replica.openView(point.seq);
    try {
      await exportImage(view, 1, o.diskBytes, failover);
    } finally {
      view.close();
    }
    const atSite = await checkImage(failover, sums, mnt);
    o.say(
      `failover image of the bookmark from the master target: e2fsck ${atSite.fsck.clean ? 'clean' : 'FOUND ERRORS'}, ` +
        `${atSite.matching}/${sums.size} files match their sha256`,
    );
    if (!atSite.fsck.clean) o.say(atSite.fsck.output);

    o.say('');
    o.say(formatSummary(await summarizeDataDir(agent.dataDir)));
    o.say('');

    const ok = atSite.fsck.clean && atSite.matching === sums.size;
    o.say(ok ? 'drill passed' : 'drill FAILED');
    return {
      ok,
      filesWritten: sums.size,
      filesMatching: atSite.matching,
      bookmarkSeq,
      fsckClean: atSite.fsck.clean,
    };
  } finally {
    if (mounted) await run('umount', ['-l', mnt], [0, 1, 32]).catch(() => undefined);
    if (fuse.exitCode === null) {
      await run('fusermount3', ['-u', fuseDir], [0, 1]).catch(() => undefined);
      fuse.kill('SIGTERM');
    }
    await server.close();
    await site.close();
    await agent.close();
  }
}

/** e2fsck (after a journal replay) and every file's sha256, on a read-only loop mount. */
async function checkImage(
  image: string,
  sums: Map<string, string>,
  mnt: string,
): Promise<{ fsck: { clean: boolean; output: string }; matching: number }> {
  const fsck = await replayJournalAndCheck(image);
  let matching = 0;
  await run('mount', ['-o', 'loop,ro', image, mnt]);
  try {
    for (const [name, sum] of sums) {
      const path = join(mnt, name);
      if (existsSync(path) && createHash('sha256').update(readFileSync(path)).digest('hex') === sum)
        matching++;
    }
  } finally {
    await run('umount', [mnt]);
  }
  return { fsck, matching };
}

/** Writes `count` files of assorted sizes under dir and returns their sha256 sums. */
function makeSourceTree(dir: string, count: number): { sums: Map<string, string>; bytes: number } {
  const sums = new Map<string, string>();
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const sub = `dir${i % 10}`;
    mkdirSync(join(dir, sub), { recursive: true });
    const data = randomBytes(1024 + ((i * 7919) % (192 * 1024)));
    const name = join(sub, `file${i}.bin`);
    writeFileSync(join(dir, name), data);
    sums.set(name, createHash('sha256').update(data).digest('hex'));
    bytes += data.length;
  }
  return { sums, bytes };
}
