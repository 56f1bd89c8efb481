// A WRITE without FUA is acknowledged once its record is written to the log, before its
// disk write (small ones by the fast path, larger ones by the queued path). Never before
// the log write: a reply for a record that is not in the kernel yet dies with the process
// (test/integration/crash-loop.test.ts shows it). What the client was promised must hold:
// a READ after the reply sees the write, a FLUSH after it covers it, and the log holds
// the writes in the order of their replies.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { RecordType } from '../../src/changelog/record.js';
import type { NbdExport } from '../../src/nbd/export.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const { dir, cleanup } = scratchDir('early-ack');
after(cleanup);

async function openAgent(name: string): Promise<{ agent: Agent; exp: NbdExport }> {
  const agent = await Agent.open({
    dataDir: join(dir, `${name}-agent`),
    disks: [{ name: 'disk0', path: sparseImage(join(dir, `${name}.img`), 64 * MiB) }],
    logger: pino({ level: 'silent' }),
  });
  return { agent, exp: agent.exports()[0] };
}

test('a large write acknowledged early: a read and a flush sent after the reply see it', async () => {
  const { agent, exp } = await openAgent('large');
  const data = randomBytes(4 * MiB);
  let settled = false;
  let readAfterAck: Promise<Buffer> | undefined;
  let flushAfterAck: Promise<void> | undefined;
  let settledBeforeFlush: boolean | undefined;
  const write = exp
    .write(8 * MiB, data, false, () => {
      assert.equal(settled, false, 'the reply goes before the write ends');
      assert.equal(agent.log.lastWritten, 1, 'and after its record is written to the log');
      readAfterAck = exp.read(8 * MiB, data.length);
      flushAfterAck = exp.flush().then(() => {
        settledBeforeFlush = settled;
      });
    })
    .then(() => {
      settled = true;
    });
  await write;
  assert.ok(readAfterAck && flushAfterAck, 'the write was acknowledged early');
  assert.ok((await readAfterAck).equals(data), 'the read sent after the reply returns the data');
  await flushAfterAck;
  assert.equal(settledBeforeFlush, true, 'the flush waited for the write');
  const records: { type: RecordType; offset: number }[] = [];
  for await (const r of agent.log.records()) records.push({ type: r.type, offset: r.offset });
  assert.deepEqual(
    records.map((r) => r.type),
    [RecordType.Write, RecordType.Flush],
    'the write is before the marker of the flush sent after its reply',
  );
  await agent.close();
});

test('small writes by the fast path are in the log in reply order and read back at once', async () => {
  const { agent, exp } = await openAgent('small');
  // The first write opens the log's first segment; the fast path needs one open.
  await exp.write(0, Buffer.alloc(4 * KiB, 1), false);
  await new Promise((r) => setImmediate(r));
  const blocks = Array.from({ length: 64 }, () => randomBytes(4 * KiB));
  const replies: number[] = [];
  for (let i = 0; i < blocks.length; i++) {
    const offset = (1 + ((i * 37) % 1000)) * 4 * KiB;
    const done = exp.writeNow!(offset, blocks[i], () => {
      assert.equal(agent.log.lastWritten, i + 2, 'the reply goes after the record is written');
      replies.push(offset);
    });
    assert.equal(done, true, `write ${i} took the fast path`);
    assert.ok((await exp.read(offset, 4 * KiB)).equals(blocks[i]));
  }
  await exp.flush();
  const logged: number[] = [];
  for await (const r of agent.log.records()) if (r.type === RecordType.Write) logged.push(r.offset);
  assert.deepEqual(logged.slice(1), replies, 'log order is reply order');
  await agent.close();
});
