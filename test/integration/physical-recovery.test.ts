// Failover to a physical site: every power action there is a manual step. A QEMU VM at site a
// is protected; an unplanned failover to the physical site p rolls the replica back, hands its
// disk files over, and waits for the operator to bring the machine up; once confirmed, it waits
// for the recovered machine's agent to register, and that machine becomes the one the failover
// created (S26).

import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JobJson } from '../../src/cli/job-format.js';
import type { ItemView } from '../../src/control-plane/items/item-view.js';
import { until } from '../support/trio.js';
import { startVmLab, type VmLab } from '../support/vm-lab.js';

const DISK = 64 * 1024 * 1024;

interface MachineJson {
  id: string;
  name: string;
  site: string | null;
  created_by_failover_of: string | null;
}

describe('failover to a physical site', { timeout: 600_000 }, () => {
  let lab: VmLab;
  const run = (args: string[]) => lab.run(args);
  const json = <T>(args: string[]) => lab.json<T>(args);
  const job = (id: string) => lab.job(id);

  before(async () => {
    lab = await startVmLab('physical', [
      ['a', 'qemu'],
      ['p', 'physical'],
    ]);
    await lab.createGuestVm('web', 'a', DISK, 4);
    await run(['vm', 'start', 'web', '--site', 'a']);
    await lab.runJob(['protect', 'web', '--policy', 'gold']);
  });
  after(async () => lab?.stop());

  test('the job waits for the manual bring-up, then for the agent; the registered machine is the recovered one', async () => {
    await until(
      'the replica to catch up',
      async () => (await json<ItemView[]>(['items']))[0]!.rpo_seconds !== null,
    );
    const started = await json<{ item: ItemView; job: JobJson }>(['failover', 'web', '--site', 'p']);
    const bringUp = 'bring up the recovered machine';
    const waiting = await until('the failover to wait for the operator', async () => {
      const j = await job(started.job.id);
      return j.steps.find((s) => s.name === bringUp && s.state === 'WaitingForConfirmation') ? j : undefined;
    });
    const step = waiting.steps.find((s) => s.name === bringUp)!;
    assert.match(
      step.message ?? '',
      /^Write the recovered disks .* to machine 'web-recovered', install the Rebound agent/,
    );
    // The disks the operator is to write: the replica rolled back to the point, handed over whole.
    const rolled = waiting.steps.find((s) => s.name === 'roll the replica back to the point')!;
    const dir = /its disks are in (\S+)$/.exec(rolled.message ?? '')?.[1];
    assert.ok(dir, rolled.message ?? '');
    const files = readdirSync(dir).map((f) => statSync(join(dir, f)).size);
    assert.deepEqual(files, [DISK], `${dir}: one disk of the machine's size`);
    assert.equal((await json<ItemView[]>(['items']))[0]!.state, 'failing-over');

    await run(['jobs', 'confirm', started.job.id, bringUp]);
    await until('the job to wait for the agent', async () =>
      (await job(started.job.id)).steps.some((s) => s.name === 'wait for its agent' && s.state === 'Running'),
    );
    const hp = lab.cs.url.slice('https://'.length);
    await run([
      ...['agent', 'register', '-i', hp, '-P', join(lab.csDir, 'passphrase')],
      ...['--data-dir', join(lab.scratch, 'recovered-agent'), '--name', 'web-recovered', '--site', 'p'],
    ]);
    await lab.watched(started.job.id);

    const it = (await json<ItemView[]>(['items']))[0]!;
    assert.equal(it.state, 'failed-over');
    const recovered = (await json<MachineJson[]>(['machines'])).find((m) => m.name === 'web-recovered')!;
    assert.equal(recovered.site, 'p');
    assert.equal(recovered.created_by_failover_of, it.id, 'made by the failover of its item (S26)');
  });
});
