// Replication groups and recovery plans with real QEMU VMs: two machines in one replication
// group take common points under one write barrier across their agents; a recovery plan with
// a pre and a post script and a manual action tests and then fails them over together, each at
// its own sequence number of the same common point; commit and reprotect go through the plan
// (a grouped machine alone is refused, S19, and the plan needs values for every machine).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JobJson } from '../../src/cli/job-format.js';
import type { ItemView } from '../../src/control-plane/items/item-view.js';
import type { GroupView } from '../../src/control-plane/recovery/groups.js';
import type { PlanView } from '../../src/control-plane/recovery/plan-store.js';
import { until } from '../support/trio.js';
import { startVmLab, type VmLab } from '../support/vm-lab.js';

const DISK = 64 * 1024 * 1024;
const MACHINES = ['db', 'app'];

interface GroupPointJson {
  id: string;
  kind: string;
  taken_at: string;
  seqs: Record<string, number>;
}

describe('replication groups and recovery plans with real VMs', { timeout: 900_000 }, () => {
  let lab: VmLab;
  const run = (args: string[]) => lab.run(args);
  const json = <T>(args: string[]) => lab.json<T>(args);
  const job = (id: string) => lab.job(id);
  const watched = (id: string) => lab.watched(id);
  const items = () => json<ItemView[]>(['items']);
  const consoleOf = (site: string, name: string) => lab.consoleOf(site, name);
  const consoleShows = (site: string, name: string, line: RegExp) => lab.consoleShows(site, name, line);
  /** A refused request: a non-zero exit, the exact message, no job queued, no item changed. */
  const refused = async (args: string[], message: string) => {
    // What a request could change (RPO and health move on their own while protected).
    const state = async () =>
      (await items()).map((i) => [
        i.machine_name,
        i.state,
        i.direction,
        i.policy_name,
        i.group_id,
        i.last_job?.id,
      ]);
    const before = await state();
    const r = await lab.cs.cli(args);
    assert.notEqual(r.code, 0, `${args.join(' ')} was refused`);
    assert.ok(r.stderr.includes(message), `${args.join(' ')}: ${r.stderr}`);
    assert.deepEqual(await state(), before);
  };

  before(async () => {
    lab = await startVmLab('plan', [
      ['a', 'qemu'],
      ['b', 'qemu'],
    ]);
    for (const m of MACHINES) {
      await lab.createGuestVm(m, 'a', DISK, 4);
      await run(['vm', 'start', m, '--site', 'a']);
    }
    for (const m of MACHINES) {
      await consoleShows('a', m, /REBOUND gen 1 written/);
      await lab.runJob(['protect', m, '--policy', 'gold']);
    }
  });
  after(async () => lab?.stop());

  test('a replication group: S20 and membership refusals, common points under one barrier', async () => {
    const r = await lab.cs.cli(['groups', 'create', 'tier', '--machines', 'db,nope']);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr, "rebound: error: replicated item of machine 'nope' not found\n");
    assert.deepEqual(await json<GroupView[]>(['groups']), [], 'nothing half-made');

    // S20: one OS type per group.
    const admin = await lab.cs.admin();
    await admin.patch('/api/v1/machines/app', { osType: 'windows' });
    const mixed = await lab.cs.cli(['groups', 'create', 'tier', '--machines', 'db,app']);
    assert.equal(
      mixed.stderr,
      "rebound: error: replication group 'tier' mixes OS types (linux: db; windows: app): its machines can have no common recovery point (S20)\n",
    );
    await admin.patch('/api/v1/machines/app', { osType: 'linux' });
    assert.deepEqual(await json<GroupView[]>(['groups']), [], 'nothing half-made');

    const g = await json<GroupView>(['groups', 'create', 'tier', '--machines', 'db,app']);
    assert.deepEqual(
      g.machines.map((m) => m.name),
      ['app', 'db'],
    );
    const again = await lab.cs.cli(['groups', 'create', 'other', '--machines', 'app']);
    assert.equal(again.stderr, "rebound: error: machine 'app' is already in replication group 'tier'\n");

    const p = await json<GroupPointJson>(['groups', 'point', 'tier']);
    assert.equal(p.kind, 'crash');
    assert.deepEqual(Object.keys(p.seqs).sort(), ['app', 'db']);
    for (const seq of Object.values(p.seqs)) assert.ok(seq > 0);
    const listed = await json<GroupPointJson[]>(['groups', 'points', 'tier']);
    assert.deepEqual(listed[0], p, 'the newest first');
    // The guests run the QEMU guest agent: both frozen at once, a bookmark each, both thawed.
    const app = await json<GroupPointJson>(['groups', 'point', 'tier', '--app']);
    assert.equal(app.kind, 'app');
    for (const m of MACHINES) assert.ok(app.seqs[m]! > p.seqs[m]!, `${m}: ${JSON.stringify(app.seqs)}`);
  });

  test('a plan: refusals; test failover and clean-up; failover at the common point with its scripts and manual action', async () => {
    const planFile = join(lab.scratch, 'plan.json');
    const marks = join(lab.scratch, 'marks.txt');
    const script = (phase: string) =>
      `echo "${phase} $REBOUND_OPERATION $REBOUND_PLAN_GROUP $REBOUND_MACHINES" >> ${marks}`;
    writeFileSync(planFile, JSON.stringify({ groups: [{ name: 'first', machines: ['db'] }] }));
    const split = await lab.cs.cli(['plans', 'create', 'p1', '--file', planFile]);
    assert.equal(
      split.stderr,
      "rebound: error: replication group 'tier' recovers as a whole: add 'app' to plan group 'first'\n",
    );
    writeFileSync(
      planFile,
      JSON.stringify({
        groups: [
          {
            name: 'tier',
            machines: ['db', 'app'],
            pre: script('pre'),
            post: script('post'),
            manual: ['check that the application answers'],
          },
        ],
      }),
    );
    const plan = await json<PlanView>(['plans', 'create', 'p1', '--file', planFile]);
    assert.deepEqual(
      plan.groups[0]!.machines.map((m) => [m.name, m.group]),
      [
        ['db', 'tier'],
        ['app', 'tier'],
      ],
    );

    // A test failover of the plan: both machines boot at b from the same common point.
    const tf = await json<{ job: JobJson }>(['test-failover', '--plan', 'p1']);
    const waiting = await until('the test failover to wait for its manual action', async () => {
      const j = await job(tf.job.id);
      return j.steps.find((s) => s.state === 'WaitingForConfirmation') ? j : undefined;
    });
    assert.equal(
      waiting.steps.find((s) => s.state === 'WaitingForConfirmation')!.name,
      'plan group tier: manual action 1',
    );
    for (const m of MACHINES) await consoleShows('b', `${m}-test`, /REBOUND gen 1 ok/);
    await run(['jobs', 'confirm', tf.job.id, 'plan group tier: manual action 1']);
    await watched(tf.job.id);
    await refused(['failover', '--plan', 'p1'], "a test failover of 'db' is running: clean it up first");
    await lab.runJob(['cleanup-test-failover', '--plan', 'p1']);
    assert.equal(await consoleOf('b', 'db-test'), '', 'the test machines are gone');

    // Writes go on after a fresh common point: the failover must still take that point.
    const common = await json<GroupPointJson>(['groups', 'point', 'tier']);
    await until('both replicas past the common point', async () => {
      const hb = await json<GroupPointJson[]>(['groups', 'points', 'tier']);
      return hb[0]!.id === common.id && (await items()).every((i) => i.rpo_seconds !== null);
    });
    await new Promise((r) => setTimeout(r, 3000));
    const fo = await json<{ job: JobJson }>(['failover', '--plan', 'p1']);
    await until('the failover to wait for its manual action', async () =>
      (await job(fo.job.id)).steps.some((s) => s.state === 'WaitingForConfirmation'),
    );
    for (const m of MACHINES) await consoleShows('b', `${m}-recovered`, /REBOUND gen 1 ok/);
    await run(['jobs', 'confirm', fo.job.id, 'plan group tier: manual action 1']);
    const done = await watched(fo.job.id);
    const names = done.steps.map((s) => s.name);
    assert.equal(names[0], 'plan group tier: pre script');
    assert.deepEqual(names.slice(-2), ['plan group tier: post script', 'plan group tier: manual action 1']);
    // Every source checked before the common point is chosen, and it before any rollback.
    const at = (n: string) => names.indexOf(n);
    assert.ok(at('check the item (app)') < at('replication group tier: choose the common point'));
    assert.ok(at('replication group tier: choose the common point') < at('choose the recovery point (db)'));
    const newest = (await json<GroupPointJson[]>(['groups', 'points', 'tier']))[0]!;
    for (const m of MACHINES) {
      const step = done.steps.find((s) => s.name === `choose the recovery point (${m})`)!;
      assert.match(step.message ?? '', new RegExp(`^point ${newest.seqs[m]}\\b`), `${m}: ${step.message}`);
    }
    assert.ok(newest.seqs.db! >= common.seqs.db!, 'the newest common point');
    assert.deepEqual(readFileSync(marks, 'utf8').trim().split('\n'), [
      'pre test-failover tier db,app',
      'post test-failover tier db,app',
      'pre failover tier db,app',
      'post failover tier db,app',
    ]);
    assert.deepEqual(
      (await items()).map((i) => i.state),
      ['failed-over', 'failed-over'],
    );
  });

  test('commit and reprotect through the plan only, with values for every machine', async () => {
    await lab.runJob(['commit', '--plan', 'p1']);
    for (const m of MACHINES) await run(['vm', 'shutdown', m, '--site', 'a', '--timeout', '0']);
    await refused(
      ['reprotect', 'db', '--datastore', 'default'],
      "machine 'db' is in replication group 'tier': a group is reprotected only through a recovery plan (S19)",
    );
    const values = join(lab.scratch, 'values.json');
    writeFileSync(values, JSON.stringify({ db: { datastore: 'default' } }));
    await refused(
      ['reprotect', '--plan', 'p1', '--values', values],
      "reprotect of recovery plan 'p1' needs values for every machine: none given for 'app'",
    );
    writeFileSync(values, JSON.stringify({ db: { datastore: 'default' }, app: { datastore: 'default' } }));
    await lab.runJob(['reprotect', '--plan', 'p1', '--values', values]);
    const after = await items();
    assert.deepEqual(
      after.map((i) => [i.machine_name, i.state, i.direction]),
      [
        ['app-recovered', 'protected', 'reverse'],
        ['db-recovered', 'protected', 'reverse'],
      ],
    );
  });
});
