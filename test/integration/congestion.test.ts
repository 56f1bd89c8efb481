// A full change log under --on-congestion block: writers wait for room (the log stays the
// bounded queue) while the process server drains it, and nothing is pulled ahead; with no
// process server, a writer waits at most the block timeout, then its change and those after
// it go to the dirty bitmap without waiting, and the state says so.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CongestionStatus } from '../../src/agent/congestion.js';
import { callAgent } from '../../src/agent/control-server.js';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { waitFor } from '../../src/util/exec.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function congestion(dataDir: string): Promise<CongestionStatus> {
  return (await callAgent(dataDir, 'GET', '/status')).body.congestion as CongestionStatus;
}

async function cachedWrites(cacheDir: string): Promise<number> {
  const log = await ChangeLog.open(cacheDir, { maxBytes: 0, segmentBytes: 0, readOnly: true });
  let n = 0;
  for await (const r of log.records()) if (r.type === RecordType.Write) n++;
  return n;
}

describe('congestion policy block', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('congestion');
  const tls = join(dir, 'tls');
  const agents: RunningAgent[] = [];
  let ps: RunningComponent | undefined;
  before(async () => {
    await initCa(join(dir, 'ca'));
    await issueCert(join(dir, 'ca'), { role: 'agent', name: 'a1', outDir: tls });
    await issueCert(join(dir, 'ca'), { role: 'process-server', name: 'ps1', outDir: tls });
  });
  after(async () => {
    for (const a of agents) await a.kill();
    await killChild(ps?.child);
    cleanup();
  });
  const limits = ['--log-limit', '1M', '--segment-size', '128K', '--on-congestion', 'block'];

  test('writers wait while the process server drains the log; nothing goes to the bitmap', async () => {
    ps = await startProcessServer(['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1']);
    const dataDir = join(dir, 'drained');
    const agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${sparseImage(join(dir, 'drained.img'), 16 * MiB)}`,
      ...limits,
      '--ack-timeout',
      '30',
      '--checkpoint-interval',
      '0.1',
      '--process-server',
      `127.0.0.1:${ps.port}`,
      '--tls-dir',
      tls,
      '--name',
      'a1',
    ]);
    agents.push(agent);
    const c = await TestNbdClient.connect({ port: agent.port }, 'd');
    const chunks = 96; // 6 MiB through a 1 MiB log
    for (let i = 0; i < chunks; i++) await c.write(i * 64 * KiB, randomBytes(64 * KiB));
    await c.flush();
    await c.disconnect();
    const s = await congestion(dataDir);
    assert.equal(s.policy, 'block');
    assert.ok(s.blockedTotal > 0, 'no writer ever waited: the test did not fill the log');
    assert.equal(s.pulledAhead, 0);
    assert.equal(s.state, 'none');
    const summary = JSON.parse((await runCli(['agent', 'log', '--json', '--data-dir', dataDir])).stdout);
    // Only the initial copy's mark (whole disk): this process server forwards to no master
    // target, so there is nothing to copy to; congestion added nothing (pulledAhead 0).
    assert.deepEqual(summary.disks[0].resyncRequired, [{ offset: 0, length: 16 * MiB }]);
    assert.ok(summary.log.bytes <= 2 * MiB, `the log stayed bounded: ${summary.log.bytes}`);
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const cache = join(dir, 'ps', 'machines', machineId, 'cache');
    await waitFor('every write in the cache', async () => (await cachedWrites(cache)) === chunks, 30_000);
    assert.equal(await agent.stop(), 0);
  });

  test('with nobody draining, a writer waits the block timeout, then changes pull ahead', async () => {
    const dataDir = join(dir, 'stuck');
    const agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${sparseImage(join(dir, 'stuck.img'), 16 * MiB)}`,
      ...limits,
      '--ack-timeout',
      '2',
    ]);
    agents.push(agent);
    const c = await TestNbdClient.connect({ port: agent.port }, 'd');
    await c.write(0, randomBytes(1000 * KiB)); // less than 64 KiB of room left
    const t0 = Date.now();
    const blocked = c.write(MiB, randomBytes(512 * KiB));
    await new Promise((r) => setTimeout(r, 700));
    const during = await congestion(dataDir);
    assert.equal(during.state, 'blocking');
    assert.equal(during.blockedNow, 1);
    await blocked;
    assert.ok(Date.now() - t0 >= 1900, 'the writer did not wait for the block timeout');
    // Still full: later changes do not wait again.
    const t1 = Date.now();
    for (let i = 0; i < 8; i++) await c.write(4 * MiB + i * 64 * KiB, randomBytes(64 * KiB));
    assert.ok(Date.now() - t1 < 1500, 'changes after the timeout waited again');
    await c.flush();
    await c.disconnect();
    const after = await congestion(dataDir);
    assert.equal(after.state, 'pulled-ahead');
    assert.equal(after.pulledAhead, 9);
    const text = await runCli(['agent', 'log', '--data-dir', dataDir]);
    assert.match(
      text.stdout,
      /congestion policy block \(at most 2 s\): pulled ahead: 9 changes went to the dirty bitmap/,
    );
    assert.match(text.stdout, /resync required: \d+ regions/);
    assert.match(agent.stderr(), /change log still full after the block timeout/);
    assert.equal(await agent.stop(), 0);
  });
});
