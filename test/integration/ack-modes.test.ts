// Acknowledgement modes with a real NBD client. sync: a FLUSH (or FUA write) returns only
// once the master target has applied it; with the master target stopped it waits for
// --ack-timeout, then the agent degrades to async (visible, logged) and returns to sync once
// the master target is back and caught up. process-server: the same against the process
// server's cache. async: a FLUSH never waits for anyone.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { AckGateStatus } from '../../src/agent/ack-gate.js';
import { callAgent } from '../../src/agent/control-server.js';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';
import { MasterTarget } from '../../src/master-target/master-target.js';
import { loadTlsMaterial } from '../../src/pki/ca.js';
import { waitFor } from '../../src/util/exec.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts } from '../support/trio.js';

const MiB = 1024 * 1024;
const TIMEOUT_S = 2;

async function ackStatus(dataDir: string): Promise<AckGateStatus> {
  const r = await callAgent(dataDir, 'GET', '/status');
  return r.body.ack as AckGateStatus;
}

/** How long p takes to settle, in ms. */
async function timed(p: Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  await p;
  return Date.now() - t0;
}

async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, ms));
  return !done;
}

/** A write in the process server's cache at that offset with that data. */
async function cacheHolds(cacheDir: string, offset: number, data: Buffer): Promise<boolean> {
  const log = await ChangeLog.open(cacheDir, { maxBytes: 0, segmentBytes: 0, readOnly: true });
  for await (const r of log.records()) {
    if (r.type === RecordType.Write && r.offset === offset && Buffer.from(r.payload).equals(data))
      return true;
  }
  return false;
}

