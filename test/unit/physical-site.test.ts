// The physical site: every power and agent action is a manual step naming what the operator
// does; holds and confirmed power states are recorded and survive a new PhysicalSite object.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { PhysicalSite } from '../../src/sites/physical.js';
import type { MachineSpec } from '../../src/sites/site-adapter.js';
import { createLogger } from '../../src/util/logger.js';
import { scratchDir } from '../support/tmp.js';

const scratch = scratchDir('physical-site');
after(() => scratch.cleanup());
const logger = createLogger('silent');
const spec: MachineSpec = {
  name: 'db1',
  disks: [
    { name: 'sda', path: '/dev/sda', sizeBytes: 1 << 30 },
    { name: 'sdb', path: '/dev/sdb', sizeBytes: 2 << 30 },
  ],
  boot: { kernel: '', initrd: '' },
};

test('a physical machine is recorded; power and agent actions are manual steps naming what to do', async () => {
  const site = await PhysicalSite.open({ dir: scratch.dir, logger });
  const m = await site.create(spec);
  assert.equal(m.powerState, 'off');
  assert.deepEqual(m.disksFrom, { kind: 'agent' });
  await assert.rejects(site.create(spec), new Error("machine 'db1' already exists on this site"));

  assert.deepEqual(await site.powerOn('db1'), { manual: "Power on machine 'db1' and confirm" });
  assert.deepEqual(
    await site.powerOn('db1', {
      disksFrom: { kind: 'nbd', urls: ['nbd://10.0.0.5:10809/sda', 'nbd://10.0.0.5:10809/sdb'] },
    }),
    {
      manual:
        "Boot machine 'db1' with its disks attached over NBD (sda from nbd://10.0.0.5:10809/sda, sdb from nbd://10.0.0.5:10809/sdb) and confirm",
    },
  );
  await assert.rejects(
    site.powerOn('db1', { disksFrom: { kind: 'nbd', urls: ['nbd://x/sda'] } }),
    new Error("machine 'db1' has 2 disk(s) but 1 NBD URL(s) were given"),
  );
  // Recorded off: nothing to shut down.
  assert.equal(await site.shutdown('db1'), 'was-off');
  await site.confirmPowerState('db1', 'running');
  assert.equal((await site.get('db1'))!.powerState, 'running');
  assert.deepEqual(await site.shutdown('db1', { timeoutMs: 120_000 }), {
    manual: "Shut down machine 'db1' cleanly (power it off if it has not stopped after 120 s) and confirm",
  });
  assert.deepEqual(
    await site.startAgent('db1', { cs: 'cs.example:9443', passphraseFile: '/etc/rebound/pass' }),
    {
      manual:
        "On machine 'db1': register its agent with 'rebound agent register -i cs.example:9443 -P /etc/rebound/pass --name db1', " +
        "then start 'rebound agent serve --disk sda=/dev/sda --disk sdb=/dev/sdb', and confirm",
    },
  );
  const reset = await site.startAgent('db1', { cs: 'cs:9443', passphraseFile: '/p' }, { resetLog: true });
  assert.match(
    reset.manual,
    /with its change log reset \(its disks were rewritten at the other site\), and confirm$/,
  );
  assert.deepEqual(await site.stopAgent('db1'), {
    manual: "Stop the Rebound agent ('rebound agent serve') on machine 'db1' and confirm",
  });
});

test('a hold refuses power-on with its reason, is recorded, and is released', async () => {
  const site = await PhysicalSite.open({ dir: scratch.dir, logger });
  await site.holdOff('db1', 'reprotect of db1 (job 42)');
  const again = await PhysicalSite.open({ dir: scratch.dir, logger });
  assert.equal((await again.get('db1'))!.heldOffBy, 'reprotect of db1 (job 42)');
  await assert.rejects(
    again.powerOn('db1'),
    new Error(
      "machine 'db1' is held off: reprotect of db1 (job 42); power-on refused until the hold is released",
    ),
  );
  await assert.rejects(again.holdOff('db1', ' '), /a hold needs a reason/);
  await again.releaseHold('db1');
  assert.equal((await again.get('db1'))!.heldOffBy, undefined);
  assert.deepEqual(await again.powerOn('db1'), { manual: "Power on machine 'db1' and confirm" });
});

test('list, unknown machines, bad names and delete', async () => {
  const site = await PhysicalSite.open({ dir: scratch.dir, logger });
  await site.create({ ...spec, name: 'app2' });
  assert.deepEqual(
    (await site.list()).map((m) => m.name),
    ['app2', 'db1'],
  );
  await assert.rejects(site.powerOn('nope'), new Error(`no machine 'nope' on this site (${scratch.dir})`));
  await assert.rejects(site.create({ ...spec, name: 'a/b' }), /machine name 'a\/b' is not valid/);
  await assert.rejects(
    site.delete('db1', { deleteDisks: true }),
    new Error("a physical site cannot delete the disks of machine 'db1': wipe them on the server itself"),
  );
  assert.ok(await site.get('db1'), 'a refused delete changes nothing');
  await site.delete('db1');
  assert.deepEqual(
    (await site.list()).map((m) => m.name),
    ['app2'],
  );
});
