// A replication group's write barrier on a real agent: while held, no write completes and
// none is logged (a bookmark taken then is the next seq); release lets the held write
// finish; a hold nobody releases ends by itself after its timeout.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { callAgent } from '../../src/agent/control-server.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('agent write barrier', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('barrier');
  let agent: RunningAgent | undefined;
  after(async () => {
    await agent?.kill();
    cleanup();
  });

  test('hold, bookmark, release; and the automatic release', async () => {
    const dataDir = `${dir}/agent`;
    agent = await startAgent(['--data-dir', dataDir, '--disk', `d=${sparseImage(`${dir}/d.img`, 16 * MiB)}`]);
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    const status = async () => (await callAgent(dataDir, 'GET', '/status')).body;
    await client.write(0, Buffer.alloc(4096, 1));

    const hold = await runCli([
      'agent',
      'barrier',
      'hold',
      '--data-dir',
      dataDir,
      '--timeout',
      '20',
      '--json',
    ]);
    assert.equal(hold.code, 0, hold.stderr);
    const held = JSON.parse(hold.stdout);
    assert.equal(held.held, true);
    let done = false;
    const write = client.write(8192, Buffer.alloc(4096, 2)).then(() => {
      done = true;
    });
    await sleep(500);
    assert.equal(done, false, 'a write completed while the barrier was held');
    const s = await status();
    assert.equal(s.lastSeq, held.lastSeq, 'a held write was logged');
    assert.deepEqual(
      { held: (s.barrier as { held: boolean }).held, waiting: (s.barrier as { waiting: number }).waiting },
      {
        held: true,
        waiting: 1,
      },
    );
    // The bookmark of the group point comes right after everything completed before the hold.
    const b = await callAgent(dataDir, 'POST', '/bookmarks?tag=group-1');
    assert.equal(b.status, 201);
    assert.equal(b.body.seq, held.lastSeq + 1);
    assert.equal(done, false);
    const rel = await runCli(['agent', 'barrier', 'release', '--data-dir', dataDir, '--json']);
    assert.equal(rel.code, 0, rel.stderr);
    assert.equal(JSON.parse(rel.stdout).released, true);
    await write;
    assert.ok(
      ((await status()).lastSeq as number) > (b.body.seq as number),
      'the released write is after the bookmark',
    );

    // Nobody releases: the workload goes on after the timeout.
    const h2 = await callAgent(dataDir, 'POST', '/barrier/hold?timeoutMs=700');
    assert.equal(h2.status, 200);
    const t0 = Date.now();
    await client.write(16384, Buffer.alloc(4096, 3));
    const waited = Date.now() - t0;
    assert.ok(waited >= 600 && waited < 5000, `the held write waited ${waited} ms`);
    const after2 = (await status()).barrier as { held: boolean; timedOut: number };
    assert.deepEqual([after2.held, after2.timedOut], [false, 1]);
    assert.match(agent.stderr(), /write barrier released by its timeout/);

    // Bad timeouts are refused, and nothing is held.
    for (const bad of ['0', '60001', 'soon']) {
      const r = await callAgent(dataDir, 'POST', `/barrier/hold?timeoutMs=${bad}`);
      assert.equal(r.status, 400);
      assert.equal(r.body.error, `timeoutMs must be an integer from 1 to 60000, not '${bad}'`);
    }
    assert.equal(((await status()).barrier as { held: boolean }).held, false);
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
