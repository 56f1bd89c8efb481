// The main job on the embedded default, at this stage of the project: a disk
// captured by the agent, a real ext4 file system written through it, then the
// proof that the change log alone rebuilds that file system at a chosen point.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Agent } from '../agent/agent.js';
import { formatSummary, summarizeDataDir } from '../agent/log-summary.js';
import { applyLog } from '../changelog/apply.js';
import { exportMap } from '../nbd/export.js';
import { NbdServer } from '../nbd/server.js';
import { sparseCopy } from '../storage/sparse-copy.js';
import { missingTools, run, startBackground, waitFor } from '../util/exec.js';
import { formatSize } from '../util/size.js';
import { replayJournalAndCheck } from './ext4-check.js';

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
  const base = join(work, 'base.img');
  const fuseDir = join(work, 'fuse');
  const mnt = join(work, 'mnt');
  // A drill always starts from nothing: leftovers of an earlier run would be
  // taken for a crashed agent and redone, which is not what a drill shows.
  for (const old of ['agent', 'source']) rmSync(join(work, old), { recursive: true, force: true });
  for (const d of [fuseDir, mnt]) mkdirSync(d, { recursive: true });
  writeFileSync(disk, '');
  await truncate(disk, o.diskBytes);
  writeFileSync(base, '');
  await truncate(base, o.diskBytes);
  o.say(`work dir ${work}: a sparse ${formatSize(o.diskBytes)} disk image`);

  const agent = await Agent.open({
    dataDir: join(work, 'agent'),
    disks: [{ name: 'disk0', path: disk }],
    logger: o.logger,
  });
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

    o.say('');
    o.say(formatSummary(await summarizeDataDir(agent.dataDir)));
    o.say('');

    // Proof: rebuild the disk at the bookmark from the empty base and the log alone.
    const recovered = join(work, 'recovered.img');
    await sparseCopy(base, recovered);
    const applied = await applyLog(agent.log, 1, recovered, { to: bookmarkSeq });
    const fsck = await replayJournalAndCheck(recovered);
    let matching = 0;
    await run('mount', ['-o', 'loop,ro', recovered, mnt]);
    try {
      for (const [name, sum] of sums) {
        const path = join(mnt, name);
        if (existsSync(path) && createHash('sha256').update(readFileSync(path)).digest('hex') === sum)
          matching++;
      }
    } finally {
      await run('umount', [mnt]);
    }
    o.say(
      `rebuilt the disk at seq ${bookmarkSeq} from the log (${applied.records} records): ` +
        `e2fsck ${fsck.clean ? 'clean' : 'FOUND ERRORS'}, ${matching}/${sums.size} files match their sha256`,
    );
    if (!fsck.clean) o.say(fsck.output);
    const ok = fsck.clean && matching === sums.size;
    o.say(ok ? 'drill passed' : 'drill FAILED');
    return { ok, filesWritten: sums.size, filesMatching: matching, bookmarkSeq, fsckClean: fsck.clean };
  } finally {
    if (mounted) await run('umount', ['-l', mnt], [0, 1, 32]).catch(() => undefined);
    if (fuse.exitCode === null) {
      await run('fusermount3', ['-u', fuseDir], [0, 1]).catch(() => undefined);
      fuse.kill('SIGTERM');
    }
    await server.close();
    await agent.close();
  }
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
