// Protection end to end with a registered agent, on SQLite and on PostgreSQL: `rebound agent
// register`, then `rebound agent serve` with no --process-server; `rebound protect` makes the
// server answer the agent's heartbeats with where to ship, the agent starts its shipper and the
// item becomes protected; `rebound unprotect --yes` makes the answer say "ship nothing", the
// agent stops shipping while it keeps serving its disks, and the replica goes; protecting again
// starts over.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { callAgent } from '../../src/agent/control-server.js';
import type { JobJson } from '../../src/cli/job-format.js';
import { type OpenDatabase, openDatabase } from '../../src/control-plane/db/database.js';
import type { ItemView } from '../../src/control-plane/items/item-view.js';
import { type RunningAgent, startAgent } from '../support/agent-process.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { LoopVolumes } from '../support/loop-volumes.js';
import { DATABASES, databaseUrl } from '../support/postgres.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { bookmark, until } from '../support/trio.js';

for (const kind of DATABASES) {
  describe(`protection of a registered agent on ${kind}`, { timeout: 240_000 }, () => {
    const scratch = scratchDir(`items-reg-${kind}`);
    const csDir = join(scratch.dir, 'cs');
    const agentDir = join(scratch.dir, 'agent');
    let db: OpenDatabase;
    let cs: RunningConfigServer;
    let agent: RunningAgent | undefined;
    let machineId: string;
    const heartbeatEnv = process.env.REBOUND_HEARTBEAT_SECONDS;

    const json = async <T>(args: string[]): Promise<T> => {
      const r = await cs.cli([...args, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as T;
    };
    const items = () => json<ItemView[]>(['items']);
    const shipping = async () => {
      const s = (await callAgent(agentDir, 'GET', '/status')).body as { shipper?: { processServer: string } };
      return s.shipper;
    };

    const volumes = new LoopVolumes();
    before(async () => {
      // Agents heartbeat every second here (15 s otherwise): the answer carries their replication.
      process.env.REBOUND_HEARTBEAT_SECONDS = '1';
      const url = await databaseUrl(kind, csDir);
      // The retention volume is a file system of its own, as S24 requires (not the install volume).
      const retention = await volumes.make('retention', 'ext4', { sizeMiB: 64 });
      cs = await startConfigServer({ dataDir: csDir, db: url, args: ['--retention-dir', retention] });
      db = await openDatabase(url);
      const now = new Date().toISOString();
      await db.db
        .insertInto('policies')
        .values({
          id: randomUUID(),
          name: 'gold',
          rpo_threshold_minutes: 15,
          retention_hours: 24,
          app_consistent_minutes: 0,
          crash_consistent_minutes: 5,
          ack_mode: 'process-server',
          is_failback: 0,
          parent_policy_id: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
      const reg = await cs.cli([
        ...['agent', 'register', '-i', cs.url.slice('https://'.length), '-P', join(csDir, 'passphrase')],
        ...['--os-type', 'linux', '--data-dir', agentDir, '--name', 'web'],
      ]);
      assert.equal(reg.code, 0, reg.stderr);
      const disk = sparseImage(join(scratch.dir, 'disk.img'), 8 << 20);
      agent = await startAgent([
        '--data-dir',
        agentDir,
        '--disk',
        `d=${disk}`,
        '--checkpoint-interval',
        '0.2',
      ]);
      const m = await until('the agent’s disk reported', async () => {
        const ms = await json<{ id: string; name: string; disks: unknown[] }[]>(['machines']);
        return ms.find((x) => x.name === 'web' && x.disks.length === 1);
      });
      machineId = m.id;
    });
    after(async () => {
      if (heartbeatEnv === undefined) delete process.env.REBOUND_HEARTBEAT_SECONDS;
      else process.env.REBOUND_HEARTBEAT_SECONDS = heartbeatEnv;
      await agent?.stop();
      await cs?.stop();
      await db?.close();
      scratch.cleanup();
      await volumes.cleanup();
    });

    test('protect: the agent hears where to ship in its heartbeat answer and the item becomes protected', async () => {
      assert.equal(await shipping(), undefined, 'not shipping before it is protected');
      const p = await cs.cli(['protect', 'web', '--policy', 'gold', '--watch']);
      assert.equal(p.code, 0, p.stdout + p.stderr);
      const [item] = await items();
      assert.equal(item!.state, 'protected');
      const job = await json<JobJson>(['jobs', 'show', item!.last_job!.id]);
      assert.equal(job.state, 'Succeeded');
      assert.equal(job.steps[2]!.message, 'the agent streams to process server builtin-ps');
      assert.equal((await shipping())?.processServer, `127.0.0.1:${cs.processServerPort}`);
      const seq = await bookmark(agentDir, 'protected');
      await until('the bookmark as a recovery point', async () => {
        const r = await json<{ points: { seq: number }[] }>(['recovery-points', 'web']);
        return r.points.some((x) => x.seq === seq);
      });
    });

    test('unprotect: the agent stops shipping by itself, keeps serving, and the replica goes', async () => {
      const replicaDir = join(csDir, 'master-target', 'replicas', 'machines', machineId);
      assert.ok(existsSync(replicaDir));
      const u = await cs.cli(['unprotect', 'web', '--yes', '--watch']);
      assert.equal(u.code, 0, u.stdout + u.stderr);
      assert.match(
        u.stdout,
        /'stop replication at the agent' Succeeded: the agent of 'web' no longer streams\n/,
      );
      assert.deepEqual(await items(), []);
      assert.ok(!existsSync(replicaDir));
      assert.equal(await shipping(), undefined);
      assert.equal(agent!.child.exitCode, null, 'the agent still runs');

      // Protecting again starts over: a new replica, a new initial copy.
      const again = await cs.cli(['protect', 'web', '--policy', 'gold', '--watch']);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.equal((await items())[0]!.state, 'protected');
      assert.ok(existsSync(replicaDir));
    });
  });
}