describe('acknowledgement modes', { timeout: 240_000 }, () => {
  const { dir, cleanup } = scratchDir('ackmodes');
  const tls = join(dir, 'tls');
  const agents: RunningAgent[] = [];
  const servers: RunningComponent[] = [];
  let mt: MasterTarget | undefined;
  const mtLogger = pino({ level: 'silent' });

  before(async () => {
    await issueTrioCerts(dir);
  });
  after(async () => {
    if (process.env.REBOUND_TEST_DEBUG) for (const c of [...agents, ...servers]) console.error(c.stderr());
    for (const a of agents) await a.kill();
    for (const s of servers) await killChild(s.child);
    await mt?.close();
    cleanup();
  });

  const startMt = async (port = 0) =>
    MasterTarget.start({
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      host: '127.0.0.1',
      port,
      material: await loadTlsMaterial(tls, { role: 'master-target', name: 'mt1' }),
      name: 'mt1',
      logger: mtLogger,
    });

  const agentArgs = (name: string, psPort: number, mode: string) => [
    '--data-dir',
    join(dir, name),
    '--disk',
    `d=${sparseImage(join(dir, `${name}.img`), 16 * MiB)}`,
    '--checkpoint-interval',
    '0.2',
    '--process-server',
    `127.0.0.1:${psPort}`,
    '--tls-dir',
    tls,
    '--name',
    'a1',
    '--ack-mode',
    mode,
    '--ack-timeout',
    String(TIMEOUT_S),
  ];

  test('sync: a flush returns once the master target has applied it; degrades and recovers', async () => {
    mt = await startMt();
    const mtPort = mt.port;
    const ps = await startProcessServer([
      '--data-dir',
      join(dir, 'ps-sync'),
      '--tls-dir',
      tls,
      '--name',
      'ps1',
      '--master-target',
      `127.0.0.1:${mtPort}`,
    ]);
    servers.push(ps);
    const agent = await startAgent(agentArgs('sync', ps.port, 'sync'));
    agents.push(agent);
    const dataDir = join(dir, 'sync');
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    const replicaHolds = async (offset: number, data: Buffer) => {
      const replica = mt!.replica(machineId);
      if (!replica) return false;
      const view = replica.openView('latest');
      try {
        return (await view.read(1, offset, data.length)).equals(data);
      } finally {
        view.close();
      }
    };

    // Everything up: the flush returns, and the replica already holds the write.
    const a = randomBytes(64 * 1024);
    await client.write(0, a);
    const ms = await timed(client.flush());
    assert.ok(ms < TIMEOUT_S * 1000, `flush took ${ms} ms`);
    assert.ok(await replicaHolds(0, a), 'the master target did not have the write when the flush returned');
    let s = await ackStatus(dataDir);
    assert.equal(s.mode, 'sync');
    assert.equal(s.state, 'ok');
    // A FUA write likewise.
    const b = randomBytes(8192);
    await client.write(MiB, b, true);
    assert.ok(await replicaHolds(MiB, b), 'the master target did not have the FUA write when it returned');

    // Master target stopped: the flush waits for the timeout, then the agent degrades.
    await mt.close();
    mt = undefined;
    const c = randomBytes(4096);
    await client.write(2 * MiB, c);
    const t0 = Date.now();
    const flushing = client.flush();
    assert.ok(await stillPending(flushing, 1000), 'the flush returned while the master target was down');
    assert.equal((await ackStatus(dataDir)).waiting, 1);
    await flushing;
    const waited = Date.now() - t0;
    assert.ok(waited >= TIMEOUT_S * 1000 - 100 && waited < TIMEOUT_S * 1000 + 3000, `waited ${waited} ms`);
    s = await ackStatus(dataDir);
    assert.equal(s.state, 'degraded');
    assert.match(s.reason!, /no acknowledgement from the master target's journal for seq \d+ within 2 s/);
    assert.ok(s.owedThrough > s.remoteDurableThrough, 'the local-only acknowledgement is owed');
    assert.match(agent.stderr(), /acknowledgement mode sync degraded to async/);
    const log = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.match(
      log.stdout,
      /acknowledgement mode sync: degraded since .*: acknowledged once in the agent's change log only/,
    );

    // Degraded: flushes do not wait.
    const d = randomBytes(4096);
    await client.write(3 * MiB, d);
    assert.ok((await timed(client.flush())) < 1000, 'a degraded flush waited');

    // The master target returns on its port: the agent catches up and is in sync mode again.
    mt = await startMt(mtPort);
    await waitFor('sync mode again', async () => (await ackStatus(dataDir)).state === 'ok', 30_000);
    assert.ok(await replicaHolds(2 * MiB, c));
    assert.ok(await replicaHolds(3 * MiB, d));
    const e = randomBytes(4096);
    await client.write(4 * MiB, e);
    await client.flush();
    assert.ok(
      await replicaHolds(4 * MiB, e),
      'after recovery the flush returned before the master target had it',
    );
    s = await ackStatus(dataDir);
    assert.equal(s.state, 'ok');
    assert.equal(s.degradations, 1);
    assert.equal(s.owedThrough, 0);
    assert.match(agent.stderr(), /acknowledgements wait for the master target's journal again/);
    const ok = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.match(
      ok.stdout,
      /acknowledgement mode sync: ok \(a FLUSH is acknowledged once in the master target's journal\)/,
    );
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
  });

  test('process-server: a flush waits for the cache; degrades while it is down; async never waits', async () => {
    const psArgs = ['--data-dir', join(dir, 'ps-cache'), '--tls-dir', tls, '--name', 'ps1'];
    let ps = await startProcessServer(psArgs);
    servers.push(ps);
    const psPort = ps.port;
    const agent = await startAgent(agentArgs('psmode', psPort, 'process-server'));
    agents.push(agent);
    const dataDir = join(dir, 'psmode');
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const cacheDir = join(dir, 'ps-cache', 'machines', machineId, 'cache');
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');

    const a = randomBytes(4096);
    await client.write(0, a);
    await client.flush();
    assert.ok(await cacheHolds(cacheDir, 0, a), 'the cache did not have the write when the flush returned');
    assert.equal((await ackStatus(dataDir)).state, 'ok');

    await killChild(ps.child);
    const b = randomBytes(4096);
    await client.write(MiB, b);
    const flushing = client.flush();
    assert.ok(await stillPending(flushing, 1000), 'the flush returned while the process server was down');
    await flushing;
    let s = await ackStatus(dataDir);
    assert.equal(s.state, 'degraded');
    assert.match(
      s.reason!,
      /no acknowledgement from the process server's cache .* \(process server not connected/,
    );

    // An async agent with the same process server down: the flush does not wait.
    const asyncAgent = await startAgent(agentArgs('async', psPort, 'async'));
    agents.push(asyncAgent);
    const ac = await TestNbdClient.connect({ port: asyncAgent.port }, 'd');
    await ac.write(0, randomBytes(4096));
    assert.ok((await timed(ac.flush())) < 1000, 'an async flush waited for the process server');
    assert.equal((await ackStatus(join(dir, 'async'))).mode, 'async');
    await ac.disconnect();
    assert.equal(await asyncAgent.stop(), 0);

    ps = await startProcessServer(psArgs, psPort);
    servers.push(ps);
    await waitFor('process-server mode again', async () => (await ackStatus(dataDir)).state === 'ok', 30_000);
    assert.ok(await cacheHolds(cacheDir, MiB, b));
    const c = randomBytes(4096);
    await client.write(2 * MiB, c);
    await client.flush();
    assert.ok(
      await cacheHolds(cacheDir, 2 * MiB, c),
      'after recovery the flush returned before the cache had it',
    );
    s = await ackStatus(dataDir);
    assert.equal(s.state, 'ok');
    assert.ok(s.remoteDurableThrough > 0);
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
  });
});
