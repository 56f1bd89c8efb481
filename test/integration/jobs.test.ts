// The job engine in a real configuration server, on SQLite and on PostgreSQL: a job that was
// running when the server was killed (SIGKILL) is resumed (resumable step) or failed with the
// reason (any other step), never left Running; a job waiting for a manual confirmation still
// waits after the restart and goes on once confirmed; cancellation; and the exit codes of
// `rebound jobs watch`.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { JobJson } from '../../src/cli/job-format.js';
import { type OpenDatabase, openDatabase } from '../../src/control-plane/db/database.js';
import { createJob } from '../../src/control-plane/jobs/job-store.js';
import { runCli } from '../support/agent-process.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import type { TestStep } from '../support/job-test-server.js';
import { DATABASES, databaseUrl } from '../support/postgres.js';
import { scratchDir } from '../support/tmp.js';
import { until } from '../support/trio.js';

const ENTRY = fileURLToPath(new URL('../support/job-test-server.js', import.meta.url));

for (const kind of DATABASES) {
  describe(`jobs on ${kind}`, { timeout: 180_000 }, () => {
    const scratch = scratchDir(`jobs-${kind}`);
    let db: OpenDatabase;
    let dbUrl: string;
    let cs: RunningConfigServer;
    const start = async () => {
      cs = await startConfigServer({ dataDir: scratch.dir, db: dbUrl, entry: ENTRY });
    };
    /** Queues a test-steps job the way an operation does: a row the runner picks up. */
    const queue = async (steps: TestStep[]) =>
      (
        await createJob(
          db.db,
          {
            kind: 'test-steps',
            targetId: null,
            params: { steps },
            steps: steps.map((s) => s.name),
            requestedBy: 'admin',
          },
          new Date().toISOString(),
        )
      ).id;
    const show = async (id: string) => {
      const r = await cs.cli(['jobs', 'show', id, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as JobJson;
    };
    const waitFor = (id: string, what: string, ok: (j: JobJson) => boolean) =>
      until(
        `job ${id} ${what}`,
        async () => {
          const j = await show(id);
          return ok(j) ? j : undefined;
        },
        30_000,
      );
    const stepOf = (j: JobJson, name: string) => j.steps.find((s) => s.name === name)!;

    before(async () => {
      dbUrl = await databaseUrl(kind, scratch.dir);
      await start();
      db = await openDatabase(dbUrl);
    });
    after(async () => {
      await cs?.stop();
      await db?.close();
      scratch.cleanup();
    });

    test('after a SIGKILL: a resumable step is run again, any other fails the job with the reason', async () => {
      const release = join(scratch.dir, 'release-resumable');
      const resumable = await queue([
        { name: 'first', action: 'ok' },
        { name: 'long', action: 'wait-file', file: release, resumable: true },
        { name: 'last', action: 'ok' },
      ]);
      const fragile = await queue([
        { name: 'first', action: 'ok' },
        { name: 'long', action: 'wait-file', file: join(scratch.dir, 'never'), resumable: false },
        { name: 'last', action: 'ok' },
      ]);
      const confirm = await queue([
        { name: 'approve', action: 'confirm' },
        { name: 'after', action: 'ok' },
      ]);
      for (const id of [resumable, fragile]) {
        await waitFor(id, 'in its long step', (j) => stepOf(j, 'long').state === 'Running');
      }
      await waitFor(
        confirm,
        'waiting for a confirmation',
        (j) => j.steps[0]!.state === 'WaitingForConfirmation',
      );
      await cs.kill();

      // Between the kill and the restart the database still says Running: the restart settles it.
      await start();
      const failed = await waitFor(fragile, 'failed', (j) => j.state !== 'Running');
      const reason = "the configuration server stopped while step 'long' was running";
      assert.equal(failed.state, 'Failed');
      assert.equal(failed.error, reason);
      assert.deepEqual(
        failed.steps.map((s) => [s.name, s.state, s.error]),
        [
          ['first', 'Succeeded', null],
          ['long', 'Failed', reason],
          ['last', 'Skipped', null],
        ],
      );
      assert.ok(failed.ended_at);

      const resumed = await waitFor(
        resumable,
        'resumed',
        (j) => stepOf(j, 'long').message === `waiting for ${release} (resumed)`,
      );
      assert.equal(resumed.state, 'Running');
      assert.equal(stepOf(resumed, 'first').state, 'Succeeded');
      writeFileSync(release, '');
      const done = await waitFor(resumable, 'ended', (j) => j.state !== 'Running');
      assert.equal(done.state, 'Succeeded');
      assert.equal(done.progress_pct, 100);
      assert.deepEqual(
        done.steps.map((s) => s.state),
        ['Succeeded', 'Succeeded', 'Succeeded'],
      );

      // The confirmation survived the restart: still waiting, and confirming lets it finish.
      const waiting = await show(confirm);
      assert.equal(waiting.state, 'Running');
      assert.equal(waiting.steps[0]!.state, 'WaitingForConfirmation');
      assert.equal(waiting.steps[0]!.message, "confirm 'approve' to go on");
      const pending = await cs.cli(['jobs', 'confirm', confirm, 'after']);
      assert.equal(pending.code, 6);
      assert.equal(
        pending.stderr,
        `rebound: error: step 'after' of job ${confirm} is not waiting for a confirmation (it is Pending)\n`,
      );
      const unknown = await cs.cli(['jobs', 'confirm', confirm, 'nope']);
      assert.equal(unknown.code, 5);
      assert.equal(
        unknown.stderr,
        `rebound: error: job ${confirm} has no step 'nope' (its steps: approve, after)\n`,
      );
      const ok = await cs.cli(['jobs', 'confirm', confirm.slice(0, 8), 'approve']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, `job ${confirm}: step 'approve' confirmed\n`);
      const confirmed = await waitFor(confirm, 'ended', (j) => j.state !== 'Running');
      assert.equal(confirmed.state, 'Succeeded');
      assert.equal(confirmed.steps[0]!.message, 'confirmed by admin');
    });

    test('cancel: a running job ends Cancelled at once even in a long wait; an ended job cannot be', async () => {
      const id = await queue([
        { name: 'long', action: 'wait-file', file: join(scratch.dir, 'never-2'), resumable: true },
        { name: 'after', action: 'ok' },
      ]);
      await waitFor(id, 'running', (j) => j.steps[0]!.state === 'Running');
      const c = await cs.cli(['jobs', 'cancel', id]);
      assert.equal(c.code, 0, c.stderr);
      const j = await waitFor(id, 'cancelled', (x) => x.state !== 'Running');
      assert.equal(j.state, 'Cancelled');
      assert.deepEqual(
        j.steps.map((s) => s.state),
        ['Cancelled', 'Cancelled'],
      );
      const again = await cs.cli(['jobs', 'cancel', id]);
      assert.equal(again.code, 6);
      assert.equal(again.stderr, `rebound: error: job ${id} has already ended (Cancelled)\n`);
    });

    test('watch: exit 0 for Succeeded and Warning, 9 for Failed, 10 for Cancelled', async () => {
      const ok = await queue([
        { name: 'one', action: 'ok' },
        { name: 'two', action: 'ok' },
      ]);
      const w0 = await cs.cli(['jobs', 'watch', ok]);
      assert.equal(w0.code, 0, w0.stderr);
      const short = ok.slice(0, 8);
      assert.match(w0.stdout, new RegExp(`job ${short} test-steps: step 2/2 'two' Succeeded\\n`));
      assert.ok(w0.stdout.endsWith(`job ${short} test-steps: Succeeded\n`), w0.stdout);

      const warn = await queue([{ name: 'careful', action: 'warn' }]);
      const w1 = await cs.cli(['jobs', 'watch', warn]);
      assert.equal(w1.code, 0, w1.stderr);
      assert.match(w1.stdout, /step 1\/1 'careful' Warning: step 'careful' warns\n/);
      assert.ok(w1.stdout.endsWith(`job ${warn.slice(0, 8)} test-steps: Warning\n`), w1.stdout);

      const fail = await queue([
        { name: 'broken', action: 'fail' },
        { name: 'never', action: 'ok' },
      ]);
      const w2 = await cs.cli(['jobs', 'watch', fail]);
      assert.equal(w2.code, 9, w2.stderr);
      assert.ok(
        w2.stdout.endsWith(
          `job ${fail.slice(0, 8)} test-steps: Failed: step 'broken' failed: step 'broken' fails\n`,
        ),
        w2.stdout,
      );
      assert.deepEqual(
        (await show(fail)).steps.map((s) => [s.state, s.message]),
        [
          ['Failed', null],
          ['Skipped', "not run: step 'broken' failed"],
        ],
      );

      const long = await queue([{ name: 'long', action: 'wait-file', file: join(scratch.dir, 'never-3') }]);
      await waitFor(long, 'running', (j) => j.steps[0]!.state === 'Running');
      const watching = runCli(['jobs', '--watch'], { env: { REBOUND_CS_CONFIG: cs.cliConfig } });
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await cs.cli(['jobs', 'cancel', long])).code, 0);
      const w3 = await watching;
      assert.equal(w3.code, 10, w3.stderr);
      assert.ok(w3.stdout.endsWith(`job ${long.slice(0, 8)} test-steps: Cancelled\n`), w3.stdout);
    });

    test('list: filters by state and kind, table and JSON', async () => {
      const failedList = await cs.cli(['jobs', '--json', '--state', 'Failed']);
      assert.equal(failedList.code, 0, failedList.stderr);
      const failed = JSON.parse(failedList.stdout) as JobJson[];
      assert.equal(failed.length, 2);
      assert.ok(failed.every((j) => j.state === 'Failed'));
      const table = await cs.cli(['jobs', '--kind', 'test-steps']);
      assert.match(table.stdout, /^ID\s+KIND\s+TARGET\s+STATE\s+PROGRESS\s+STEP\s+CREATED\n/);
      assert.match(table.stdout, /\n[0-9a-f]{8}\s+test-steps\s+-\s+Failed\s+0%\s+1\/2 broken\s/);
      const none = await cs.cli(['jobs', '--kind', 'enable-replication']);
      assert.equal(none.stdout, 'no jobs in the last 24 h (--all for every job)\n');
    });
  });
}
