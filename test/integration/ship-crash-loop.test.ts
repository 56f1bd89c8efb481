// SIGKILL the agent or the process server at random moments while the agent takes
// writes and ships them. In the end the process server's cache holds every
// acknowledged write exactly once, in order, and replaying the cache onto an empty
// image gives the agent's disk byte for byte.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { RecordType } from '../../src/changelog/record.js';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { type RunningAgent, startAgent } from '../support/agent-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { prng } from '../support/prng.js';
import {
  killChild,
  type RunningProcessServer,
  startProcessServer,
} from '../support/process-server-process.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const MiB = 1024 * 1024;
const DISK = 64 * MiB;
const SLOT = 16 * 1024; // every write gets a fresh slot: 4096 slots for at most 8 x 400 writes
const ROUNDS = 8;

describe('shipping under SIGKILL of the agent and the process server', { timeout: 300_000 }, () => {
  const { dir, cleanup } = scratchDir('shipcrash');
  const seed = Number(process.env.REBOUND_TEST_SEED ?? Date.now() % 1_000_000);
  const rand = prng(seed);
  let agent: RunningAgent | undefined;
  let ps: RunningProcessServer | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    cleanup();
  });

  test(`${ROUNDS} kills; the cache holds every acknowledged write once, in order (seed ${seed})`, async () => {
    const ca = join(dir, 'ca');
    const tls = join(dir, 'tls');
    await initCa(ca);
    await issueCert(ca, { role: 'agent', name: 'a1', outDir: tls });
    await issueCert(ca, { role: 'process-server', name: 'ps1', outDir: tls });
    const psArgs = ['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'];
    ps = await startProcessServer(psArgs, 0);
    const port = ps.port;
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    const agentArgs = [
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
      tls,
      '--name',
      'a1',
    ];

    const slots = Array.from({ length: DISK / SLOT }, (_, i) => i);
    for (let i = slots.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [slots[i], slots[j]] = [slots[j]!, slots[i]!];
    }
    let nextSlot = 0;
    const acked: { offset: number; data: Buffer }[] = [];
    const sent = new Map<number, Buffer>(); // offset -> data, acknowledged or not

    for (let round = 0; round < ROUNDS; round++) {
      agent ??= await startAgent(agentArgs);
      if (!ps) ps = await startProcessServer(psArgs, port);
      const client = await TestNbdClient.connect({ port: agent.port }, 'd');
      const victim = rand() < 0.5 ? 'agent' : 'ps';
      const killAfter = 50 + Math.floor(rand() * 400);
      const killer = new Promise<void>((resolve) =>
        setTimeout(() => {
          const doomed = victim === 'agent' ? agent!.kill() : killChild(ps!.child);
          void doomed.then(resolve);
        }, killAfter),
      );
      let agentDied = false;
      const writer = (async () => {
        for (let i = 0; i < 400 && !agentDied; i++) {
          const w = {
            offset: slots[nextSlot++]! * SLOT,
            data: randomBytes(4096 * (1 + Math.floor(rand() * 4))),
          };
          sent.set(w.offset, w.data);
          try {
            await client.write(w.offset, w.data);
            acked.push(w);
            if (i % 10 === 9) await client.flush();
          } catch {
            agentDied = true;
          }
        }
      })();
      await killer;
      if (victim === 'agent') {
        agentDied = true;
        agent = undefined;
      } else ps = undefined;
      await writer;
      client.destroy();
    }

    agent ??= await startAgent(agentArgs);
    ps ??= await startProcessServer(psArgs, port);
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const cacheDir = join(dir, 'ps', 'machines', machineId, 'cache');
    const cached = async () => {
      const log = await ChangeLog.open(cacheDir, { maxBytes: 0, segmentBytes: 0, readOnly: true });
      const out: { offset: number; data: Buffer }[] = [];
      for await (const r of log.records()) {
        if (r.type === RecordType.Write) out.push({ offset: r.offset, data: Buffer.from(r.payload) });
      }
      return out;
    };
    // Everything the agent logged reaches the cache: replaying the cache onto an empty image
    // gives the agent's disk (quiet now, read through the page cache).
    const deadline = Date.now() + 60_000;
    let got = await cached();
    const replay = () => {
      const image = Buffer.alloc(DISK);
      for (const w of got) w.data.copy(image, w.offset);
      return image;
    };
    while (!replay().equals(readFileSync(disk))) {
      assert.ok(
        Date.now() < deadline,
        `the cache (${got.length} writes) never caught up with the agent's disk`,
      );
      await new Promise((r) => setTimeout(r, 200));
      got = await cached();
    }
    // Every acknowledged write once, in the order acknowledged; anything else was sent, not acknowledged.
    const ackedOffsets = new Set(acked.map((w) => w.offset));
    assert.deepEqual(
      got.filter((w) => ackedOffsets.has(w.offset)).map((w) => w.offset),
      acked.map((w) => w.offset),
    );
    for (const w of got) {
      assert.ok(w.data.equals(sent.get(w.offset)!), `cached write at ${w.offset} differs from what was sent`);
    }
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
