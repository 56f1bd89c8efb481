// The log streamer's own accounting while frames are in flight: the window and the backlog
// count every record it sent and nobody acknowledged, at its full size, also when the record
// was large enough to be framed in place and its payload moved to a compression worker (the
// streamer once read the size after that move and counted 0 bytes). A receiver over real
// mutual TLS takes the frames and never acknowledges.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { ChangeLog } from '../../src/changelog/change-log.js';
import { HEADER_SIZE, RecordType } from '../../src/changelog/record.js';
import { loadTlsMaterial } from '../../src/pki/ca.js';
import { compressInWorker } from '../../src/wire/compression-pool.js';
import { encodeHello, FRAME_FLAG_LZ4, FrameType } from '../../src/wire/frame.js';
import { LogStreamer } from '../../src/wire/log-streamer.js';
import { connectFrames, type FrameServer, listenFrames } from '../../src/wire/tls-endpoint.js';
import { scratchDir } from '../support/tmp.js';
import { issueTrioCerts, until } from '../support/trio.js';

const MiB = 1024 * 1024;
const RECORDS = 4;

/** 1 MiB that lz4 takes to well under half: records this large are read whole and framed in place. */
function compressible(seed: number): Buffer {
  const b = Buffer.alloc(MiB);
  for (let at = 0; at < b.length; at += 64) b.write(`record ${seed} block ${at} `, at);
  return b;
}

describe('log streamer accounting', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('streamer-window');
  const logger = pino({ level: 'silent' });
  let server: FrameServer | undefined;
  let streamer: LogStreamer | undefined;
  let log: ChangeLog | undefined;
  after(async () => {
    await streamer?.stop();
    await server?.close();
    await log?.close();
    cleanup();
  });

  test('unacknowledged compressed records count at their full size in the window and the backlog', async () => {
    const tls = await issueTrioCerts(dir);
    log = await ChangeLog.open(join(dir, 'log'), { maxBytes: 64 * MiB, segmentBytes: 64 * MiB, logger });
    const written: Promise<void>[] = [];
    for (let i = 0; i < RECORDS; i++) {
      const payload = compressible(i);
      const rec = {
        type: RecordType.Write,
        flags: 0,
        disk: 1,
        time: Date.now(),
        offset: i * MiB,
        length: MiB,
        payload,
      };
      written.push(log.append(rec).written);
    }
    await Promise.all(written);
    await log.sync();

    const received: { type: FrameType; flags: number; bytes: number }[] = [];
    server = await listenFrames({
      host: '127.0.0.1',
      port: 0,
      material: await loadTlsMaterial(tls, { role: 'process-server', name: 'ps1' }),
      logger,
      acceptRoles: ['agent'],
      onConnection: async (conn) => {
        await conn.send(FrameType.Hello, encodeHello({ role: 'process-server', name: 'ps1', resumeFrom: 0 }));
        for await (const f of conn) {
          received.push({ type: f.type, flags: f.flags, bytes: f.payload.length });
        }
      },
    });
    const agentMaterial = await loadTlsMaterial(tls, { role: 'agent', name: 'a1' });
    const port = server.address.port;
    streamer = new LogStreamer({
      what: 'shipper',
      log,
      logger,
      connect: () =>
        connectFrames({
          host: '127.0.0.1',
          port,
          material: agentMaterial,
          logger,
          acceptRoles: ['process-server'],
        }),
      hello: { role: 'agent', name: 'a1', machineId: 'm1', resumeFrom: 0 },
      resume: async (resumeFrom) => (resumeFrom === 0 ? 1 : resumeFrom),
      onAck: async () => undefined,
      compress: 'auto',
    });
    // Workers up first: a task for a worker that is not ready yet waits in piscina's queue,
    // and its payloads move only then, after the streamer has counted them (which would
    // hide what this test is about).
    await compressInWorker([Buffer.alloc(64 * 1024)], 0.9);
    streamer.start();

    const changes = () => received.filter((f) => f.type === FrameType.Change);
    await until('every change frame at the receiver', () => changes().length === RECORDS, 30_000);
    // Some crossed compressed (the decoder hands them on decompressed, flag kept), so their
    // payloads did go to a worker and back; the pipeline sends the rest as they are once
    // 4 MiB wait for compression.
    const compressed = changes().filter((f) => (f.flags & FRAME_FLAG_LZ4) !== 0).length;
    assert.ok(compressed >= 1, `${compressed} of ${RECORDS} change frames crossed compressed`);
    const s = streamer.status();
    assert.equal(s.sentThrough, RECORDS);
    assert.equal(s.ackedThrough, 0);
    assert.equal(s.unackedBytes, RECORDS * MiB);
    assert.equal(s.backlogBytes, RECORDS * (HEADER_SIZE + MiB));
  });
});
