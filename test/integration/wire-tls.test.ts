// Frames over mutual TLS 1.3 between real endpoints, with certificates made by `rebound ca`
// run as a child process. A peer that fails a check, or sends a bad frame, loses its connection
// with a logged, named reason; other connections go on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { loadTlsMaterial, type TlsMaterial } from '../../src/pki/ca.js';
import {
  decodeChange,
  decodeHello,
  encodeAck,
  encodeChange,
  encodeFrame,
  encodeHeartbeat,
  encodeHello,
  encodeMarker,
  type Frame,
  FrameType,
} from '../../src/wire/frame.js';
import {
  connectFrames,
  type FrameConnection,
  type FrameServer,
  listenFrames,
} from '../../src/wire/tls-endpoint.js';
import { CLI } from '../support/agent-process.js';
import { scratchDir } from '../support/tmp.js';

const run = promisify(execFile);
const rebound = (...args: string[]) => run(process.execPath, [CLI, ...args]);

interface LogLine {
  level: number;
  msg: string;
  reason?: string;
  conn?: number;
  [k: string]: unknown;
}

function captureLogger() {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads every frame until the connection ends. */
async function drain(conn: FrameConnection): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of conn) out.push(f);
  return out;
}

async function next(conn: FrameConnection): Promise<Frame> {
  const r = await conn[Symbol.asyncIterator]().next();
  assert.equal(r.done, false, `connection ended: ${conn.closeReason}`);
  return r.value as Frame;
}

