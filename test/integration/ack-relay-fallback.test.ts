// An agent in sync mode against a process server that cannot relay master-target acks (an
// older version refuses frame type 10): the agent stops asking, keeps shipping, and runs
// degraded with that reason instead of reconnecting in a loop.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { AckGate } from '../../src/agent/ack-gate.js';
import { Agent } from '../../src/agent/agent.js';
import { Shipper } from '../../src/agent/shipper.js';
import { initCa, issueCert, loadTlsMaterial } from '../../src/pki/ca.js';
import { waitFor } from '../../src/util/exec.js';
import {
  decodeHello,
  decodeMarker,
  encodeAck,
  encodeHello,
  FrameType,
  WireErrorCode,
} from '../../src/wire/frame.js';
import { type FrameServer, listenFrames } from '../../src/wire/tls-endpoint.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

describe('sync mode against a process server that does not relay', { timeout: 60_000 }, () => {
  const { dir, cleanup } = scratchDir('relay-fallback');
  let server: FrameServer | undefined;
  let agent: Agent | undefined;
  let shipper: Shipper | undefined;
  after(async () => {
    await shipper?.stop();
    await agent?.close();
    await server?.close();
    cleanup();
  });

  test('the agent stops asking, ships on, and says why it is degraded', async () => {
    const ca = join(dir, 'ca');
    const tls = join(dir, 'tls');
    await initCa(ca);
    await issueCert(ca, { role: 'agent', name: 'a1', outDir: tls });
    await issueCert(ca, { role: 'process-server', name: 'old-ps', outDir: tls });
    const logger = pino({ level: 'silent' });
    let connections = 0;
    let requests = 0;
    const markersSeen: number[] = [];
    // Speaks like a process server of the previous version: frame type 10 is unknown to it.
    server = await listenFrames({
      host: '127.0.0.1',
      port: 0,
      material: await loadTlsMaterial(tls, { role: 'process-server', name: 'old-ps' }),
      logger,
      acceptRoles: ['agent'],
      onConnection: async (conn) => {
        let next = 1;
        for await (const f of conn) {
          if (f.type === FrameType.Hello) {
            const h = decodeHello(f.payload);
            await conn.send(
              FrameType.Hello,
              encodeHello({
                resumeFrom: next,
                role: 'process-server',
                name: 'old-ps',
                machineId: h.machineId,
              }),
            );
          } else if (f.type === FrameType.Disks) {
            connections++; // a stream (the agent's resync hash sessions open connections too)
          } else if (f.type === FrameType.Replicated) {
            requests++;
            conn.close('unknown frame type 10', WireErrorCode.Protocol);
            return;
          } else if (f.type === FrameType.Marker) {
            const m = decodeMarker(f.payload);
            markersSeen.push(m.seq);
            next = m.seq + 1;
            await conn.send(FrameType.Ack, encodeAck({ seq: m.seq }));
          } else if (f.type === FrameType.Change) {
            next++;
          }
        }
      },
    });
    agent = await Agent.open({
      dataDir: join(dir, 'agent'),
      disks: [{ name: 'd', path: sparseImage(join(dir, 'd.img'), 1024 * 1024) }],
      logger,
    });
    const gate = new AckGate({ mode: 'sync', timeoutMs: 30_000, logger });
    agent.setAckGate(gate);
    shipper = new Shipper({
      agent,
      host: '127.0.0.1',
      port: server.address.port,
      material: await loadTlsMaterial(tls, { role: 'agent', name: 'a1' }),
      name: 'a1',
      logger,
      ackGate: gate,
    });
    shipper.start();
    await waitFor('the refusal and a reconnect', () => requests === 1 && connections >= 2, 20_000);
    const s = gate.status();
    assert.equal(s.state, 'degraded');
    assert.equal(
      s.reason,
      'the process server does not relay master-target acknowledgements (an older version): sync mode cannot be honoured',
    );
    // Flushes do not wait the timeout, and the log still ships.
    const t0 = Date.now();
    const seq = await agent.flush();
    assert.ok(Date.now() - t0 < 5000);
    await waitFor('the flush marker at the process server', () => markersSeen.includes(seq!), 20_000);
    assert.equal(requests, 1, 'the agent asked again');
    assert.equal(gate.status().remoteDurableThrough, 0, 'process-server acks are not master-target acks');
  });
});
