// A flipped byte in the process server's cache, at service level: changes are cached
// while no master target is configured (so none is forwarded), the process server is
// stopped, one byte of a record acknowledged to the agent is flipped, and it restarts
// forwarding to a master target. The corruption is named (file, offset, seq) in its log,
// its status and the forwarder's lastError, and told to the master target; everything
// before the bad record is forwarded and exact, the bad record and what follows are
// never forwarded or applied (the replica needs a resync; nothing is silently skipped).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { HEADER_SIZE, RecordType } from '../../src/changelog/record.js';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import type { ProcessServer } from '../../src/process-server/process-server.js';
import type { RunningAgent } from '../support/agent-process.js';
import { captureLogs } from '../support/log-capture.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import {
  bookmark,
  issueTrioCerts,
  startMasterTarget,
  startProcessServer,
  startShippingAgent,
  until,
} from '../support/trio.js';

const MiB = 1024 * 1024;
const DISK = 16 * MiB;

describe('a flipped byte in the process server cache', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('cache-corruption');
  let agent: RunningAgent | undefined;
  let ps: ProcessServer | undefined;
  let mt: MasterTarget | undefined;
  after(async () => {
    await agent?.kill();
    await ps?.close();
    await mt?.close();
    cleanup();
  });

  test('is named, never forwarded or applied; the replica stops before it', async () => {
    const tls = await issueTrioCerts(dir);
    const psData = join(dir, 'ps');
    ps = await startProcessServer(tls, { dataDir: psData, logger: captureLogs().logger });
    const psPort = ps.port;
    const agentDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    const started = await startShippingAgent(tls, agentDir, disk, psPort);
    agent = started.agent;
    const { machineId } = started;
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    const generation = async (tag: string) => {
      for (let off = 0; off < MiB; off += 128 * 1024) await client.write(off, randomBytes(128 * 1024));
      await client.flush();
      return { seq: await bookmark(agentDir, tag), image: readFileSync(disk) };
    };
    const b0 = await generation('b0');
    const b1 = await generation('b1');
    const b2 = await generation('b2');
    await until('the cache to acknowledge b2', () =>
      ps!.status().some((s) => s.machineId === machineId && s.ackedThrough >= b2.seq),
    );
    await ps.close();
    ps = undefined;

    // Flip a byte in the payload of a write between b1 and b2.
    const cacheDir = join(psData, 'machines', machineId, 'cache');
    const seg = join(cacheDir, 'seg-00000000000000000001.rcl');
    const bytes = readFileSync(seg);
    let victim: { offset: number; seq: number } | undefined;
    for (let off = 0; off < bytes.length; ) {
      const type = bytes.readUInt8(off + 4);
      const seq = Number(bytes.readBigUInt64LE(off + 8));
      if (!victim && type === RecordType.Write && seq > b1.seq && seq < b2.seq) victim = { offset: off, seq };
      off += HEADER_SIZE + bytes.readUInt32LE(off + 36);
    }
    assert.ok(victim, 'a write between b1 and b2 in the cache');
    bytes[victim.offset + HEADER_SIZE + 4000] ^= 0x04;
    writeFileSync(seg, bytes);

    const mtLogs = captureLogs();
    mt = await startMasterTarget(tls, {
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      logger: mtLogs.logger,
    });
    const psLogs = captureLogs();
    ps = await startProcessServer(tls, {
      dataDir: psData,
      logger: psLogs.logger,
      masterTargetPort: mt.port,
      port: psPort,
    });
    const named = `change log corrupt: ${seg} at offset ${victim.offset}: CRC32C mismatch in record seq ${victim.seq}`;
    const message =
      `machine ${machineId} needs a resync: ${named}; records after seq ${victim.seq - 1} in this cache ` +
      'cannot be read and are never forwarded, so its replica stops there';
    const status = () => ps!.status().find((s) => s.machineId === machineId)!;
    assert.deepEqual(status().problems, [{ code: 'cache-corrupt', message }], 'found on open');
    assert.ok(
      psLogs.lines.some((l) => l.level === 50 && l.msg === message),
      'logged as an error',
    );
    // Everything before the bad record reaches the replica; the forwarder then says why
    // it stops, to its status and to the master target.
    await until('the forwarder to stop at the bad record', () => status().forwarder?.lastError === message);
    const replica = mt.replica(machineId)!;
    assert.equal(replica.appliedThrough, victim.seq - 1);
    // The master target logs the reason when the frame reaches it: after the sender noted it.
    await until('the master target to hear why', () =>
      mtLogs.lines.some(
        (l) => l.msg === 'wire connection closed by peer' && String(l.reason).includes(message),
      ),
    );
    for (const b of [b0, b1]) {
      const v = replica.openView(b.seq);
      assert.ok((await v.read(1, 0, DISK)).equals(b.image), `view of ${b.seq}`);
      v.close();
    }
    assert.ok(!replica.recoveryPoints().some((p) => p.seq >= victim.seq));

    // The agent goes on streaming into the cache (acknowledged, kept), but nothing past
    // the bad record is ever applied.
    const b3 = await generation('b3');
    await until('the cache to acknowledge b3', () => status().ackedThrough >= b3.seq);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(replica.appliedThrough, victim.seq - 1);
    assert.equal(status().forwarder?.connected, false);
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });
});
