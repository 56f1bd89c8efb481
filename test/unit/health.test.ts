// Health as named problems: checks other parts add, the monitor's structured log lines,
// and the agent's and process server's own problems.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { agentProblems, formatLiveStatus } from '../../src/agent/live-status.js';
import { processServerProblems } from '../../src/process-server/machine-health.js';
import type { MachineStatus } from '../../src/process-server/process-server.js';
import { HealthChecks, HealthMonitor, type MonitoredItem } from '../../src/util/health.js';

function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, out), lines };
}

describe('HealthChecks', () => {
  test('problems of every check, in order; a check that throws is a problem of its own', () => {
    const h = new HealthChecks();
    h.add('retention', (id) => (id === 'm1' ? [{ code: 'retention-volume-full', message: 'full' }] : []));
    h.add('broken', () => {
      throw new Error('boom');
    });
    assert.deepEqual(h.run('m1'), [
      { code: 'retention-volume-full', message: 'full' },
      { code: 'health-check-failed', message: 'health check broken failed: boom' },
    ]);
  });
});

describe('HealthMonitor', () => {
  test('logs a problem when it appears and when it clears, with machineId, seq and rpoSeconds', async () => {
    const { logger, lines } = captureLogger();
    let items: MonitoredItem[] = [{ machineId: 'm1', seq: 5, rpoSeconds: 1.234, health: [] }];
    const mon = new HealthMonitor({
      what: 'master target',
      logger,
      items: () => items,
      statusEveryMs: 60_000,
    });
    mon.round(1_000_000);
    items = [
      {
        machineId: 'm1',
        seq: 7,
        rpoSeconds: 950.04,
        health: [{ code: 'rpo-threshold-exceeded', message: 'RPO 950 s is above the threshold of 900 s' }],
      },
    ];
    mon.round(1_005_000);
    mon.round(1_010_000); // the same problem again: not logged twice
    items = [{ machineId: 'm1', seq: 9, rpoSeconds: 0.5, health: [] }];
    mon.round(1_015_000);
    await new Promise((r) => setImmediate(r));
    const msgs = lines.map((l) => [l.msg, l.level]);
    assert.deepEqual(msgs, [
      ['master target: replication status', 30],
      ['master target: health problem', 40],
      ['master target: health problem cleared', 30],
    ]);
    assert.deepEqual(
      {
        machineId: lines[1]!.machineId,
        seq: lines[1]!.seq,
        rpoSeconds: lines[1]!.rpoSeconds,
        code: lines[1]!.code,
      },
      { machineId: 'm1', seq: 7, rpoSeconds: 950, code: 'rpo-threshold-exceeded' },
    );
    assert.equal(lines[0]!.rpoSeconds, 1.2);
  });
});

describe('agent problems', () => {
  const ok = { machineId: 'm1', logBytes: 10, logLimitBytes: 100, resyncRequiredBytes: 0 };
  test('none while shipping and within limits', () => {
    const shipper = {
      processServer: '127.0.0.1:9850',
      connected: true,
      ackedThrough: 5,
      sentThrough: 5,
      backlogBytes: 0,
    };
    assert.deepEqual(agentProblems({ ...ok, shipper }), []);
    assert.deepEqual(agentProblems(ok), [], 'an agent without a process server ships nowhere, by choice');
  });
  test('unreachable process server, resync required, a nearly full log', () => {
    const shipper = {
      processServer: '127.0.0.1:9850',
      connected: false,
      ackedThrough: 5,
      sentThrough: 5,
      backlogBytes: 4096,
      lastError: 'cannot connect to 127.0.0.1:9850: connect ECONNREFUSED 127.0.0.1:9850',
    };
    const p = agentProblems({ ...ok, logBytes: 95, resyncRequiredBytes: 65536, shipper });
    assert.deepEqual(
      p.map((x) => x.code),
      ['process-server-unreachable', 'resync-required', 'change-log-nearly-full'],
    );
    assert.equal(
      p[0]!.message,
      'not connected to the process server at 127.0.0.1:9850: cannot connect to 127.0.0.1:9850: connect ECONNREFUSED 127.0.0.1:9850',
    );
    const text = formatLiveStatus({ ...ok, shipper, health: p });
    assert.match(text, /shipper to 127\.0\.0\.1:9850: NOT CONNECTED, acknowledged through seq 5/);
    assert.match(text, /backlog \(not acknowledged by the process server\): 4\.00 KiB/);
    assert.match(text, /process-server-unreachable: not connected/);
  });
});

describe('process server problems', () => {
  const s: MachineStatus = {
    machineId: 'm1',
    ackedThrough: 9,
    cacheBytes: 100,
    connected: true,
    backlogBytes: 0,
    forwarderConnected: true,
    replicatedThrough: 0,
    relaying: false,
    forwardedThrough: 9,
    lastHeartbeat: { time: 1000, throughSeq: 9, receivedAt: 1000 },
  };
  test('named problems for a missing agent, silent heartbeats and an unreachable master target', () => {
    assert.deepEqual(processServerProblems(s, 2000, { forwarding: true }), []);
    assert.deepEqual(
      processServerProblems(
        { ...s, connected: false, forwarderConnected: false, lastForwardError: 'ECONNREFUSED' },
        2000,
        { forwarding: true },
      ).map((p) => [p.code, p.message]),
      [
        ['agent-disconnected', 'the machine’s agent is not streaming to this process server'],
        ['master-target-unreachable', 'not forwarding to the master target: ECONNREFUSED'],
      ],
    );
    assert.deepEqual(
      processServerProblems(s, 40_000, { forwarding: false }).map((p) => p.code),
      ['no-position-heartbeat'],
    );
  });
});
