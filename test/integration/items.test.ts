// Replicated items through the CLI, on SQLite and on PostgreSQL: every refusal of `rebound
// protect` with its exact message, creating nothing; then a real agent shipping to the built-in
// process server and master target is protected (the job's steps and the item's final state),
// its recovery points listed, its RPO alert raised and cleared by its policy's threshold; a job
// in progress blocks unprotect, a cancelled protect leaves the item failed; unprotect refuses
// without --yes (saying what it would delete) and with it removes the replica and the journal.
//
// Machines, policies and retention volumes are rows written into the database here: their own
// routes (registration, inventory, policies) are other modules. The machine's id is its agent's
// machine id, as registration records it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JobJson } from '../../src/cli/job-format.js';
import { type OpenDatabase, openDatabase } from '../../src/control-plane/db/database.js';
import type { ItemView } from '../../src/control-plane/items/item-view.js';
import { issueCert } from '../../src/pki/ca.js';
import type { RunningAgent } from '../support/agent-process.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { DATABASES, databaseUrl } from '../support/postgres.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { bookmark, startShippingAgent, until } from '../support/trio.js';

const NOW = () => new Date().toISOString();

for (const kind of DATABASES) {
  describe(`replicated items on ${kind}`, { timeout: 240_000 }, () => {
    const scratch = scratchDir(`items-${kind}`);
    const csDir = join(scratch.dir, 'cs');
    let db: OpenDatabase;
    let cs: RunningConfigServer;
    let agent: RunningAgent | undefined;
    let machineId: string;

    const cli = async (args: string[]) => cs.cli(args);
    const json = async <T>(args: string[]): Promise<T> => {
      const r = await cli([...args, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as T;
    };
    const items = () => json<ItemView[]>(['items']);
    const machine = async (id: string, name: string, agentName: string | null, disks = 1) => {
      await db.db
        .insertInto('machines')
        .values({
          id,
          name,
          site_id: null,
          os_type: 'linux',
          agent_name: agentName,
          address: null,
          registered_at: agentName ? NOW() : null,
          last_heartbeat_at: agentName ? NOW() : null,
          status_json: null,
          created_by_failover_of: null,
          created_at: NOW(),
        })
        .execute();
      for (let i = 0; i < disks; i++) {
        await db.db
          .insertInto('disks')
          .values({
            id: randomUUID(),
            machine_id: id,
            name: `d${i}`,
            size_bytes: 8 << 20,
            path: null,
            created_at: NOW(),
          })
          .execute();
      }
    };
    const policy = async (name: string, failback: 0 | 1 = 0) => {
      await db.db
        .insertInto('policies')
        .values({
          id: randomUUID(),
          name,
          rpo_threshold_minutes: 15,
          retention_hours: 24,
          app_consistent_minutes: 0,
          crash_consistent_minutes: 5,
          ack_mode: 'async',
          is_failback: failback,
          parent_policy_id: null,
          created_at: NOW(),
          updated_at: NOW(),
        })
        .execute();
    };

    before(async () => {
      const url = await databaseUrl(kind, csDir);
      cs = await startConfigServer({ dataDir: csDir, db: url });
      db = await openDatabase(url);
      await policy('gold');
      await policy('gold-failback', 1);
      await machine('bare-id', 'bare', 'bare-agent', 2);
      await machine('unregistered-id', 'unregistered', null);
      const builtinMt = await db.db
        .selectFrom('master_targets')
        .select('id')
        .where('name', '=', 'builtin-mt')
        .executeTakeFirstOrThrow();
      for (const [path, reason] of [
        ['/mnt/retention', null],
        ['/mnt/usb', 'FAT file systems cannot hold an undo journal'],
      ] as const) {
        await db.db
          .insertInto('retention_volumes')
          .values({
            id: randomUUID(),
            master_target_id: builtinMt.id,
            path,
            fs_type: reason ? 'vfat' : 'ext4',
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            valid: reason ? 0 : 1,
            invalid_reason: reason,
            refreshed_at: NOW(),
          })
          .execute();
      }
    });
    after(async () => {
      await agent?.stop();
      await cs?.stop();
      await db?.close();
      scratch.cleanup();
    });

    test('protect refuses what it cannot do, naming the problem, and creates nothing', async () => {
      const cases: [string[], number, string][] = [
        [['nosuch', '--policy', 'gold'], 5, "machine 'nosuch' not found"],
        [['bare', '--policy', 'nope'], 5, "policy 'nope' not found"],
        [
          ['bare', '--policy', 'gold-failback'],
          3,
          "policy 'gold-failback' is a failback policy: reprotect applies it by itself; choose a replication policy",
        ],
        [
          ['unregistered', '--policy', 'gold'],
          6,
          "machine 'unregistered' has no registered agent (agent not installed): run 'rebound agent register' on it first",
        ],
        [['bare', '--policy', 'gold', '--process-server', 'ps-x'], 5, "process server 'ps-x' not found"],
        [['bare', '--policy', 'gold', '--master-target', 'mt-x'], 5, "master target 'mt-x' not found"],
        [['bare', '--policy', 'gold', '--datastore', 'ds-x'], 5, "datastore 'ds-x' not found"],
        [
          ['bare', '--policy', 'gold', '--retention-volume', '/nope'],
          5,
          "retention volume '/nope' not found",
        ],
        [
          ['bare', '--policy', 'gold', '--retention-volume', '/mnt/usb'],
          3,
          "retention volume '/mnt/usb' of master target 'builtin-mt' is not valid: FAT file systems cannot hold an undo journal",
        ],
      ];
      for (const [args, code, message] of cases) {
        const r = await cli(['protect', ...args]);
        assert.equal(r.stderr, `rebound: error: ${message}\n`, args.join(' '));
        assert.equal(r.code, code, args.join(' '));
      }
      await db.db
        .updateTable('master_targets')
        .set({ max_disks: 1 })
        .where('name', '=', 'builtin-mt')
        .execute();
      const full = await cli(['protect', 'bare', '--policy', 'gold']);
      assert.equal(full.code, 6);
      assert.equal(
        full.stderr,
        "rebound: error: master target 'builtin-mt' would hold 2 disks, more than its limit of 1\n",
      );
      await db.db
        .updateTable('master_targets')
        .set({ max_disks: 60 })
        .where('name', '=', 'builtin-mt')
        .execute();

      assert.deepEqual(await items(), []);
      assert.deepEqual(await json<JobJson[]>(['jobs', '--all']), []);
    });

    test('a real agent is protected: the job’s steps, the item, its recovery points and RPO alert', async () => {
      const tls = join(scratch.dir, 'tls');
      await issueCert(join(csDir, 'ca'), { role: 'agent', name: 'a1', outDir: tls });
      const agentDir = join(scratch.dir, 'agent');
      const disk = sparseImage(join(scratch.dir, 'disk.img'), 8 << 20);
      ({ agent, machineId } = await startShippingAgent(tls, agentDir, disk, cs.processServerPort!));
      await machine(machineId, 'web', 'a1');

      const p = await cli(['protect', 'web', '--policy', 'gold', '--watch']);
      assert.equal(p.code, 0, p.stdout + p.stderr);
      assert.match(p.stdout, /^protecting machine web: item [0-9a-f-]{36}, job [0-9a-f-]{36} /);
      assert.match(p.stdout, /: Succeeded\n$/);

      const [item] = await items();
      assert.equal(item!.machine_name, 'web');
      assert.equal(item!.state, 'protected');
      assert.equal(item!.progress_pct, 100);
      assert.deepEqual(
        [item!.policy_name, item!.process_server_name, item!.master_target_name, item!.retention_volume_path],
        ['gold', 'builtin-ps', 'builtin-mt', '/mnt/retention'],
      );
      const job = await json<JobJson>(['jobs', 'show', item!.last_job!.id]);
      assert.equal(job.kind, 'enable-replication');
      assert.equal(job.state, 'Succeeded');
      assert.deepEqual(
        job.steps.map((s) => [s.name, s.state]),
        [
          ['validate choices', 'Succeeded'],
          ['prepare the replica on the master target', 'Succeeded'],
          ['configure the agent', 'Succeeded'],
          ['initial replication', 'Succeeded'],
          ['protected', 'Succeeded'],
        ],
      );
      assert.equal(
        job.steps[0]!.message,
        'policy gold, process server builtin-ps, master target builtin-mt, datastore default, retention volume /mnt/retention',
      );
      assert.equal(job.steps[4]!.message, "machine 'web' is protected");

      const again = await cli(['protect', 'web', '--policy', 'gold']);
      assert.equal(again.code, 6);
      assert.equal(
        again.stderr,
        `rebound: error: machine 'web' is already protected (item ${item!.id}, state protected)\n`,
      );

      const seq = await bookmark(agentDir, 'before-upgrade');
      const points = await until(
        'the bookmark as a recovery point',
        async () => {
          const r = await json<{ points: { seq: number; tag: string; kind: string }[] }>([
            'recovery-points',
            'web',
          ]);
          return r.points.find((x) => x.tag === 'before-upgrade');
        },
        30_000,
      );
      assert.equal(points.seq, seq);
      assert.equal(points.kind, 'app');
      const shown = await cli(['items', 'show', 'web']);
      assert.match(shown.stdout, /^machine web: protected\nitem: [0-9a-f-]{36} \(forward\)\n/);

      // RPO against the policy: a threshold of 0 min is exceeded by any RPO; 15 min again clears it.
      const openAlert = () =>
        db.db
          .selectFrom('alerts')
          .selectAll()
          .where('subject_id', '=', item!.id)
          .where('kind', '=', 'rpo-threshold-exceeded')
          .where('cleared_at', 'is', null)
          .executeTakeFirst();
      await db.db
        .updateTable('policies')
        .set({ rpo_threshold_minutes: 0 })
        .where('name', '=', 'gold')
        .execute();
      const alert = await until('the RPO alert', openAlert, 20_000);
      assert.match(
        alert.message,
        /^RPO of machine 'web' is \d+ s, above the threshold of policy 'gold' \(0 min\)$/,
      );
      assert.equal(alert.severity, 'warning');
      const flagged = await until('the item’s health to show it', async () => {
        const [i] = await items();
        return i!.health.find((h) => h.code === 'rpo-threshold-exceeded');
      });
      assert.equal(flagged.message.startsWith("RPO of machine 'web'"), true);
      await db.db
        .updateTable('policies')
        .set({ rpo_threshold_minutes: 15 })
        .where('name', '=', 'gold')
        .execute();
      await until('the RPO alert to clear', async () => !(await openAlert()), 20_000);
    });

    test('a job in progress blocks unprotect; a cancelled protect leaves the item failed', async () => {
      const p = await json<{ item: ItemView; job: JobJson }>(['protect', 'bare', '--policy', 'gold']);
      await until('the protect job to wait for the agent', async () => {
        const j = await json<JobJson>(['jobs', 'show', p.job.id]);
        return j.steps[2]!.state === 'Running';
      });
      const blocked = await cli(['unprotect', 'bare', '--yes']);
      assert.equal(blocked.code, 6);
      assert.equal(
        blocked.stderr,
        `rebound: error: machine 'bare' has a job in progress (enable-replication ${p.job.id}, Running): ` +
          `cancel it first with 'rebound jobs cancel ${p.job.id}'\n`,
      );
      assert.equal((await cli(['jobs', 'cancel', p.job.id])).code, 0);
      const w = await cli(['jobs', 'watch', p.job.id]);
      assert.equal(w.code, 10);
      const bare = (await items()).find((i) => i.machine_name === 'bare')!;
      assert.equal(bare.state, 'failed');
      assert.deepEqual(bare.health, [
        { code: 'enable-cancelled', message: 'enabling replication was cancelled' },
      ]);

      const u = await cli(['unprotect', 'bare', '--yes', '--watch']);
      assert.equal(u.code, 0, u.stdout + u.stderr);
      assert.match(
        u.stdout,
        /'remove the replica and journal at the master target' Succeeded: no replica of the machine was there\n/,
      );
      assert.deepEqual(
        (await items()).map((i) => i.machine_name),
        ['web'],
      );
    });

    test('unprotect refuses without --yes, saying what it would delete; with it the replica and journal go', async () => {
      const replicaDir = join(csDir, 'master-target', 'replicas', 'machines', machineId);
      const journalDir = join(csDir, 'master-target', 'retention', machineId);
      const cacheDir = join(csDir, 'process-server', 'machines', machineId);
      assert.ok(existsSync(replicaDir) && existsSync(journalDir) && existsSync(cacheDir));

      const refused = await cli(['unprotect', 'web']);
      assert.equal(refused.code, 3);
      assert.match(
        refused.stderr,
        /^rebound: error: unprotecting machine 'web' deletes its replica \(1 disk, \d+\.\d MiB\) and its undo journal \(\d+\.\d MiB, every recovery point\) on master target 'builtin-mt'; nothing was changed: confirm to go on with --yes\n$/,
      );
      assert.equal((await items())[0]!.state, 'protected');
      assert.ok(existsSync(replicaDir));

      // Until agents hear their configuration in heartbeats, stopping the shipping is the agent's own stop.
      await agent!.stop();
      agent = undefined;
      const u = await cli(['unprotect', 'web', '--yes', '--watch']);
      assert.equal(u.code, 0, u.stdout + u.stderr);
      assert.match(u.stdout, /^unprotecting machine web: job [0-9a-f-]{36} /);
      assert.match(u.stdout, /'remove the item' Succeeded: machine 'web' is no longer protected\n/);
      assert.deepEqual(await items(), []);
      assert.ok(!existsSync(replicaDir), 'replica removed');
      assert.ok(!existsSync(journalDir), 'journal removed');
      assert.ok(!existsSync(cacheDir), 'process server cache removed');
      const gone = await cli(['recovery-points', 'web']);
      assert.equal(gone.code, 5);
      assert.equal(gone.stderr, "rebound: error: replicated item 'web' not found\n");
    });
  });
}
