// The agent ships its change log to a process server over mutual TLS: every change
// reaches the process server's durable cache, in order and once, across a SIGKILL of
// the process server in the middle of the stream; acknowledged changes are trimmed
// from the agent's log.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const MiB = 1024 * 1024;

/** The writes in the process server's cache, in sequence order (the cache validates order). */
async function cachedWrites(cacheDir: string): Promise<{ seq: number; offset: number; data: Buffer }[]> {
  const log = await ChangeLog.open(cacheDir, { maxBytes: 0, segmentBytes: 0, readOnly: true });
  const out: { seq: number; offset: number; data: Buffer }[] = [];
  for await (const r of log.records()) {
    if (r.type === RecordType.Write) out.push({ seq: r.seq, offset: r.offset, data: Buffer.from(r.payload) });
  }
  return out;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('agent -> process server shipping over mutual TLS', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('ship');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  after(async () => {
    if (process.env.REBOUND_TEST_DEBUG) console.error(agent?.stderr(), ps?.stderr());
    await agent?.kill();
    await killChild(ps?.child);
    cleanup();
  });

  test('every change reaches the cache once and in order, across a process-server crash', async () => {
    const caDir = join(dir, 'ca');
    const tlsDir = join(dir, 'tls');
    await initCa(caDir);
    await issueCert(caDir, { role: 'agent', name: 'a1', outDir: tlsDir });
    await issueCert(caDir, { role: 'process-server', name: 'ps1', outDir: tlsDir });
    const psData = join(dir, 'ps');
    const psArgs = ['--data-dir', psData, '--tls-dir', tlsDir, '--name', 'ps1'];
    ps = await startProcessServer(psArgs);
    const port = ps.port;

    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), 64 * MiB);
    agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${disk}`,
      '--checkpoint-interval',
      '0.2',
      '--segment-size',
      '1M',
      '--process-server',
      `127.0.0.1:${port}`,
      '--tls-dir',
      tlsDir,
      '--name',
      'a1',
    ]);
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const cacheDir = join(psData, 'machines', machineId, 'cache');

    const written: { offset: number; data: Buffer }[] = [];
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    const writeSome = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const w = {
          offset: (written.length * 37 * 4096) % (60 * MiB),
          data: randomBytes(4096 * (1 + (i % 8))),
        };
        await client.write(w.offset, w.data);
        written.push(w);
      }
      await client.flush();
    };
    const allCached = async () => (await cachedWrites(cacheDir)).length === written.length;

    await writeSome(200);
    await waitFor('the first 200 writes in the cache', allCached);

    // The process server dies mid-stream; the agent keeps taking writes, then resumes.
    const more = writeSome(300);
    await new Promise((r) => setTimeout(r, 50));
    await killChild(ps?.child);
    await more;
    ps = await startProcessServer(psArgs, port);
    await writeSome(100);
    await waitFor('all 600 writes in the cache after the restart', allCached);

    const cached = await cachedWrites(cacheDir);
    for (let i = 0; i < written.length; i++) {
      assert.equal(cached[i]!.offset, written[i]!.offset, `write ${i}: offset`);
      assert.ok(cached[i]!.data.equals(written[i]!.data), `write ${i}: data`);
    }
    // Acknowledged changes leave the agent's log (whole segments, behind the checkpoint).
    await waitFor('the agent log to be trimmed', async () => {
      const s = await runCli(['agent', 'log', '--json', '--data-dir', dataDir]);
      return JSON.parse(s.stdout).log.trimmedThrough > 0;
    });
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
