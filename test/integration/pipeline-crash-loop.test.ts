// SIGKILL a random component (agent, process server, master target) at a random moment
// under write load, again and again. Before each round's load, a bookmark is taken on a
// quiet disk and the disk is saved. At the end the master target's latest view equals
// the agent's disk byte for byte, and the view of every bookmark equals the disk saved
// with it: nothing acknowledged is lost, nothing is applied twice or out of order.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Replica } from '../../src/master-target/replica.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import {
  type ComponentKind,
  killChild,
  type RunningComponent,
  startComponent,
} from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, waitProtected } from '../support/trio.js';

const MiB = 1024 * 1024;

const DISK = 32 * MiB;
const ROUNDS = 20;

describe('replication under SIGKILL of agent, process server and master target', { timeout: 420_000 }, () => {
  const { dir, cleanup } = scratchDir('pipecrash');
  const seed = Number(process.env.REBOUND_TEST_SEED ?? Date.now() % 1_000_000);
  const rand = prng(seed);
  let agent: RunningAgent | undefined;
  const running: Partial<Record<ComponentKind, RunningComponent>> = {};
  after(async () => {
    await agent?.kill();
    await killChild(running['process-server']?.child);
    await killChild(running['master-target']?.child);
    cleanup();
  });

  test(`${ROUNDS} rounds; every bookmark and the latest state arrive exactly (seed ${seed})`, async () => {
    const tls = await issueTrioCerts(dir);
    const mtData = join(dir, 'mt');
    const retention = join(dir, 'retention');
    const mtArgs = ['--data-dir', mtData, '--retention-dir', retention, '--tls-dir', tls, '--name', 'mt1'];
    running['master-target'] = await startComponent('master-target', mtArgs);
    const mtPort = running['master-target'].port;
    const psArgs = ['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'];
    psArgs.push('--master-target', `127.0.0.1:${mtPort}`);
    running['process-server'] = await startComponent('process-server', psArgs);
    const psPort = running['process-server'].port;
    const ports = { 'process-server': psPort, 'master-target': mtPort };
    const args = { 'process-server': psArgs, 'master-target': mtArgs };
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    const agentArgs = ['--data-dir', dataDir, '--disk', `d=${disk}`, '--checkpoint-interval', '0.2'];
    agentArgs.push('--segment-size', '1M', '--process-server', `127.0.0.1:${psPort}`);
    agentArgs.push('--tls-dir', tls, '--name', 'a1');

    const randomChange = async (client: TestNbdClient) => {
      const offset = Math.floor(rand() * (DISK / 4096 - 64)) * 4096;
      const r = rand();
      if (r < 0.85) await client.write(offset, randomBytes(4096 * (1 + Math.floor(rand() * 16))));
      else if (r < 0.93) await client.writeZeroes(offset, 4096 * (1 + Math.floor(rand() * 32)));
      else await client.trim(offset, 4096 * (1 + Math.floor(rand() * 32)));
    };
    const saved: { tag: string; image: Buffer }[] = [];

    for (let round = 0; round < ROUNDS; round++) {
      agent ??= await startAgent(agentArgs);
      for (const kind of ['master-target', 'process-server'] as const) {
        running[kind] ??= await startComponent(kind, args[kind], ports[kind]);
      }
      // Bookmarks are recovery points once the initial copy has ended.
      if (round === 0) await waitProtected(dataDir);
      const client = await TestNbdClient.connect({ port: agent.port }, 'd');
      // A quiet point: changes, flush, bookmark, save the disk as it is now.
      for (let i = 0; i < 30; i++) await randomChange(client);
      await client.flush();
      const tag = `round-${round}`;
      const b = await runCli(['agent', 'bookmark', '--data-dir', dataDir, '--tag', tag]);
      assert.equal(b.code, 0, b.stderr);
      saved.push({ tag, image: readFileSync(disk) });

      // Load, and a kill at a random moment.
      const victim = (['agent', 'process-server', 'master-target'] as const)[Math.floor(rand() * 3)]!;
      let stop = false;
      const load = (async () => {
        for (let i = 0; !stop; i++) {
          try {
            await randomChange(client);
            if (i % 8 === 7) await client.flush();
          } catch {
            return; // the agent is gone
          }
        }
      })();
      await new Promise((r) => setTimeout(r, 50 + rand() * 400));
      if (victim === 'agent') {
        await agent.kill();
        agent = undefined;
      } else {
        await killChild(running[victim]!.child);
        running[victim] = undefined;
      }
      await new Promise((r) => setTimeout(r, rand() * 200));
      stop = true;
      await load;
      client.destroy();
    }

    // Everyone back; a last bookmark; wait for the master target to apply through it.
    agent ??= await startAgent(agentArgs);
    for (const kind of ['master-target', 'process-server'] as const) {
      running[kind] ??= await startComponent(kind, args[kind], ports[kind]);
    }
    const last = await runCli(['agent', 'bookmark', '--json', '--data-dir', dataDir, '--tag', 'final']);
    assert.equal(last.code, 0, last.stderr);
    const finalSeq = JSON.parse(last.stdout).seq as number;
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const statePath = join(mtData, 'machines', machineId, 'replica-state.json');
    const deadline = Date.now() + 90_000;
    const applied = () => {
      try {
        return JSON.parse(readFileSync(statePath, 'utf8')).appliedThrough as number;
      } catch {
        return 0;
      }
    };
    while (applied() < finalSeq) {
      assert.ok(Date.now() < deadline, `the master target applied through ${applied()} of ${finalSeq}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const source = readFileSync(disk);
    assert.equal(await agent.stop(), 0);
    agent = undefined;
    assert.equal(await running['process-server']!.stop(), 0);
    assert.equal(await running['master-target']!.stop(), 0);
    running['process-server'] = running['master-target'] = undefined;

    // The replica, opened where the master target left it.
    const mdir = join(mtData, 'machines', machineId);
    const replica = await Replica.open({
      stateDir: mdir,
      retentionDir: join(retention, machineId),
      disks: [{ id: 1, path: join(mdir, 'disk-1.img') }],
    });
    try {
      const read = async (point: number | 'latest') => {
        const v = replica.openView(point);
        try {
          return await v.read(1, 0, DISK);
        } finally {
          v.close();
        }
      };
      assert.ok((await read('latest')).equals(source), 'the latest view differs from the source');
      const points = new Map(replica.recoveryPoints().map((p) => [p.tag, p.seq]));
      for (const s of saved) {
        const seq = points.get(s.tag);
        assert.ok(seq !== undefined, `bookmark ${s.tag} is not a recovery point`);
        assert.ok(
          (await read(seq)).equals(s.image),
          `the view of ${s.tag} differs from the disk saved with it`,
        );
      }
    } finally {
      await replica.close();
    }
  });
});
