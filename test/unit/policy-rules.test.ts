// Replication policy values (S14): every field's range, the cross-field rule, the defaults
// and the failback policy's fixed values (S15).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyPolicyChanges,
  DEFAULT_POLICY,
  FAILBACK_POLICY,
  type PolicyField,
} from '../../src/control-plane/policies/policy-rules.js';

type Case = [
  changes: Partial<Record<PolicyField, unknown>>,
  expected: string | Partial<typeof DEFAULT_POLICY>,
];

const RPO = 'use a whole number of minutes from 1 to 1440 (24 h)';
const RET = 'use a whole number of hours from 1 to 720 (30 days)';
const APP = 'use a whole number of minutes from 0 (off) to 720 (12 h)';
const CRASH = 'use a whole number of minutes from 1 to 60';

const CASES: Case[] = [
  [{}, {}],
  [{ rpo_threshold_minutes: 1 }, { rpo_threshold_minutes: 1 }],
  [{ rpo_threshold_minutes: 1440 }, { rpo_threshold_minutes: 1440 }],
  [{ rpo_threshold_minutes: 0 }, `rpo_threshold_minutes 0 is not valid: ${RPO}`],
  [{ rpo_threshold_minutes: 1441 }, `rpo_threshold_minutes 1441 is not valid: ${RPO}`],
  [{ rpo_threshold_minutes: 7.5 }, `rpo_threshold_minutes 7.5 is not valid: ${RPO}`],
  [{ rpo_threshold_minutes: '15' }, `rpo_threshold_minutes '15' is not valid: ${RPO}`],
  [{ rpo_threshold_minutes: null }, `rpo_threshold_minutes null is not valid: ${RPO}`],
  [{ retention_hours: 1 }, { retention_hours: 1 }],
  [{ retention_hours: 720 }, { retention_hours: 720 }],
  [{ retention_hours: 721 }, `retention_hours 721 is not valid: ${RET}`],
  [{ retention_hours: 0 }, `retention_hours 0 is not valid: ${RET}`],
  [{ retention_hours: -24 }, `retention_hours -24 is not valid: ${RET}`],
  [{ app_consistent_minutes: 0 }, { app_consistent_minutes: 0 }],
  [
    { app_consistent_minutes: 720, retention_hours: 12 },
    { app_consistent_minutes: 720, retention_hours: 12 },
  ],
  [{ app_consistent_minutes: 721 }, `app_consistent_minutes 721 is not valid: ${APP}`],
  [{ app_consistent_minutes: -1 }, `app_consistent_minutes -1 is not valid: ${APP}`],
  [
    { app_consistent_minutes: 120, retention_hours: 1 },
    'app_consistent_minutes 120 is longer than the retention window (retention_hours 1 = 60 minutes): use at most 60, or 0 (off)',
  ],
  [
    { app_consistent_minutes: 0, retention_hours: 1 },
    { app_consistent_minutes: 0, retention_hours: 1 },
  ],
  [{ crash_consistent_minutes: 1 }, { crash_consistent_minutes: 1 }],
  [{ crash_consistent_minutes: 60 }, { crash_consistent_minutes: 60 }],
  [{ crash_consistent_minutes: 0 }, `crash_consistent_minutes 0 is not valid: ${CRASH}`],
  [{ crash_consistent_minutes: 61 }, `crash_consistent_minutes 61 is not valid: ${CRASH}`],
  [{ ack_mode: 'sync' }, { ack_mode: 'sync' }],
  [{ ack_mode: 'process-server' }, { ack_mode: 'process-server' }],
  [{ ack_mode: 'SYNC' }, "ack_mode 'SYNC' is not valid: use one of async, process-server, sync"],
  [{ ack_mode: 1 }, 'ack_mode 1 is not valid: use one of async, process-server, sync'],
  [
    { rpo_threshold_minutes: 0, ack_mode: 'fast' },
    `rpo_threshold_minutes 0 is not valid: ${RPO}; ack_mode 'fast' is not valid: use one of async, process-server, sync`,
  ],
];

describe('policy values (S14)', () => {
  for (const [changes, expected] of CASES) {
    test(`${JSON.stringify(changes)} -> ${typeof expected === 'string' ? 'refused' : 'accepted'}`, () => {
      const r = applyPolicyChanges(DEFAULT_POLICY, changes);
      if (typeof expected === 'string') {
        assert.equal(r.values, undefined);
        assert.equal(r.problems.map((p) => p.message).join('; '), expected);
      } else {
        assert.deepEqual(r.problems, []);
        assert.deepEqual(r.values, { ...DEFAULT_POLICY, ...expected });
      }
    });
  }

  test('each problem names its field', () => {
    const r = applyPolicyChanges(DEFAULT_POLICY, { retention_hours: 0, crash_consistent_minutes: 99 });
    assert.deepEqual(
      r.problems.map((p) => p.field),
      ['retention_hours', 'crash_consistent_minutes'],
    );
  });

  test('an edit is checked against the values it changes', () => {
    const base = { ...DEFAULT_POLICY, retention_hours: 2, app_consistent_minutes: 0 };
    assert.match(
      applyPolicyChanges(base, { app_consistent_minutes: 180 }).problems[0]?.message ?? '',
      /longer than the retention window \(retention_hours 2 = 120 minutes\)/,
    );
  });

  test('defaults and the failback policy (S15: RPO 15 min, retention 24 h, app-consistent 60 min)', () => {
    assert.deepEqual(DEFAULT_POLICY, {
      rpo_threshold_minutes: 15,
      retention_hours: 24,
      app_consistent_minutes: 60,
      crash_consistent_minutes: 5,
      ack_mode: 'async',
    });
    assert.equal(FAILBACK_POLICY.rpo_threshold_minutes, 15);
    assert.equal(FAILBACK_POLICY.retention_hours, 24);
    assert.equal(FAILBACK_POLICY.app_consistent_minutes, 60);
  });
});
