// A replicated item's state, RPO and health, judged from what the data plane reports for its
// machine and from its policy's RPO threshold. Pure (the item monitor applies it).
import type { MachineStatusJson } from '../../master-target/replication-status.js';
import type { HealthProblem } from '../../util/health.js';

export const ITEM_STATES = [
  'enabling',
  'initial-replication',
  'protected',
  'resync-required',
  'failed-over',
  'reprotecting',
  'disabling',
  'failed',
] as const;
export type ItemState = (typeof ITEM_STATES)[number];

/** States in which the replica follows the machine, so RPO and resyncs are watched. */
const REPLICATING: readonly string[] = ['protected', 'resync-required'];

export const RPO_ALERT_KIND = 'rpo-threshold-exceeded';

export interface ItemFacts {
  state: string;
  machineName: string;
  policyName: string;
  rpoThresholdMinutes: number;
  /** The master target's status of the machine; undefined when it holds no replica of it. */
  status: MachineStatusJson | undefined;
}

export interface ItemAssessment {
  state: string;
  rpoSeconds: number | null;
  health: HealthProblem[];
  /** The RPO alert's message when the RPO is above the policy's threshold, else undefined. */
  rpoAlert: string | undefined;
}

export function assessItem(f: ItemFacts): ItemAssessment {
  const s = f.status;
  if (!s) {
    const health = REPLICATING.includes(f.state)
      ? [{ code: 'no-replica', message: 'the master target holds no replica of this machine' }]
      : [];
    return { state: f.state, rpoSeconds: null, health, rpoAlert: undefined };
  }
  let state = f.state;
  if (REPLICATING.includes(state) && s.protected) {
    state = s.resyncOpenSince === null ? 'protected' : 'resync-required';
  }
  // The master target judges RPO by its own default; the item by its policy.
  const health = s.health.filter((h) => h.code !== RPO_ALERT_KIND);
  const threshold = f.rpoThresholdMinutes * 60;
  let rpoAlert: string | undefined;
  if (REPLICATING.includes(state) && s.rpoSeconds !== null && s.rpoSeconds > threshold) {
    rpoAlert =
      `RPO of machine '${f.machineName}' is ${Math.round(s.rpoSeconds)} s, above the threshold of ` +
      `policy '${f.policyName}' (${f.rpoThresholdMinutes} min)`;
    health.push({ code: RPO_ALERT_KIND, message: rpoAlert });
  }
  return { state, rpoSeconds: s.rpoSeconds, health, rpoAlert };
}
