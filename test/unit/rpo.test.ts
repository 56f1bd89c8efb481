// The pure parts of RPO and backlog: the position heartbeat payload (and old peers' plain
// one), how a stream proves its receiver current (StreamFreshness), how the master target
// does (ReplicaFreshness), the RPO and health of a machine's status, and backlog bytes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReplicaFreshness } from '../../src/master-target/replica-freshness.js';
import {
  DEFAULT_STATUS_RULES,
  type MachineSnapshot,
  machineStatus,
  statusJson,
} from '../../src/master-target/replication-status.js';
import { logBytesAfter, recordLogBytes } from '../../src/wire/backlog.js';
import { decodeHeartbeat, encodeHeartbeat, FrameError } from '../../src/wire/frame.js';
import { rpoSeconds, StreamFreshness } from '../../src/wire/stream-freshness.js';

describe('heartbeat payload', () => {
  test('a position heartbeat is time then throughSeq, 16 bytes, big-endian', () => {
    const b = encodeHeartbeat({ time: 1_700_000_000_123, throughSeq: 42 });
    assert.equal(b.length, 16);
    assert.equal(b.readBigUInt64BE(0), 1_700_000_000_123n);
    assert.equal(b.readBigUInt64BE(8), 42n);
    assert.deepEqual(decodeHeartbeat(b), { time: 1_700_000_000_123, throughSeq: 42 });
  });

  test('a plain heartbeat (what version-1 peers send) stays 8 bytes and carries no position', () => {
    const b = encodeHeartbeat({ time: 99 });
    assert.equal(b.length, 8);
    assert.deepEqual(decodeHeartbeat(b), { time: 99 });
    assert.equal(decodeHeartbeat(b).throughSeq, undefined);
  });

  test('other lengths and unsafe values are named errors', () => {
    assert.throws(() => decodeHeartbeat(Buffer.alloc(12)), {
      name: 'FrameError',
      message: 'heartbeat payload is 12 bytes: too short for its throughSeq',
    });
    assert.throws(() => decodeHeartbeat(Buffer.alloc(17)), {
      message: 'heartbeat payload has 1 unexpected trailing bytes',
    });
    const big = Buffer.alloc(16);
    big.writeBigUInt64BE(2n ** 60n, 8);
    assert.throws(() => decodeHeartbeat(big), {
      message: `heartbeat throughSeq ${2n ** 60n} exceeds 2^53 - 1`,
    });
    assert.throws(() => encodeHeartbeat({ time: 1, throughSeq: -1 }), FrameError);
  });
});

describe('StreamFreshness (sender side)', () => {
  test('a heartbeat waits until its records are sent, then counts once they are acknowledged', () => {
    const f = new StreamFreshness();
    f.offer({ time: 1000, throughSeq: 10 });
    assert.equal(f.takeSendable(9), undefined, 'seq 10 is not sent yet');
    const hb = f.takeSendable(10);
    assert.deepEqual(hb, { time: 1000, throughSeq: 10 });
    assert.equal(f.takeSendable(10), undefined, 'sent once');
    f.sent(hb!, 8);
    assert.equal(f.currentAsOf, undefined, 'the receiver has not acknowledged seq 10 yet');
    f.acked(9);
    assert.equal(f.currentAsOf, undefined);
    f.acked(10);
    assert.equal(f.currentAsOf, 1000);
  });

  test('idle: a heartbeat for what is already acknowledged counts at once', () => {
    const f = new StreamFreshness();
    f.acked(10);
    f.offer({ time: 5000, throughSeq: 10 });
    f.sent(f.takeSendable(10)!, 10);
    assert.equal(f.currentAsOf, 5000);
    f.offer({ time: 6000, throughSeq: 10 });
    f.sent(f.takeSendable(10)!, 10);
    assert.equal(f.currentAsOf, 6000, 'the RPO of an idle stream does not grow');
  });

  test('only the newest sendable heartbeat goes out; older covered ones are superseded', () => {
    const f = new StreamFreshness();
    f.offer({ time: 1, throughSeq: 5 });
    f.offer({ time: 2, throughSeq: 7 });
    f.offer({ time: 3, throughSeq: 12 });
    assert.deepEqual(f.takeSendable(8), { time: 2, throughSeq: 7 });
    assert.deepEqual(f.takeSendable(12), { time: 3, throughSeq: 12 });
  });

  test('acknowledged records prove their own source time; time never goes back', () => {
    const f = new StreamFreshness();
    f.acked(3, 700);
    assert.equal(f.currentAsOf, 700);
    f.acked(4, 600);
    assert.equal(f.currentAsOf, 700);
  });

  test('a source log that went back drops the promises of the old one', () => {
    const f = new StreamFreshness();
    f.offer({ time: 1, throughSeq: 50 });
    f.offer({ time: 2, throughSeq: 20 });
    assert.deepEqual(f.takeSendable(60), { time: 2, throughSeq: 20 });
    assert.equal(f.newestOffered?.throughSeq, 20);
  });

  test('memory is bounded: at most 64 heartbeats wait', () => {
    const f = new StreamFreshness();
    for (let i = 1; i <= 1000; i++) f.offer({ time: i, throughSeq: 1000 + i });
    let n = 0;
    while (f.takeSendable(Number.MAX_SAFE_INTEGER)) n++;
    assert.equal(n, 1);
    for (let i = 1; i <= 1000; i++) f.sent({ time: i, throughSeq: 1000 + i }, 0);
    f.acked(1000 + 936);
    assert.equal(f.currentAsOf, undefined, 'the oldest were dropped');
    f.acked(1000 + 937);
    assert.equal(f.currentAsOf, 937, 'the newest 64 were kept');
  });

  test('rpoSeconds', () => {
    assert.equal(rpoSeconds(10_000, 7_500), 2.5);
    assert.equal(rpoSeconds(10_000, undefined), undefined);
    assert.equal(rpoSeconds(10_000, 11_000), 0, 'a source clock ahead of ours is not a negative RPO');
  });
});

