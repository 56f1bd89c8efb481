// The acknowledgement gate: waits for the remote in process-server/sync mode, degrades to
// async after the timeout (never claiming a remote durability that did not happen), and
// returns to the mode once the remote has caught up.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { AckGate } from '../../src/agent/ack-gate.js';

const logger = pino({ level: 'silent' });
const settled = async (p: Promise<void>, ms = 20) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('AckGate', () => {
  test('async mode never waits', async () => {
    const g = new AckGate({ mode: 'async', logger });
    assert.equal(await settled(g.wait(100)), true);
    assert.equal(g.status().state, 'ok');
  });

  test('sync mode waits until the remote has the seq', async () => {
    const g = new AckGate({ mode: 'sync', timeoutMs: 5000, logger });
    const w5 = g.wait(5);
    const w9 = g.wait(9);
    assert.equal(await settled(w5), false);
    assert.equal(g.status().waiting, 2);
    g.remoteDurable(6);
    assert.equal(await settled(w5), true);
    assert.equal(await settled(w9), false);
    g.remoteDurable(9);
    assert.equal(await settled(w9), true);
    assert.equal(await settled(g.wait(3)), true, 'already durable remotely');
    const s = g.status();
    assert.equal(s.state, 'ok');
    assert.equal(s.remoteDurableThrough, 9);
    assert.equal(s.waiting, 0);
    assert.equal(s.durableAt, "the master target's journal");
  });

  test('a timeout degrades: waiters and later flushes are answered locally, and owed', async () => {
    const g = new AckGate({ mode: 'process-server', timeoutMs: 100, logger });
    g.remoteProblem = () => 'process server not connected';
    g.remoteDurable(2);
    const t0 = Date.now();
    await g.wait(10);
    assert.ok(Date.now() - t0 >= 90, 'waited for the timeout');
    let s = g.status();
    assert.equal(s.state, 'degraded');
    assert.equal(s.degradations, 1);
    assert.equal(s.remoteDurableThrough, 2, 'no remote durability is invented');
    assert.equal(s.owedThrough, 10);
    assert.match(
      s.reason!,
      /^no acknowledgement from the process server's cache for seq 10 within 0\.1 s \(process server not connected\)$/,
    );
    assert.equal(await settled(g.wait(12)), true, 'degraded: no wait');
    s = g.status();
    assert.equal(s.owedThrough, 12);
    // The remote comes back: once it has what was owed when it degraded, the mode holds again.
    g.remoteDurable(9);
    assert.equal(g.status().state, 'degraded');
    g.remoteDurable(10);
    s = g.status();
    assert.equal(s.state, 'ok');
    assert.equal(s.owedThrough, 12, 'seq 12 was acknowledged locally and is not remote yet');
    assert.equal(s.reason, undefined);
    const w = g.wait(13);
    assert.equal(await settled(w), false, 'waits again');
    g.remoteDurable(13);
    assert.equal(await settled(w), true);
    assert.equal(g.status().owedThrough, 0);
  });

  test('degrade() answers waiters at once; close() answers everything', async () => {
    const g = new AckGate({ mode: 'sync', timeoutMs: 60_000, logger });
    const w = g.wait(4);
    g.degrade('the process server cannot relay');
    assert.equal(await settled(w), true);
    assert.equal(g.status().reason, 'the process server cannot relay');
    const h = new AckGate({ mode: 'sync', timeoutMs: 60_000, logger });
    const x = h.wait(4);
    h.close();
    assert.equal(await settled(x), true);
    assert.equal(await settled(h.wait(5)), true, 'closed: nothing waits');
  });
});
