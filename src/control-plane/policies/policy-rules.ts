// Replication policy values (S14) and the failback policy's fixed values (S15): defaults,
// allowed ranges, and a validation that names the field and its allowed range. Pure.
import { ACK_MODES, type AckMode } from '../../agent/ack-gate.js';

export interface PolicyValues {
  /** An item whose RPO exceeds this raises an alert. */
  rpo_threshold_minutes: number;
  /** How long recovery points are kept (the master target's retention window). */
  retention_hours: number;
  /** Minutes between app-consistent points; 0 = off. */
  app_consistent_minutes: number;
  /** Minutes between crash-consistent points (the agent's flush markers). */
  crash_consistent_minutes: number;
  /** When a write counts as acknowledged (see docs/architecture.md). */
  ack_mode: AckMode;
}

export type PolicyField = keyof PolicyValues;
export const POLICY_FIELDS: readonly PolicyField[] = [
  'rpo_threshold_minutes',
  'retention_hours',
  'app_consistent_minutes',
  'crash_consistent_minutes',
  'ack_mode',
];

/** Defaults: the master target's RPO alert (15 min) and retention (24 h), the agent's app-point frequency. */
export const DEFAULT_POLICY: PolicyValues = {
  rpo_threshold_minutes: 15,
  retention_hours: 24,
  app_consistent_minutes: 60,
  crash_consistent_minutes: 5,
  ack_mode: 'async',
};

/** S15: the failback policy's values; it is made with its policy and never edited. */
export const FAILBACK_POLICY: PolicyValues = {
  rpo_threshold_minutes: 15,
  retention_hours: 24,
  app_consistent_minutes: 60,
  crash_consistent_minutes: 5,
  ack_mode: 'async',
};

export const FAILBACK_SUFFIX = '-failback';

export function failbackPolicyName(policyName: string): string {
  return `${policyName}${FAILBACK_SUFFIX}`;
}

interface NumberRange {
  min: number;
  max: number;
  /** How the allowed range reads in an error. */
  allowed: string;
}

export const POLICY_RANGES: Record<Exclude<PolicyField, 'ack_mode'>, NumberRange> = {
  rpo_threshold_minutes: { min: 1, max: 1440, allowed: 'a whole number of minutes from 1 to 1440 (24 h)' },
  retention_hours: { min: 1, max: 720, allowed: 'a whole number of hours from 1 to 720 (30 days)' },
  app_consistent_minutes: {
    min: 0,
    max: 720,
    allowed: 'a whole number of minutes from 0 (off) to 720 (12 h)',
  },
  crash_consistent_minutes: { min: 1, max: 60, allowed: 'a whole number of minutes from 1 to 60' },
};

export interface PolicyProblem {
  field: PolicyField;
  message: string;
}

function show(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : (JSON.stringify(value) ?? String(value));
}

/**
 * The values of `base` with `changes` applied, or every problem found. `changes` is what a
 * caller sent (unknown types: a string where a number belongs is a problem, named). Besides each
 * field's range, app-consistent points must come at least once per retention window.
 */
export function applyPolicyChanges(
  base: PolicyValues,
  changes: Partial<Record<PolicyField, unknown>>,
): { values: PolicyValues; problems: [] } | { values?: undefined; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = [];
  const values: PolicyValues = { ...base };
  for (const field of POLICY_FIELDS) {
    const v = changes[field];
    if (v === undefined) continue;
    if (field === 'ack_mode') {
      if (typeof v === 'string' && (ACK_MODES as readonly string[]).includes(v))
        values.ack_mode = v as AckMode;
      else
        problems.push({
          field,
          message: `ack_mode ${show(v)} is not valid: use one of ${ACK_MODES.join(', ')}`,
        });
      continue;
    }
    const range = POLICY_RANGES[field];
    if (typeof v === 'number' && Number.isInteger(v) && v >= range.min && v <= range.max) values[field] = v;
    else problems.push({ field, message: `${field} ${show(v)} is not valid: use ${range.allowed}` });
  }
  if (
    problems.length === 0 &&
    values.app_consistent_minutes > 0 &&
    values.app_consistent_minutes > values.retention_hours * 60
  ) {
    problems.push({
      field: 'app_consistent_minutes',
      message:
        `app_consistent_minutes ${values.app_consistent_minutes} is longer than the retention window ` +
        `(retention_hours ${values.retention_hours} = ${values.retention_hours * 60} minutes): ` +
        `use at most ${values.retention_hours * 60}, or 0 (off)`,
    });
  }
  return problems.length ? { problems } : { values, problems: [] };
}
