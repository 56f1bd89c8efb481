// A full retention volume, for real: the master target's retention dir is an 8 MiB
// tmpfs. Overwrites through the agent fill the undo journal; the master target reports
// the named problem retention-volume-full (dir and free bytes), the process server's
// forwarder says why it waits and keeps the backlog, nothing of the refused batch is
// applied. The tmpfs is then grown: replication resumes by itself, and every bookmark's
// view equals the source as it was then (no point lost).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import type { ProcessServer } from '../../src/process-server/process-server.js';
import type { RunningAgent } from '../support/agent-process.js';
import { captureLogs } from '../support/log-capture.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { mountTmpfs, unmountTmpfs } from '../support/tmpfs.js';
import {
  bookmark,
  issueTrioCerts,
  startMasterTarget,
  startProcessServer,
  startShippingAgent,
  until,
  waitProtected,
} from '../support/trio.js';

const MiB = 1024 * 1024;
const DISK = 32 * MiB;
/** Each generation overwrites this much: its before-images are that big. */
const SPAN = 3 * MiB;
const GENERATIONS = 5;

describe('a full retention volume pauses replication; no point is lost', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('retention-full');
  const retentionDir = join(dir, 'retention');
  let mounted = false;
  let agent: RunningAgent | undefined;
  let ps: ProcessServer | undefined;
  let mt: MasterTarget | undefined;
  after(async () => {
    await agent?.kill();
    await ps?.close();
    await mt?.close();
    if (mounted) unmountTmpfs(retentionDir);
    cleanup();
  });

  test('named error while full, resumes by itself once the volume grows', async (t) => {
    mounted = mountTmpfs(retentionDir, '8m');
    if (!mounted) {
      t.skip('cannot mount a tmpfs here (needs root)');
      return;
    }
    const tls = await issueTrioCerts(dir);
    const mtLogs = captureLogs();
    mt = await startMasterTarget(tls, { dataDir: join(dir, 'mt'), retentionDir, logger: mtLogs.logger });
    ps = await startProcessServer(tls, {
      dataDir: join(dir, 'ps'),
      logger: captureLogs().logger,
      masterTargetPort: mt.port,
    });
    const agentDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    const started = await startShippingAgent(tls, agentDir, disk, ps.port);
    await waitProtected(agentDir);
    agent = started.agent;
    const { machineId } = started;
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');

    // Generation 0 writes over holes (zero before-images, nearly free); each later one
    // overwrites the same span, so its before-images take SPAN bytes of the 8 MiB.
    const marks: { seq: number; image: Buffer }[] = [];
    for (let g = 0; g < GENERATIONS; g++) {
      for (let off = 0; off < SPAN; off += 256 * 1024) await client.write(off, randomBytes(256 * 1024));
      await client.flush();
      marks.push({ seq: await bookmark(agentDir, `gen-${g}`), image: readFileSync(disk) });
    }
    await client.disconnect();
    const last = marks.at(-1)!.seq;

    // Full: a named problem on the master target, the reason on the process server.
    const problem = await until('the retention-volume-full problem', () =>
      mt!.replicaHealthProblems(machineId).find((p) => p.code === 'retention-volume-full'),
    );
    assert.match(problem.message, /^retention volume full: /);
    assert.ok(problem.message.includes(join(retentionDir, machineId)), problem.message);
    assert.match(problem.message, / has \d+ bytes free /);
    const forwarder = await until('the forwarder to report the reason', () => {
      const f = ps!.status().find((s) => s.machineId === machineId)?.forwarder;
      return f?.lastError?.includes('retention volume full') ? f : undefined;
    });
    assert.match(forwarder.lastError!, /retention volume full: .* bytes free/);
    assert.ok(
      mtLogs.lines.some((l) => l.level === 50 && l.msg.startsWith('retention volume full: ')),
      'the master target logs the problem as an error',
    );
    // Paused, not half-applied: the replica stops at a batch boundary with no journal
    // record beyond it; the backlog waits in the process server's cache.
    const replica = mt.replica(machineId)!;
    assert.ok(replica.appliedThrough < last, 'the last bookmark cannot have been applied');
    assert.equal(replica.journal.lastSeq, replica.appliedThrough);
    const cache = await ps.cache(machineId);
    assert.ok(cache.nextSeq > last && cache.trimmedThrough <= replica.appliedThrough);
    // The points it has are intact meanwhile.
    for (const m of marks.filter((x) => x.seq <= replica.appliedThrough)) {
      const v = replica.openView(m.seq);
      assert.ok((await v.read(1, 0, DISK)).equals(m.image), `view of ${m.seq} while paused`);
      v.close();
    }

    // Space returns: replication resumes by itself.
    execFileSync('mount', ['-o', 'remount,size=256m', retentionDir]);
    await until('the last bookmark to be applied', () => replica.appliedThrough >= last, 60_000);
    await until('the problem to clear', () => mt!.replicaHealthProblems(machineId).length === 0);
    assert.ok(mtLogs.lines.some((l) => l.msg === 'retention volume has room again: replication resumes'));
    // While paused, a new stream was turned away at its hello (no backlog sent in vain).
    assert.ok(
      mtLogs.lines.some(
        (l) => l.msg === 'closing wire connection' && String(l.reason).startsWith('retention volume full: '),
      ),
    );
    const points = replica.recoveryPoints().filter((p) => p.kind === 'app');
    assert.deepEqual(
      points.map((p) => p.seq),
      marks.map((m) => m.seq),
    );
    for (const m of marks) {
      const v = replica.openView(m.seq);
      assert.ok((await v.read(1, 0, DISK)).equals(m.image), `the view of bookmark ${m.seq} differs`);
      v.close();
    }
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
