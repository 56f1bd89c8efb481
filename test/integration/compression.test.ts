// lz4 on the process server -> master target hop, with real processes and mutual TLS:
// compressible and random data replicated with `--compress auto` arrive byte for byte,
// and the bytes that crossed that hop (counted by a TCP relay in between) show that the
// compressible part travelled compressed. A frame whose lz4 payload claims more than the
// maximum closes only its own connection, with a named reason.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { pino } from 'pino';
import type { MasterTarget } from '../../src/master-target/master-target.js';
import type { Replica } from '../../src/master-target/replica.js';
import { loadTlsMaterial } from '../../src/pki/ca.js';
import { decodeHello, encodeHello, FRAME_FLAG_LZ4, type Frame, FrameType } from '../../src/wire/frame.js';
import { connectFrames } from '../../src/wire/tls-endpoint.js';
import { type RunningAgent, runCli, startAgent } from '../support/agent-process.js';
import { killChild, type RunningComponent, startProcessServer } from '../support/component-process.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';
import { issueTrioCerts, startMasterTarget, waitProtected } from '../support/trio.js';

const MiB = 1024 * 1024;
const DISK = 32 * MiB;
const TEXT_BYTES = 16 * MiB;
const RANDOM_BYTES = 2 * MiB;
const WRITE = 128 * 1024;

/** Text-like data (lz4 takes it to about a third). */
function text(bytes: number, seed: number): Buffer {
  const words = ['replica ', 'journal ', 'bookmark ', 'segment ', 'forward ', 'cache ', 'agent ', 'disk '];
  const b = Buffer.alloc(bytes);
  let x = seed;
  for (let at = 0; at < bytes; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    at += b.write(words[(x >>> 8) % words.length]!, at);
  }
  return b;
}

/** A TCP relay to `port` that counts the bytes flowing towards it. */
async function countingRelay(port: number): Promise<{ server: Server; port: number; bytes: () => number }> {
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(port, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    down.pipe(up);
    up.pipe(down);
  });
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0, bytes: () => bytes };
}

describe('lz4 between the process server and the master target', { timeout: 180_000 }, () => {
  const { dir, cleanup } = scratchDir('compression');
  let agent: RunningAgent | undefined;
  let ps: RunningComponent | undefined;
  let mt: MasterTarget | undefined;
  let relay: Server | undefined;
  after(async () => {
    await agent?.kill();
    await killChild(ps?.child);
    relay?.close();
    await mt?.close();
    cleanup();
  });

  test('replicated data arrives byte-exact; compressible data crossed the hop compressed', async () => {
    const tls = await issueTrioCerts(dir);
    mt = await startMasterTarget(tls, {
      dataDir: join(dir, 'mt'),
      retentionDir: join(dir, 'retention'),
      logger: pino({ level: 'silent' }),
    });
    const hop = await countingRelay(mt.port);
    relay = hop.server;
    const psArgs = ['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'];
    ps = await startProcessServer([
      ...psArgs,
      '--master-target',
      `127.0.0.1:${hop.port}`,
      '--compress',
      'auto',
    ]);
    const dataDir = join(dir, 'agent');
    const disk = sparseImage(join(dir, 'disk.img'), DISK);
    agent = await startAgent([
      '--data-dir',
      dataDir,
      '--disk',
      `d=${disk}`,
      '--process-server',
      `127.0.0.1:${ps.port}`,
      '--tls-dir',
      tls,
      '--name',
      'a1',
    ]);
    await waitProtected(dataDir);
    const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
    const client = await TestNbdClient.connect({ port: agent.port }, 'd');
    // Text first, then random data after it, each write at its own offset.
    let offset = 0;
    for (let i = 0; offset < TEXT_BYTES; i++, offset += WRITE) await client.write(offset, text(WRITE, i + 1));
    // 1 MiB writes: each record is read from the cache into a buffer of its own, framed in
    // place and moved to a worker and back (util/headroom.ts).
    for (; offset < TEXT_BYTES + RANDOM_BYTES; offset += MiB) await client.write(offset, randomBytes(MiB));
    await client.flush();
    const b = await runCli(['agent', 'bookmark', '--data-dir', dataDir, '--tag', 'done']);
    assert.equal(b.code, 0, b.stderr);

    const deadline = Date.now() + 60_000;
    let replica: Replica | undefined;
    for (;;) {
      replica = mt.replica(machineId);
      if (replica?.recoveryPoints().some((p) => p.tag === 'done')) break;
      assert.ok(Date.now() < deadline, 'the bookmark never reached the master target');
      await new Promise((r) => setTimeout(r, 100));
    }
    const view = replica.openView('latest');
    try {
      const latest = await view.read(1, 0, DISK);
      assert.ok(latest.equals(readFileSync(disk)), 'the replica differs from the source');
    } finally {
      view.close();
    }
    // The forwarder never lost its stream on the way (a failed read or send closes it).
    assert.doesNotMatch(ps.stderr(), /forwarder: connection lost/);
    // Uncompressed, the hop would carry every data byte (plus frame headers and TLS).
    const wire = hop.bytes();
    const data = TEXT_BYTES + RANDOM_BYTES;
    assert.ok(wire > RANDOM_BYTES, `the relay counted only ${wire} bytes`);
    assert.ok(
      wire < 0.6 * data,
      `${wire} bytes crossed the hop for ${data} bytes of data: the text did not travel compressed`,
    );
    await client.disconnect();
    assert.equal(await agent.stop(), 0);
    agent = undefined;
  });

  test('a frame claiming more than the maximum closes its own connection by name', async () => {
    const bomb = Buffer.alloc(12);
    bomb.writeUInt32LE(0xffffffff, 0);
    const frame = Buffer.alloc(16 + bomb.length);
    frame.writeUInt32BE(0x52425746, 0);
    frame.writeUInt8(1, 4);
    frame.writeUInt8(FrameType.Change, 5);
    frame.writeUInt16BE(FRAME_FLAG_LZ4, 6);
    frame.writeUInt32BE(bomb.length, 8);
    bomb.copy(frame, 16);
    frame.writeUInt32BE(crc32c(bomb, crc32c(frame.subarray(0, 12))), 12);
    const material = await loadTlsMaterial(join(dir, 'tls'), { role: 'process-server', name: 'ps1' });
    const open = () =>
      connectFrames({
        host: '127.0.0.1',
        port: mt!.port,
        material,
        logger: pino({ level: 'silent' }),
        acceptRoles: ['master-target'],
      });
    const c = await open();
    await c.sendRaw(frame);
    for await (const _ of c);
    assert.equal(
      c.closeReason,
      'peer closed the connection: lz4 payload claims 4294967295 uncompressed bytes, ' +
        'more than the maximum 67108864 (type 2, length 12) (error code 1)',
    );
    // The master target goes on: a new connection is answered.
    const d = await open();
    await d.send(
      FrameType.Hello,
      encodeHello({ resumeFrom: 0, role: 'process-server', name: 'ps1', machineId: 'probe' }),
    );
    const h = await d[Symbol.asyncIterator]().next();
    assert.equal(decodeHello((h.value as Frame).payload).role, 'master-target');
    d.close();
  });

  test('an unknown --compress mode is refused by name', async () => {
    const r = await runCli([
      'process-server',
      'start',
      '--data-dir',
      join(dir, 'ps-bad'),
      '--tls-dir',
      join(dir, 'tls'),
      '--name',
      'ps1',
      '--compress',
      'fast',
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--compress 'fast' is not one of auto, off/);
  });
});
