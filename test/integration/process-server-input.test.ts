// Bad input to the process server closes that stream with a named reason, keeps
// nothing of the offending frame, and leaves the server serving other agents.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { RecordType } from '../../src/changelog/record.js';
import { initCa, issueCert, loadTlsMaterial, type TlsMaterial } from '../../src/pki/ca.js';
import { ProcessServer } from '../../src/process-server/process-server.js';
import {
  decodeAck,
  decodeHello,
  encodeChange,
  encodeHeartbeat,
  encodeHello,
  type Frame,
  FrameType,
} from '../../src/wire/frame.js';
import { connectFrames, type FrameConnection } from '../../src/wire/tls-endpoint.js';
import { scratchDir } from '../support/tmp.js';

const quiet = pino({ level: 'silent' });

function change(seq: number, data = Buffer.alloc(4096, seq)) {
  return encodeChange({
    seq,
    time: 1,
    offset: seq * 4096,
    length: data.length,
    disk: 1,
    kind: 'write',
    flags: 0,
    data,
  });
}

async function frames(conn: FrameConnection): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of conn) out.push(f);
  return out;
}

describe('process server: bad input', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('ps-input');
  let ps: ProcessServer;
  let agent: TlsMaterial;
  const connect = () =>
    connectFrames({
      host: '127.0.0.1',
      port: ps.port,
      material: agent,
      logger: quiet,
      acceptRoles: ['process-server'],
    });
  const hello = (machineId: string) => encodeHello({ resumeFrom: 0, role: 'agent', name: 'a1', machineId });

  before(async () => {
    const ca = join(dir, 'ca');
    await initCa(ca);
    await issueCert(ca, { role: 'agent', name: 'a1' });
    await issueCert(ca, { role: 'process-server', name: 'ps1' });
    agent = await loadTlsMaterial(ca, { role: 'agent', name: 'a1' });
    ps = await ProcessServer.start({
      dataDir: join(dir, 'ps'),
      host: '127.0.0.1',
      port: 0,
      material: await loadTlsMaterial(ca, { role: 'process-server', name: 'ps1' }),
      name: 'ps1',
      logger: quiet,
    });
  });
  after(async () => {
    await ps.close();
    cleanup();
  });

  test('a change before hello closes the stream, naming the problem', async () => {
    const c = await connect();
    await c.send(FrameType.Change, change(1));
    assert.deepEqual(await frames(c), []);
    assert.equal(
      c.closeReason,
      'peer closed the connection: expected hello first, got frame type 2 (error code 1)',
    );
  });

  test('an invalid machine id is refused', async () => {
    const c = await connect();
    await c.send(FrameType.Hello, hello('../etc'));
    await frames(c);
    assert.equal(
      c.closeReason,
      "peer closed the connection: hello machine id '../etc' is not valid (error code 1)",
    );
  });

  test('a repeated sequence closes the stream and keeps nothing of it; a good stream goes on', async () => {
    const c = await connect();
    await c.send(FrameType.Hello, hello('m1'));
    const it = c[Symbol.asyncIterator]();
    const theirs = await it.next();
    assert.equal(decodeHello((theirs.value as Frame).payload).resumeFrom, 0);
    await c.send(FrameType.Change, change(1));
    await c.send(FrameType.Change, change(2));
    let acked = 0;
    while (acked < 2) {
      const f = (await it.next()).value as Frame;
      if (f.type === FrameType.Ack) acked = decodeAck(f.payload).seq;
    }
    await c.send(FrameType.Change, change(2, Buffer.alloc(4096, 0xee)));
    while (!(await it.next()).done);
    assert.equal(
      c.closeReason,
      "peer closed the connection: seq 2 repeats or goes back (this cache's next seq is 3) (error code 1)",
    );
    // The server still serves: a new stream resumes at 3, and the cache holds 1 and 2 as first sent.
    const d = await connect();
    await d.send(FrameType.Hello, hello('m1'));
    const h = await d[Symbol.asyncIterator]().next();
    assert.equal(decodeHello((h.value as Frame).payload).resumeFrom, 3);
    d.close();
    const cached = [];
    for await (const r of (await ps.cache('m1')).records()) cached.push(r);
    assert.deepEqual(
      cached.map((r) => [r.seq, r.type, r.payload[0]]),
      [
        [1, RecordType.Write, 1],
        [2, RecordType.Write, 2],
      ],
    );
  });

  test('a malformed heartbeat closes the stream, naming it; a position heartbeat is kept for the machine', async () => {
    const c = await connect();
    await c.send(FrameType.Hello, hello('m2'));
    await c.send(FrameType.Heartbeat, encodeHeartbeat({ time: 1234, throughSeq: 0 }));
    await c.send(FrameType.Heartbeat, Buffer.alloc(12));
    await frames(c);
    assert.equal(
      c.closeReason,
      'peer closed the connection: heartbeat payload is 12 bytes: too short for its throughSeq (error code 1)',
    );
    const m2 = ps.status().find((m) => m.machineId === 'm2');
    assert.equal(m2?.lastHeartbeat?.time, 1234);
    assert.equal(m2?.lastHeartbeat?.throughSeq, 0);
  });
});
