// Replication policies (S14) with their failback policies (S15), and the process servers and
// master targets of the inventory, through the CLI and the API on both databases: exact
// refusals, exit codes, final states.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApiRequestError } from '../../src/control-plane/client/api-client.js';
import {
  masterTargetProblems,
  requireMasterTarget,
} from '../../src/control-plane/components/component-store.js';
import type { OpenDatabase } from '../../src/control-plane/db/database.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { openServerDatabase, seedItem } from '../support/inventory-db.js';
import { DATABASES, databaseUrl } from '../support/postgres.js';
import { scratchDir } from '../support/tmp.js';

interface PolicyJson {
  name: string;
  rpo_threshold_minutes: number;
  retention_hours: number;
  app_consistent_minutes: number;
  crash_consistent_minutes: number;
  ack_mode: string;
  failback: boolean;
  failback_policy: string | null;
  failback_of: string | null;
}

async function refused(p: Promise<unknown>): Promise<ApiRequestError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiRequestError) return e;
    throw e;
  }
  throw new Error('the request was accepted');
}

for (const kind of DATABASES) {
  describe(`inventory: policies and components on ${kind}`, { timeout: 180_000 }, () => {
    const scratch = scratchDir(`inv-pol-${kind}`);
    let cs: RunningConfigServer;
    let db: OpenDatabase;
    before(async () => {
      cs = await startConfigServer({ dataDir: scratch.dir, db: await databaseUrl(kind, scratch.dir) });
      db = await openServerDatabase(cs);
    });
    after(async () => {
      await db?.close();
      await cs?.stop();
      scratch.cleanup();
    });

    test('a policy is created with defaults, and its failback policy with it', async () => {
      const r = await cs.cli(['policies', 'create', 'gold']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stdout,
        'policy gold: RPO threshold 15 min, retention 24 h, app-consistent every 60 min, ' +
          'crash-consistent every 5 min, ack async; failback policy gold-failback\n',
      );
      const list = await cs.cli(['policies', '--json']);
      assert.equal(list.code, 0, list.stderr);
      const rows = JSON.parse(list.stdout) as PolicyJson[];
      assert.deepEqual(
        rows.map((p) => ({ ...p, id: undefined, created_at: undefined, updated_at: undefined })),
        [
          {
            name: 'gold',
            rpo_threshold_minutes: 15,
            retention_hours: 24,
            app_consistent_minutes: 60,
            crash_consistent_minutes: 5,
            ack_mode: 'async',
            failback: false,
            failback_policy: 'gold-failback',
            failback_of: null,
            id: undefined,
            created_at: undefined,
            updated_at: undefined,
          },
          {
            name: 'gold-failback',
            rpo_threshold_minutes: 15,
            retention_hours: 24,
            app_consistent_minutes: 60,
            crash_consistent_minutes: 5,
            ack_mode: 'async',
            failback: true,
            failback_policy: null,
            failback_of: 'gold',
            id: undefined,
            created_at: undefined,
            updated_at: undefined,
          },
        ],
      );
      const table = await cs.cli(['policies']);
      assert.equal(
        table.stdout,
        [
          'NAME           RPO THRESHOLD  RETENTION  APP-CONSISTENT  CRASH-CONSISTENT  ACK    FAILBACK',
          'gold           15 min         24 h       60 min          5 min             async  gold-failback',
          'gold-failback  15 min         24 h       60 min          5 min             async  policy of gold',
          '',
        ].join('\n'),
      );
    });

    test('values given on create are kept; the failback policy keeps the S15 values', async () => {
      const r = await cs.cli([
        'policies',
        'create',
        'silver',
        '--rpo-threshold-minutes',
        '30',
        '--retention-hours',
        '720',
        '--app-consistent-minutes',
        '0',
        '--crash-consistent-minutes',
        '10',
        '--ack-mode',
        'sync',
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const p = JSON.parse(r.stdout) as PolicyJson;
      assert.deepEqual(
        [
          p.rpo_threshold_minutes,
          p.retention_hours,
          p.app_consistent_minutes,
          p.crash_consistent_minutes,
          p.ack_mode,
        ],
        [30, 720, 0, 10, 'sync'],
      );
      const fb = await cs.cli(['policies', 'show', 'silver-failback']);
      assert.equal(
        fb.stdout,
        'policy silver-failback: RPO threshold 15 min, retention 24 h, app-consistent every 60 min, ' +
          'crash-consistent every 5 min, ack async; failback policy of silver (not editable)\n',
      );
    });

    test('invalid values are refused naming the field and its range, and nothing is created', async () => {
      const r = await cs.cli([
        'policies',
        'create',
        'bad',
        '--retention-hours',
        '721',
        '--app-consistent-minutes',
        '2.5',
        '--ack-mode',
        'fast',
      ]);
      assert.equal(r.code, 3);
      assert.equal(
        r.stderr,
        'rebound: error: retention_hours 721 is not valid: use a whole number of hours from 1 to 720 (30 days); ' +
          'app_consistent_minutes 2.5 is not valid: use a whole number of minutes from 0 (off) to 720 (12 h); ' +
          "ack_mode 'fast' is not valid: use one of async, process-server, sync\n",
      );
      const text = await cs.cli(['policies', 'create', 'bad', '--rpo-threshold-minutes', 'soon']);
      assert.equal(text.code, 3);
      assert.equal(
        text.stderr,
        "rebound: error: rpo_threshold_minutes 'soon' is not valid: use a whole number of minutes from 1 to 1440 (24 h)\n",
      );
      const cross = await cs.cli([
        'policies',
        'create',
        'bad',
        '--retention-hours',
        '1',
        '--app-consistent-minutes',
        '90',
      ]);
      assert.equal(cross.code, 3);
      assert.equal(
        cross.stderr,
        'rebound: error: app_consistent_minutes 90 is longer than the retention window ' +
          '(retention_hours 1 = 60 minutes): use at most 60, or 0 (off)\n',
      );
      const names = (JSON.parse((await cs.cli(['policies', '--json'])).stdout) as PolicyJson[]).map(
        (p) => p.name,
      );
      assert.deepEqual(names, ['gold', 'gold-failback', 'silver', 'silver-failback']);
    });

    test('the API refuses unknown fields, a value of the wrong type, a bad name, and duplicates', async () => {
      const admin = await cs.admin();
      const unknown = await refused(admin.post('/api/v1/policies', { name: 'p1', rpo: 5 }));
      assert.equal(unknown.status, 400);
      assert.equal(
        unknown.message,
        "unknown field 'rpo': the fields are name, rpo_threshold_minutes, retention_hours, " +
          'app_consistent_minutes, crash_consistent_minutes, ack_mode',
      );
      const typed = await refused(
        admin.post('/api/v1/policies', { name: 'p1', crash_consistent_minutes: { minutes: 5 } }),
      );
      assert.equal(typed.status, 400);
      assert.equal(
        typed.message,
        'crash_consistent_minutes {"minutes":5} is not valid: use a whole number of minutes from 1 to 60',
      );
      const badName = await refused(admin.post('/api/v1/policies', { name: '-x' }));
      assert.equal(badName.status, 400);
      assert.match(badName.message, /^invalid request: body\/name must match pattern/);
      const reserved = await refused(admin.post('/api/v1/policies', { name: 'bronze-failback' }));
      assert.equal(reserved.status, 400);
      assert.equal(
        reserved.message,
        "policy name 'bronze-failback' is reserved: names ending in '-failback' belong to failback policies",
      );
      const dup = await cs.cli(['policies', 'create', 'gold']);
      assert.equal(dup.code, 6);
      assert.equal(dup.stderr, "rebound: error: policy 'gold' already exists\n");
      const nothing = await refused(admin.patch('/api/v1/policies/gold', {}));
      assert.equal(nothing.status, 400);
      assert.match(nothing.message, /^nothing to change: give at least one of rpo_threshold_minutes/);
      const missing = await cs.cli(['policies', 'show', 'platinum']);
      assert.equal(missing.code, 5);
      assert.equal(missing.stderr, "rebound: error: policy 'platinum' not found\n");
    });

    test('a policy is editable; its failback policy is not, and is not deleted on its own (409)', async () => {
      const up = await cs.cli(['policies', 'update', 'gold', '--rpo-threshold-minutes', '45']);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, /^policy gold: RPO threshold 45 min, retention 24 h/);
      const bad = await cs.cli(['policies', 'update', 'gold', '--crash-consistent-minutes', '0']);
      assert.equal(bad.code, 3);
      assert.equal(
        bad.stderr,
        'rebound: error: crash_consistent_minutes 0 is not valid: use a whole number of minutes from 1 to 60\n',
      );
      const edit = await cs.cli(['policies', 'update', 'gold-failback', '--retention-hours', '48']);
      assert.equal(edit.code, 6);
      assert.equal(
        edit.stderr,
        "rebound: error: policy 'gold-failback' is the failback policy of 'gold' (S15): it is not editable\n",
      );
      const del = await cs.cli(['policies', 'delete', 'gold-failback']);
      assert.equal(del.code, 6);
      assert.equal(
        del.stderr,
        "rebound: error: policy 'gold-failback' is the failback policy of 'gold' (S15): it is deleted with 'gold', not on its own\n",
      );
      const fb = JSON.parse(
        (await cs.cli(['policies', 'show', 'gold-failback', '--json'])).stdout,
      ) as PolicyJson;
      assert.deepEqual(
        [fb.rpo_threshold_minutes, fb.retention_hours, fb.app_consistent_minutes],
        [15, 24, 60],
      );
    });

    test('a policy in use by an item, or whose failback policy is, is not deleted; an unused one goes with its failback policy', async () => {
      await seedItem(db, { machine: 'web1', disks: 3, policy: 'gold' });
      await seedItem(db, { machine: 'web2', disks: 2, policy: 'silver-failback' });
      const gold = await cs.cli(['policies', 'delete', 'gold']);
      assert.equal(gold.code, 6);
      assert.equal(
        gold.stderr,
        "rebound: error: policy 'gold' is used by the replicated item of machine 'web1': disable its replication first\n",
      );
      const silver = await cs.cli(['policies', 'delete', 'silver']);
      assert.equal(silver.code, 6);
      assert.equal(
        silver.stderr,
        "rebound: error: policy 'silver' cannot be deleted: its failback policy 'silver-failback' is used by the replicated item of machine 'web2'\n",
      );
      assert.equal((await cs.cli(['policies', 'create', 'temp'])).code, 0);
      const del = await cs.cli(['policies', 'delete', 'temp']);
      assert.equal(del.code, 0, del.stderr);
      assert.equal(del.stdout, 'policy temp and its failback policy deleted\n');
      const names = (JSON.parse((await cs.cli(['policies', '--json'])).stdout) as PolicyJson[]).map(
        (p) => p.name,
      );
      assert.deepEqual(names, ['gold', 'gold-failback', 'silver', 'silver-failback']);
    });

    test('process servers: the built-in one, listed as JSON and as a table', async () => {
      const r = await cs.cli(['process-servers', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as {
        name: string;
        builtin: boolean;
        address: string;
        last_heartbeat_at: string;
      }[];
      assert.equal(rows.length, 1);
      assert.equal(rows[0].name, 'builtin-ps');
      assert.equal(rows[0].builtin, true);
      assert.equal(rows[0].address, `127.0.0.1:${cs.processServerPort}`);
      assert.ok(Date.parse(rows[0].last_heartbeat_at) > 0);
      const table = await cs.cli(['process-servers']);
      assert.match(
        table.stdout,
        /^NAME {8}ADDRESS +BUILT-IN +LAST HEARTBEAT\nbuiltin-ps +127\.0\.0\.1:\d+ +yes +\d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ s ago\)\n$/,
      );
    });

    test('master targets: attached disks against the limit of 60, snapshots, settings', async () => {
      const r = await cs.cli(['master-targets', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const [mt] = JSON.parse(r.stdout) as {
        name: string;
        builtin: boolean;
        attached_disks: number;
        max_disks: number;
        has_snapshots: boolean;
      }[];
      assert.deepEqual(
        [mt.name, mt.builtin, mt.attached_disks, mt.max_disks, mt.has_snapshots],
        ['builtin-mt', true, 5, 60, false],
      );
      const table = await cs.cli(['master-targets']);
      assert.match(
        table.stdout,
        /^NAME {8}ADDRESS +BUILT-IN +DISKS +SNAPSHOTS +LAST HEARTBEAT\nbuiltin-mt +127\.0\.0\.1:\d+ +yes +5\/60 +no +\S+ \(\d+ s ago\)\n$/,
      );

      const over = await cs.cli(['master-targets', 'set', 'builtin-mt', '--max-disks', '61']);
      assert.equal(over.code, 3);
      assert.equal(
        over.stderr,
        'rebound: error: max_disks 61 is not valid: use a whole number from 1 to 60 (S23)\n',
      );
      const below = await cs.cli(['master-targets', 'set', 'builtin-mt', '--max-disks', '4']);
      assert.equal(below.code, 6);
      assert.equal(
        below.stderr,
        "rebound: error: max_disks 4 is below the 5 disks already attached to master target 'builtin-mt'\n",
      );
      const set = await cs.cli([
        'master-targets',
        'set',
        'builtin-mt',
        '--max-disks',
        '6',
        '--has-snapshots',
        'yes',
      ]);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout, 'master target builtin-mt: 5/6 disks, snapshots yes\n');

      // What reprotect and enabling replication will ask (S23).
      const row = await requireMasterTarget(db, 'builtin-mt');
      assert.deepEqual(await masterTargetProblems(db, row, 2), [
        "master target 'builtin-mt' has snapshots: delete them first (S23)",
        "master target 'builtin-mt' would have 7 disks attached, over its limit of 6 (S23): 5 attached, 2 to add",
      ]);
      assert.equal(
        (await cs.cli(['master-targets', 'set', 'builtin-mt', '--max-disks', '60', '--has-snapshots', 'no']))
          .code,
        0,
      );
      assert.deepEqual(await masterTargetProblems(db, await requireMasterTarget(db, 'builtin-mt'), 55), []);
      assert.equal(
        (await masterTargetProblems(db, await requireMasterTarget(db, 'builtin-mt'), 56)).length,
        1,
      );

      const unknown = await cs.cli(['master-targets', 'set', 'mt9', '--max-disks', '3']);
      assert.equal(unknown.code, 5);
      assert.equal(unknown.stderr, "rebound: error: master target 'mt9' not found\n");
    });
  });
}