describe('wire protocol over mutual TLS 1.3', { timeout: 120_000 }, () => {
  const { dir, cleanup } = scratchDir('wire');
  const ca1 = join(dir, 'ca1');
  const ca2 = join(dir, 'ca2');
  const server = captureLogger();
  const client = captureLogger();
  let ps: TlsMaterial;
  let agent: TlsMaterial;
  let mt: TlsMaterial;
  let foreignAgent: TlsMaterial;
  let srv: FrameServer;
  /** Frames the server received, per connection id: what it would have applied. */
  const received = new Map<number, Frame[]>();

  before(async () => {
    await rebound('ca', 'init', '--dir', ca1);
    await rebound('ca', 'init', '--dir', ca2);
    await rebound('ca', 'issue', '--dir', ca1, '--role', 'process-server', '--name', 'ps1');
    await rebound('ca', 'issue', '--dir', ca1, '--role', 'agent', '--name', 'a1', '--out', join(dir, 'a1'));
    await rebound('ca', 'issue', '--dir', ca1, '--role', 'master-target', '--name', 'mt1');
    await rebound('ca', 'issue', '--dir', ca2, '--role', 'agent', '--name', 'a1');
    ps = await loadTlsMaterial(ca1, { role: 'process-server', name: 'ps1' });
    agent = await loadTlsMaterial(join(dir, 'a1'), { role: 'agent', name: 'a1' });
    mt = await loadTlsMaterial(ca1, { role: 'master-target', name: 'mt1' });
    foreignAgent = await loadTlsMaterial(ca2, { role: 'agent', name: 'a1' });
    // A process server: accepts agents only, echoes every frame back.
    srv = await listenFrames({
      material: ps,
      logger: server.logger,
      host: '127.0.0.1',
      port: 0,
      acceptRoles: ['agent'],
      onConnection: async (conn) => {
        const got: Frame[] = [];
        received.set(conn.id, got);
        for await (const f of conn) {
          got.push(f);
          await conn.send(f.type, f.payload);
        }
      },
    });
  });

  after(async () => {
    await srv?.close();
    cleanup();
  });

  const connectAgent = (material = agent) =>
    connectFrames({
      material,
      logger: client.logger,
      host: '127.0.0.1',
      port: srv.address.port,
      acceptRoles: ['process-server'],
    });

  const serverReasons = () =>
    server.lines.filter((l) => l.msg === 'closing wire connection').map((l) => l.reason);

  test('rebound ca: a CLI error names the problem and exits 1', async () => {
    await assert.rejects(rebound('ca', 'init', '--dir', ca1), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 1);
      assert.match(
        e.stderr,
        /^rebound: error: .*ca1 already holds a CA \(.*ca\.key exists\); refusing to overwrite it\n$/,
      );
      return true;
    });
    await assert.rejects(
      rebound('ca', 'issue', '--dir', ca1, '--role', 'boss', '--name', 'x'),
      (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 1);
        assert.match(
          e.stderr,
          /^rebound: error: role 'boss' is not valid: use one of agent, process-server, master-target, configuration-server\n$/,
        );
        return true;
      },
    );
  });

  test('frames of every type round-trip, large ones too, with backpressure', async () => {
    const conn = await connectAgent();
    assert.deepEqual(conn.peer, { role: 'process-server', name: 'ps1' });
    assert.equal(conn.socket.getProtocol(), 'TLSv1.3');
    const big = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    const sent: [FrameType, Buffer][] = [
      [FrameType.Hello, encodeHello({ role: 'agent', name: 'a1', machineId: 'm1', resumeFrom: 1 })],
      [FrameType.Heartbeat, encodeHeartbeat({ time: Date.now() })],
      [FrameType.Marker, encodeMarker({ seq: 3, kind: 'flush', time: 1, tag: '' })],
      [FrameType.Ack, encodeAck({ seq: 3 })],
    ];
    for (let seq = 4; seq < 8; seq++) {
      sent.push([
        FrameType.Change,
        encodeChange({
          seq,
          disk: 1,
          kind: 'write',
          flags: 0,
          time: 2,
          offset: seq << 24,
          length: big.length,
          data: big,
        }),
      ]);
    }
    // All sends in flight at once: each waits for the socket to drain.
    const sending = Promise.all(sent.map(([type, payload]) => conn.send(type, payload)));
    const got: Frame[] = [];
    for await (const f of conn) {
      got.push(f);
      if (got.length === sent.length) break;
    }
    await sending;
    assert.deepEqual(
      got.map((f) => f.type),
      sent.map(([t]) => t),
    );
    for (const [i, f] of got.entries()) assert.ok(f.payload.equals(sent[i][1]), `frame ${i} intact`);
    assert.equal(decodeHello(got[0].payload).machineId, 'm1');
    assert.equal(decodeChange(got[7].payload).offset, 7 << 24);
    conn.close();
    assert.equal(await conn.closed, undefined);
  });

  test('a receiver that falls behind stops reading, and the sender waits (bounded memory)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const got: number[] = [];
    const srv2 = await listenFrames({
      material: ps,
      logger: server.logger,
      host: '127.0.0.1',
      port: 0,
      acceptRoles: ['agent'],
      maxQueuedBytes: 1024 * 1024,
      onConnection: async (conn) => {
        await gate;
        for await (const f of conn) got.push(decodeChange(f.payload).seq);
      },
    });
    const conn = await connectFrames({
      material: agent,
      logger: client.logger,
      host: '127.0.0.1',
      port: srv2.address.port,
      acceptRoles: ['process-server'],
    });
    const data = Buffer.alloc(1024 * 1024, 7);
    const total = 64;
    let sent = 0;
    const sending = (async () => {
      for (let seq = 1; seq <= total; seq++) {
        const change = {
          seq,
          disk: 0,
          kind: 'write' as const,
          flags: 0,
          time: 0,
          offset: 0,
          length: data.length,
          data,
        };
        await conn.send(FrameType.Change, encodeChange(change));
        sent = seq;
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(sent < total / 2, `the sender is held back (${sent} of ${total} MiB sent)`);
    assert.equal(got.length, 0);
    release();
    await sending;
    await waitFor('every change to arrive', () => (got.length === total ? true : undefined), 20_000);
    assert.deepEqual(
      got,
      Array.from({ length: total }, (_, i) => i + 1),
    );
    conn.close();
    await srv2.close();
  });

  test('a client certificate from another CA is refused with a named reason', async () => {
    // The client trusts the server's CA, but its own certificate comes from another one.
    const conn = await connectAgent({ ...foreignAgent, ca: ps.ca });
    await conn.send(FrameType.Ack, encodeAck({ seq: 1 })).catch(() => undefined);
    assert.deepEqual(await drain(conn), [], 'nothing echoed');
    const reason = await waitFor('the server to log the rejection', () =>
      serverReasons().find((r) => r?.includes('not issued by this deployment')),
    );
    assert.equal(
      reason,
      "peer certificate is not issued by this deployment's CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
    );
  });

  test('a client of the wrong role is refused, and told why', async () => {
    const conn = await connectFrames({
      material: mt,
      logger: client.logger,
      host: '127.0.0.1',
      port: srv.address.port,
      acceptRoles: ['process-server'],
    });
    await conn.send(FrameType.Ack, encodeAck({ seq: 1 })).catch(() => undefined);
    assert.deepEqual(await drain(conn), []);
    const expected = "peer role 'master-target' (mt1) is not accepted here (accepted: agent)";
    await waitFor('the server to log the rejection', () => serverReasons().find((r) => r === expected));
    assert.equal(conn.closeReason, `peer closed the connection: ${expected} (error code 2)`);
  });

  test('a client without a certificate is refused with a named reason', async () => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: srv.address.port,
      ca: ps.ca,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
    });
    const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    await waitFor('the server to log the rejection', () =>
      serverReasons().find((r) => r === 'peer sent no certificate'),
    );
  });

  test('a client that offers only TLS 1.2 is refused with a named reason', async () => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: srv.address.port,
      ...agent,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
    });
    await once(socket, 'error');
    await waitFor('the server to log the rejection', () =>
      serverReasons().find((r) => r?.startsWith('peer does not speak TLS 1.3')),
    );
  });

  test('a frame with a bad CRC closes that connection only, and is not applied', async () => {
    const bad = await connectAgent();
    const good = await connectAgent();
    const ack1 = encodeFrame(FrameType.Ack, encodeAck({ seq: 1 }));
    await bad.send(FrameType.Ack, encodeAck({ seq: 1 }));
    assert.equal((await next(bad)).type, FrameType.Ack);
    // Raw bytes through the TLS socket: a valid frame with one bit of its CRC flipped.
    const corrupt = Buffer.from(encodeFrame(FrameType.Ack, encodeAck({ seq: 2 })));
    corrupt[12] ^= 0x10;
    bad.socket.write(corrupt);
    assert.deepEqual(await drain(bad), []);
    const reason = 'frame CRC mismatch (type 4, length 8)';
    assert.equal(bad.closeReason, `peer closed the connection: ${reason} (error code 1)`);
    const line = await waitFor('the server to log the CRC mismatch', () =>
      server.lines.find((l) => l.msg === 'closing wire connection' && l.reason === reason),
    );
    assert.equal(line.level, 40);
    assert.equal(line.peer, 'agent/a1');
    // The server took the good frame and nothing after it.
    const got = received.get(line.conn as number)!;
    assert.equal(got.length, 1);
    assert.ok(encodeFrame(got[0].type, got[0].payload).equals(ack1));
    // The other connection is unaffected.
    await good.send(FrameType.Heartbeat, encodeHeartbeat({ time: 5 }));
    assert.equal((await next(good)).type, FrameType.Heartbeat);
    // And new connections are still accepted.
    const third = await connectAgent();
    await third.send(FrameType.Ack, encodeAck({ seq: 9 }));
    assert.equal((await next(third)).type, FrameType.Ack);
    good.close();
    third.close();
  });

  test('a malformed frame (bad magic) closes the connection with a named reason', async () => {
    const conn = await connectAgent();
    conn.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const frames = await drain(conn);
    assert.deepEqual(frames, []);
    assert.equal(conn.closeReason, 'peer closed the connection: bad frame magic 0x47455420 (error code 1)');
    await waitFor('the server to log it', () =>
      serverReasons().find((r) => r === 'bad frame magic 0x47455420'),
    );
  });

  test('the client checks the server: its CA and its role', async () => {
    await assert.rejects(
      connectAgent({ ...agent, ca: foreignAgent.ca }),
      /cannot connect to 127\.0\.0\.1:\d+: peer certificate is not issued by this deployment's CA \(SELF_SIGNED_CERT_IN_CHAIN\)/,
    );
    await assert.rejects(
      connectFrames({
        material: agent,
        logger: client.logger,
        host: '127.0.0.1',
        port: srv.address.port,
        acceptRoles: ['master-target'],
      }),
      /server 127\.0\.0\.1:\d+: peer role 'process-server' \(ps1\) is not accepted here \(accepted: master-target\)/,
    );
    // The server is told why in an error frame; it logs the close.
    await waitFor('the server to log the client’s reason', () =>
      server.lines.find((l) => typeof l.reason === 'string' && l.reason.includes('accepted: master-target')),
    );
  });

  test('a server shutting down tells its clients why', async () => {
    const srv2 = await listenFrames({
      material: ps,
      logger: server.logger,
      host: '127.0.0.1',
      port: 0,
      acceptRoles: ['agent'],
      onConnection: () => undefined,
    });
    const conn = await connectFrames({
      material: agent,
      logger: client.logger,
      host: '127.0.0.1',
      port: srv2.address.port,
      acceptRoles: ['process-server'],
    });
    await waitFor('the server to see the connection', () => (srv2.connections.size ? true : undefined));
    await srv2.close();
    assert.deepEqual(await drain(conn), []);
    assert.equal(conn.closeReason, 'peer closed the connection: server shutting down (error code 3)');
  });
});
