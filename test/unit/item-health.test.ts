import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assessItem } from '../../src/control-plane/items/item-health.js';
import type { MachineStatusJson } from '../../src/master-target/replication-status.js';

const status = (over: Partial<MachineStatusJson>): MachineStatusJson => ({
  machineId: 'm',
  connected: true,
  rpoSeconds: 2,
  currentAsOf: null,
  appliedThrough: 10,
  appliedTime: null,
  latestCrashPoint: null,
  latestAppPoint: null,
  oldestPoint: 0,
  journalBytes: 0,
  lastHeartbeatAt: null,
  protected: true,
  resyncOpenSince: null,
  health: [],
  ...over,
});

const facts = { machineName: 'web', policyName: 'gold', rpoThresholdMinutes: 15 };

describe('assessItem', () => {
  it('a protected item within its RPO threshold is healthy', () => {
    const a = assessItem({ ...facts, state: 'protected', status: status({}) });
    assert.deepEqual(a, { state: 'protected', rpoSeconds: 2, health: [], rpoAlert: undefined });
  });

  it('judges the RPO by the policy, not by the master target’s default', () => {
    const mtOwn = { code: 'rpo-threshold-exceeded', message: 'RPO 950 s is above the threshold of 900 s' };
    const under = assessItem({
      ...facts,
      rpoThresholdMinutes: 30,
      state: 'protected',
      status: status({ rpoSeconds: 950, health: [mtOwn] }),
    });
    assert.deepEqual(under.health, []);
    assert.equal(under.rpoAlert, undefined);
    const over = assessItem({ ...facts, state: 'protected', status: status({ rpoSeconds: 1000.4 }) });
    const message = "RPO of machine 'web' is 1000 s, above the threshold of policy 'gold' (15 min)";
    assert.equal(over.rpoAlert, message);
    assert.deepEqual(over.health, [{ code: 'rpo-threshold-exceeded', message }]);
  });

  it('a resync makes a protected item resync-required, and its end makes it protected again', () => {
    assert.equal(
      assessItem({ ...facts, state: 'protected', status: status({ resyncOpenSince: 5 }) }).state,
      'resync-required',
    );
    assert.equal(assessItem({ ...facts, state: 'resync-required', status: status({}) }).state, 'protected');
  });

  it('leaves the states that belong to a job alone, and raises no RPO alert in them', () => {
    for (const state of ['enabling', 'initial-replication', 'disabling', 'failed-over']) {
      const a = assessItem({ ...facts, state, status: status({ rpoSeconds: 5000, resyncOpenSince: 3 }) });
      assert.equal(a.state, state);
      assert.equal(a.rpoAlert, undefined);
    }
  });

  it('a protected item whose replica is missing says so', () => {
    const a = assessItem({ ...facts, state: 'protected', status: undefined });
    assert.deepEqual(a.health, [
      { code: 'no-replica', message: 'the master target holds no replica of this machine' },
    ]);
    assert.equal(a.rpoSeconds, null);
  });
});
