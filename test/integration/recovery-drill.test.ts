// The whole drill with real QEMU VMs (the tiny Debian-kernel + busybox guest, TCG): a VM at
// site a whose disk its agent serves writes a generation of files with their checksums;
// protect; unplanned failover to latest: the recovered VM boots at site b and every flushed
// generation verifies; it writes a new one; commit; reprotect (only differences move: the
// bytes its agent sent are counted); failback: the original VM boots on the same data and
// verifies every generation; reprotect to the original direction. Then a planned failover
// loses nothing written before the shutdown (the guest's clean-shutdown marker is there).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { JobJson } from '../../src/cli/job-format.js';
import type { ItemView } from '../../src/control-plane/items/item-view.js';
import { until } from '../support/trio.js';
import { startVmLab, type VmLab } from '../support/vm-lab.js';

const DISK = 64 * 1024 * 1024;

describe('the recovery drill with real VMs', { timeout: 900_000 }, () => {
  let lab: VmLab;
  const run = (args: string[]) => lab.run(args);
  const json = <T>(args: string[]) => lab.json<T>(args);
  const item = async () => (await json<ItemView[]>(['items']))[0]!;
  const vm = (site: string, name: string) => lab.vm(site, name);
  const consoleOf = (site: string, name: string) => lab.consoleOf(site, name);
  const consoleShows = (site: string, name: string, line: RegExp) => lab.consoleShows(site, name, line);
  const jobWatch = (args: string[]) => lab.runJob(args);

  /** A refused request: its exit code, its exact message, and nothing changed. */
  const refused = async (args: string[], message: string) => {
    const before = await item();
    const r = await lab.cs.cli(args);
    assert.notEqual(r.code, 0, `${args.join(' ')} was refused`);
    assert.ok(r.stderr.includes(message), `${args.join(' ')}: ${r.stderr}`);
    const now = await item();
    // RPO and health are live measurements of the data plane: they move on their own while
    // replication goes on, so the record is compared without them.
    const record = (i: ItemView) => ({ ...i, last_job: null, updated_at: '', rpo_seconds: 0, health: [] });
    assert.deepEqual(record(now), record(before));
    assert.equal(now.last_job?.id, before.last_job?.id, 'no job was queued');
  };

  before(async () => {
    lab = await startVmLab('drill', [
      ['a', 'qemu'],
      ['b', 'qemu'],
    ]);
    await lab.createGuestVm('web', 'a', DISK, 8);
  });
  after(async () => lab?.stop());

  test('protect, unplanned failover, commit, reprotect, failback, reprotect', async () => {
    await run(['vm', 'start', 'web', '--site', 'a']);
    await consoleShows('a', 'web', /REBOUND gen 1 written/);
    await jobWatch(['protect', 'web', '--policy', 'gold']);
    assert.equal((await item()).state, 'protected');
    // Generation 1 was flushed before protection: it is in the initial copy. Wait for a point after it.
    await until('the replica to catch up', async () => (await item()).rpo_seconds !== null);

    const fo = await jobWatch(['failover', 'web']);
    assert.ok(fo.steps.some((s) => s.name === 'roll the replica back to the point'));
    assert.equal((await item()).state, 'failed-over');
    await consoleShows('b', 'web-recovered', /REBOUND gen 1 ok/);
    await consoleShows('b', 'web-recovered', /REBOUND gen 2 written/);
    // The original site is lost in an unplanned failover: stop its VM the hard way.
    await run(['vm', 'shutdown', 'web', '--site', 'a', '--timeout', '0']);
    await refused(
      ['reprotect', 'web', '--datastore', 'default'],
      "the failover of 'web' is not committed: run 'rebound commit web' first",
    );
    await refused(['failback', 'web'], 'failback needs an item reprotected to the original site');
    await jobWatch(['commit', 'web']);
    await refused(
      ['reprotect', 'web'],
      'a datastore is required: new disks are made there when the original disks are gone (S18)',
    );
    await refused(['reprotect', 'web', '--datastore', 'nope'], "datastore 'nope' not found");

    const rp = await jobWatch(['reprotect', 'web', '--datastore', 'default']);
    const it = await item();
    assert.equal(it.state, 'protected');
    assert.equal(it.direction, 'reverse');
    assert.equal(it.machine_name, 'web-recovered');
    assert.match(it.policy_name, /failback/);
    const copied = rp.steps.find((s) => s.name === 'copy the differences')!.message ?? '';
    const sent = Number(/(\d+) bytes sent/.exec(copied)?.[1]);
    assert.ok(sent > 0 && sent < DISK / 4, `only the differences moved: ${copied}`);

    await jobWatch(['failback', 'web-recovered']);
    assert.equal((await item()).state, 'failed-back');
    assert.equal((await vm('b', 'web-recovered'))?.power_state, 'off');
    await consoleShows('a', 'web', /REBOUND gen 2 ok/);
    await consoleShows('a', 'web', /REBOUND gen 3 written/);

    await jobWatch(['reprotect', 'web', '--datastore', 'default']);
    const back = await item();
    assert.equal(back.state, 'protected');
    assert.equal(back.direction, 'forward');
    assert.equal(back.machine_name, 'web');
    assert.equal(back.policy_name, 'gold');
  });

  test('a test failover boots from a view while replication goes on; its clean-up removes it', async () => {
    const before = await item();
    await jobWatch(['test-failover', 'web']);
    await consoleShows('b', 'web-test', /REBOUND gen 3 ok/);
    await consoleShows('b', 'web-test', /REBOUND gen 4 written/);
    assert.equal((await item()).state, 'protected', 'replication goes on');
    await refused(['failover', 'web'], "a test failover of 'web' is running: clean it up first");
    await jobWatch(['cleanup-test-failover', 'web']);
    assert.equal(await vm('b', 'web-test'), undefined);
    assert.equal((await item()).machine_id, before.machine_id);
  });

  test('a planned failover loses nothing written before the shutdown', async () => {
    await jobWatch(['failover', 'web', '--planned']);
    const shutdownLine = /REBOUND clean shutdown ticks (\d+)/.exec(await consoleOf('a', 'web'));
    assert.ok(shutdownLine, 'the source shut down cleanly');
    await consoleShows('b', 'web-recovered', /REBOUND last shutdown clean/);
    await consoleShows('b', 'web-recovered', /REBOUND ticks ok \d+/);
    const recovered = await consoleOf('b', 'web-recovered');
    assert.doesNotMatch(recovered, /FAILED|missing|incomplete/, recovered);
    for (const g of [1, 2, 3]) assert.match(recovered, new RegExp(`REBOUND gen ${g} ok`));
    // The test failover's generation 4 went to its scratch: the replica never saw it.
    await consoleShows('b', 'web-recovered', /REBOUND gen 4 written/);
    assert.equal((await item()).state, 'failed-over');
  });
});
