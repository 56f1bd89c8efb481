// The qemu site with real virtual machines (QEMU TCG, the tiny guest of `rebound guest build`):
// a machine whose disk is served by its own registered agent boots, writes a generation of
// files, shuts down cleanly through the ACPI power button; a new QemuSite on the same directory
// finds it; the next boot verifies what the last one wrote; a guest that ignores the power
// button is stopped by force and its next boot reports the unclean shutdown with every synced
// file intact; freeze/thaw through a real QEMU guest agent, and without one; holds, refusals,
// and delete.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildGuest, type GuestImage } from '../../src/sites/guest/build.js';
import { processArgv, readPid } from '../../src/sites/qemu/processes.js';
import { QemuSite } from '../../src/sites/qemu/qemu-site.js';
import type { AgentRegistration, MachineSpec } from '../../src/sites/site-adapter.js';
import { createLogger } from '../../src/util/logger.js';
import { type RunningConfigServer, startConfigServer } from '../support/config-server.js';
import { scratchDir } from '../support/tmp.js';

describe('qemu site with real virtual machines', { timeout: 300_000 }, () => {
  const scratch = scratchDir('qemu-site');
  const siteDir = join(scratch.dir, 'site');
  const logger = createLogger(process.env.REBOUND_LOG_LEVEL ?? 'warn');
  let guest: GuestImage;
  let cs: RunningConfigServer;
  let reg: AgentRegistration;
  let site: QemuSite;
  let spec: MachineSpec;

  before(async () => {
    guest = await buildGuest({ logger });
    cs = await startConfigServer({ dataDir: join(scratch.dir, 'cs') });
    reg = { cs: cs.url.slice('https://'.length), passphraseFile: join(scratch.dir, 'cs', 'passphrase') };
    site = await QemuSite.open({ dir: siteDir, logger });
    spec = {
      name: 'vm1',
      memoryMiB: 256,
      disks: [{ name: 'vda', path: join(scratch.dir, 'vm1-vda.img'), sizeBytes: 64 << 20 }],
      boot: { kernel: guest.kernel, initrd: guest.initrd, append: `${guest.append} rebound.files=20` },
      network: 'none',
    };
  });

  after(async () => {
    // Whatever a failed test left running: stop it by force, then the agents and the server.
    const s = await QemuSite.open({ dir: siteDir, logger });
    for (const m of await s.list()) {
      await s.shutdown(m.name, { timeoutMs: 0 }).catch(() => {});
      await s.stopAgent(m.name).catch(() => {});
    }
    await cs?.stop();
    scratch.cleanup();
  });

  test('a machine whose disk its registered agent serves boots, writes generation 1 and shuts down clean', async () => {
    const created = await site.create(spec);
    assert.equal(created.powerState, 'off');
    assert.deepEqual(created.disksFrom, { kind: 'agent' });
    assert.ok(existsSync(spec.disks[0]!.path), 'the disk image is created (sparse)');

    await assert.rejects(
      site.powerOn('vm1'),
      new Error("machine 'vm1' boots from its agent's disks but its agent is not running (start it first)"),
    );
    await site.startAgent('vm1', reg);
    await site.startAgent('vm1', reg); // idempotent
    const machines = JSON.parse((await cs.cli(['machines', '--json'])).stdout) as { name: string }[];
    assert.ok(
      machines.some((m) => m.name === 'vm1'),
      'registered with the configuration server under the machine name',
    );

    await site.powerOn('vm1');
    const on = (await site.poweredOnAt('vm1'))!;
    const first = await site.firstOutputAt('vm1');
    assert.ok(first >= on, 'first output after the power-on');
    assert.equal((await site.get('vm1'))!.powerState, 'running');
    const text = await site.waitForConsole('vm1', /REBOUND running/, 90_000);
    assert.match(text, /^REBOUND ready$/m);
    assert.match(text, /^REBOUND mkfs \/dev\/vda$/m);
    assert.match(text, /^REBOUND new file system$/m);
    assert.match(text, /^REBOUND gen 1 written 20 files$/m);
    assert.match(text, /^REBOUND guest agent started$/m);
    // A real qemu-ga freezes the guest's file systems; thawed, they take writes again (the clean
    // shutdown below writes its marker and would hang on a frozen file system).
    assert.equal(await site.freeze('vm1'), 'frozen');
    await site.thaw('vm1');
    // The power button goes through the guest's ACPI handler, which unmounts before powering off.
    assert.equal(await site.shutdown('vm1', { timeoutMs: 60_000 }), 'clean');
    assert.match(await site.console('vm1'), /^REBOUND power button\nREBOUND clean shutdown ticks \d+$/m);
    assert.equal((await site.get('vm1'))!.powerState, 'off');
    assert.equal(await site.shutdown('vm1'), 'was-off');
  });

  test('a new QemuSite finds the running machine; the boot verifies generation 1; a guest that ignores the power button is forced off', async () => {
    await site.powerOn('vm1', { kernelArgs: 'rebound.nobutton=1 rebound.noqga=1' });
    const again = await QemuSite.open({ dir: siteDir, logger });
    const m = (await again.get('vm1'))!;
    assert.equal(m.powerState, 'running');
    assert.equal(m.agent?.running, true);
    const qemuPid = (await readPid(join(siteDir, 'machines', 'vm1', 'qemu.pid')))!;
    assert.ok(processArgv(qemuPid)!.some((a) => a.includes(join(siteDir, 'machines', 'vm1'))));

    const text = await again.waitForConsole('vm1', /REBOUND running/, 90_000);
    assert.match(text, /^REBOUND last shutdown clean$/m);
    assert.match(text, /^REBOUND gen 1 ok 20 files$/m);
    assert.match(text, /^REBOUND gen 2 written 20 files$/m);
    // Without its guest agent nobody answers guest-sync.
    assert.equal(await again.freeze('vm1', { syncTimeoutMs: 1500 }), 'no-guest-agent');
    assert.equal(await again.shutdown('vm1', { timeoutMs: 3000 }), 'forced');
    assert.doesNotMatch(await again.console('vm1'), /REBOUND clean shutdown/);
    assert.ok(!processArgv(qemuPid), 'QEMU is gone');
  });

  test('after the forced stop the next boot reports an unclean shutdown and every synced file verifies', async () => {
    await site.powerOn('vm1', { kernelArgs: 'rebound.oneshot=1' });
    assert.ok(await site.waitForPowerOff('vm1', 90_000), 'a oneshot guest powers itself off');
    const text = await site.console('vm1');
    assert.match(text, /^REBOUND last shutdown unclean$/m);
    assert.match(text, /^REBOUND gen 1 ok 20 files$/m);
    assert.match(text, /^REBOUND gen 2 ok 20 files$/m);
    assert.match(text, /^REBOUND ticks ok \d+$/m);
    assert.match(text, /^REBOUND gen 3 written 20 files$/m);
    assert.doesNotMatch(text, /FAILED|missing|incomplete/);
  });

  test('a held-off machine refuses to power on, with the reason; bad requests change nothing', async () => {
    await site.holdOff('vm1', 'reprotect of vm1 is in progress (S21)');
    assert.equal((await site.get('vm1'))!.heldOffBy, 'reprotect of vm1 is in progress (S21)');
    await assert.rejects(
      site.powerOn('vm1'),
      new Error(
        "machine 'vm1' is held off: reprotect of vm1 is in progress (S21); power-on refused until the hold is released",
      ),
    );
    assert.equal((await site.get('vm1'))!.powerState, 'off');
    await site.releaseHold('vm1');
    assert.equal((await site.get('vm1'))!.heldOffBy, undefined);

    await assert.rejects(site.create(spec), new Error("machine 'vm1' already exists on this site"));
    await assert.rejects(site.powerOn('nope'), new Error(`no machine 'nope' on this site (${siteDir})`));
    await assert.rejects(site.create({ ...spec, name: '../x' }), /machine name '\.\.\/x' is not valid/);
    // QEMU's own reason when a disk cannot be reached.
    await assert.rejects(
      site.powerOn('vm1', {
        disksFrom: { kind: 'nbd', urls: [`nbd+unix:///vda?socket=${scratch.dir}/none.sock`] },
      }),
      /^Error: machine 'vm1' failed to start: .*Failed to connect to '.*none\.sock'/s,
    );
    assert.equal((await site.get('vm1'))!.powerState, 'off');
  });

  test('list and delete: the machine, its agent and (when asked) its disk go', async () => {
    assert.deepEqual(
      (await site.list()).map((m) => m.name),
      ['vm1'],
    );
    const agentPid = (await readPid(join(siteDir, 'machines', 'vm1', 'agent.pid')))!;
    await site.delete('vm1', { deleteDisks: true });
    assert.deepEqual(await site.list(), []);
    assert.equal(await site.get('vm1'), undefined);
    assert.ok(!processArgv(agentPid), 'the agent is stopped');
    assert.ok(!existsSync(spec.disks[0]!.path), 'the disk image is deleted');
  });
});