describe('ReplicaFreshness (master target)', () => {
  test('a heartbeat counts only once everything through its seq is applied', () => {
    const f = new ReplicaFreshness();
    f.heard({ time: 2000, throughSeq: 30 }, 20, 1);
    assert.equal(f.currentAsOf(1500), 1500, 'the newest applied change only');
    f.applied(29);
    assert.equal(f.currentAsOf(1500), 1500);
    f.applied(30);
    assert.equal(f.currentAsOf(1600), 2000);
    assert.equal(f.lastHeartbeatAt, 1);
  });

  test('idle replica: heartbeats for the applied seq keep it current', () => {
    const f = new ReplicaFreshness();
    for (const t of [10_000, 11_000, 12_000]) f.heard({ time: t, throughSeq: 30 }, 30);
    assert.equal(f.currentAsOf(5_000), 12_000);
    assert.equal(rpoSeconds(12_500, f.currentAsOf(5_000)), 0.5);
  });

  test('a plain heartbeat (old process server) proves nothing', () => {
    const f = new ReplicaFreshness();
    f.heard({ time: 9000 }, 30);
    assert.equal(f.currentAsOf(1000), 1000);
    assert.equal(f.lastHeartbeatAt, undefined);
    assert.equal(new ReplicaFreshness().currentAsOf(0), undefined, 'nothing known');
  });

  test('latest crash and app points follow applied batches', () => {
    const f = new ReplicaFreshness([
      { seq: 3, time: 30, kind: 'crash', tag: '' },
      { seq: 5, time: 50, kind: 'app', tag: 'nightly' },
    ]);
    assert.equal(f.latestCrash?.seq, 3);
    f.applied(9, [
      { type: 'marker', seq: 8, kind: 'crash', tag: '', time: 80 },
      { type: 'write', seq: 9, disk: 1, offset: 0, length: 1, data: Buffer.alloc(1), time: 90 },
      { type: 'marker', seq: 10, kind: 'app', tag: 'not applied', time: 100 },
    ]);
    assert.deepEqual(f.latestCrash, { seq: 8, time: 80, kind: 'crash', tag: '' });
    assert.equal(f.latestApp?.tag, 'nightly');
  });
});

describe('machine status at the master target', () => {
  const base: MachineSnapshot = {
    machineId: 'm1',
    connected: true,
    connectedSince: 100_000,
    appliedThrough: 40,
    appliedTime: 90_000,
    currentAsOf: 118_000,
    lastHeartbeatAt: 119_500,
    oldestPoint: 1,
    journalBytes: 4096,
  };

  test('RPO is now minus the time the replica is current as of; a healthy machine has no problems', () => {
    const s = machineStatus(base, 120_000);
    assert.equal(s.rpoSeconds, 2);
    assert.deepEqual(s.health, []);
    const j = statusJson(s);
    assert.equal(j.currentAsOf, new Date(118_000).toISOString());
    assert.equal(j.latestCrashPoint, null);
  });

  test('problems are named: no stream, silent heartbeats, RPO over the threshold, a failed batch, extra checks', () => {
    const down = machineStatus({ ...base, connected: false, disconnectedSince: 110_000 }, 120_000);
    assert.deepEqual(
      down.health.map((p) => p.code),
      ['process-server-unreachable'],
    );
    assert.match(down.health[0]!.message, /since 1970-01-01T00:01:50\.000Z/);
    const silent = machineStatus(base, 119_500 + DEFAULT_STATUS_RULES.heartbeatSilenceMs + 1);
    assert.ok(silent.health.some((p) => p.code === 'no-position-heartbeat'));
    const late = machineStatus(base, 118_000 + 901_000);
    assert.ok(late.health.some((p) => p.code === 'rpo-threshold-exceeded' && /RPO 901 s/.test(p.message)));
    const failed = machineStatus({ ...base, lastApplyError: 'retention volume full' }, 120_000, undefined, [
      { code: 'retention-volume-full', message: 'x' },
    ]);
    assert.deepEqual(
      failed.health.map((p) => p.code),
      ['apply-failed', 'retention-volume-full'],
    );
  });
});

describe('backlog bytes', () => {
  const segs = [
    { firstSeq: 1, bytes: 1000 },
    { firstSeq: 11, bytes: 2000 },
    { firstSeq: 31, bytes: 500 },
  ];
  test('after a position: the rest of its segment, later segments, queued records', () => {
    assert.equal(logBytesAfter(segs, 3500, { segment: 11, offset: 1500 }, 25), 500 + 500);
    assert.equal(logBytesAfter(segs, 3600, { segment: 31, offset: 500 }, 40), 100, 'only the queued ones');
    assert.equal(logBytesAfter(segs, 3500, { segment: 1, offset: 0 }, 1), 3500);
  });
  test('without a position: from the start of the segment holding the seq (an upper bound)', () => {
    assert.equal(logBytesAfter(segs, 3500, undefined, 20), 2500);
    assert.equal(logBytesAfter([], 0, undefined, 1), 0);
  });
  test('record size includes the 48-byte header', () => {
    assert.equal(recordLogBytes(4096), 4144);
  });
});
