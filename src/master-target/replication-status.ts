// Per-machine replication status at the master target, as operators read it
// (`rebound master-target status`, /metrics): RPO, applied seq, latest points and health
// problems. Pure: computed from a snapshot of the machine's state and the time now.
import type { HealthProblem } from '../util/health.js';
import { rpoSeconds } from '../wire/stream-freshness.js';
import type { RecoveryPoint } from './replica.js';

/** What the master target knows about one machine at a moment. */
export interface MachineSnapshot {
  machineId: string;
  /** A process server is streaming this machine now. */
  connected: boolean;
  /** When the current stream started (this host's clock). */
  connectedSince?: number;
  /** When the last stream ended (undefined: streaming, or none since start). */
  disconnectedSince?: number;
  appliedThrough: number;
  /** Source time of the newest applied change (0 = none). */
  appliedTime: number;
  /** Source time through which the replica holds every change (see ReplicaFreshness). */
  currentAsOf?: number;
  lastHeartbeatAt?: number;
  latestCrash?: RecoveryPoint;
  latestApp?: RecoveryPoint;
  oldestPoint: number;
  journalBytes: number;
  /** Why the last batch could not be applied (cleared by the next success). */
  lastApplyError?: string;
  /** A resync is copying blocks since this seq: no point after it until it ends. */
  resyncOpenSince?: number;
  /** The first copy has ended: the machine has recovery points. */
  protected?: boolean;
}

export interface MachineStatus extends MachineSnapshot {
  rpoSeconds?: number;
  health: HealthProblem[];
}

export interface StatusRules {
  /** RPO above this is a problem (seconds). */
  rpoAlertSeconds: number;
  /** A connected stream without a position heartbeat for this long is a problem (ms). */
  heartbeatSilenceMs: number;
}

export const DEFAULT_STATUS_RULES: StatusRules = { rpoAlertSeconds: 900, heartbeatSilenceMs: 30_000 };

export function machineStatus(
  s: MachineSnapshot,
  now: number,
  rules: StatusRules = DEFAULT_STATUS_RULES,
  extra: HealthProblem[] = [],
): MachineStatus {
  const rpo = rpoSeconds(now, s.currentAsOf);
  return { ...s, rpoSeconds: rpo, health: [...builtInProblems(s, rpo, now, rules), ...extra] };
}

function builtInProblems(
  s: MachineSnapshot,
  rpo: number | undefined,
  now: number,
  rules: StatusRules,
): HealthProblem[] {
  const out: HealthProblem[] = [];
  const heardAt = Math.max(s.lastHeartbeatAt ?? 0, s.connectedSince ?? 0);
  if (!s.connected) {
    const since = s.disconnectedSince ? ` since ${new Date(s.disconnectedSince).toISOString()}` : '';
    out.push({
      code: 'process-server-unreachable',
      message: `no process server is streaming this machine${since}`,
    });
  } else if (heardAt > 0 && now - heardAt > rules.heartbeatSilenceMs) {
    out.push({
      code: 'no-position-heartbeat',
      message:
        `no position heartbeat for ${Math.round((now - heardAt) / 1000)} s: the RPO counts only ` +
        'applied changes (the source may have resync-required ranges, or a peer is older)',
    });
  }
  if (rpo !== undefined && rpo > rules.rpoAlertSeconds) {
    out.push({
      code: 'rpo-threshold-exceeded',
      message: `RPO ${Math.round(rpo)} s is above the threshold of ${rules.rpoAlertSeconds} s`,
    });
  }
  if (s.resyncOpenSince !== undefined) {
    out.push(
      s.protected
        ? {
            code: 'resync-in-progress',
            message: `a resync is copying blocks since seq ${s.resyncOpenSince}: no new recovery point until it ends`,
          }
        : {
            code: 'initial-replication',
            message: 'the initial copy has not ended: the machine is not protected yet (no recovery point)',
          },
    );
  }
  if (s.lastApplyError) {
    out.push({ code: 'apply-failed', message: `the last batch could not be applied: ${s.lastApplyError}` });
  }
  return out;
}

/** A machine's status as the control API and `--json` give it: times as ISO-8601 strings. */
export interface MachineStatusJson {
  machineId: string;
  connected: boolean;
  rpoSeconds: number | null;
  currentAsOf: string | null;
  appliedThrough: number;
  appliedTime: string | null;
  latestCrashPoint: { seq: number; time: string } | null;
  latestAppPoint: { seq: number; time: string; tag: string } | null;
  oldestPoint: number;
  journalBytes: number;
  lastHeartbeatAt: string | null;
  /** The first copy has ended: the machine has recovery points (a later resync may be open). */
  protected: boolean;
  resyncOpenSince: number | null;
  health: HealthProblem[];
}

export function statusJson(s: MachineStatus): MachineStatusJson {
  const iso = (ms: number | undefined) => (ms === undefined || ms <= 0 ? null : new Date(ms).toISOString());
  return {
    machineId: s.machineId,
    connected: s.connected,
    rpoSeconds: s.rpoSeconds === undefined ? null : Math.round(s.rpoSeconds * 1000) / 1000,
    currentAsOf: iso(s.currentAsOf),
    appliedThrough: s.appliedThrough,
    appliedTime: iso(s.appliedTime),
    latestCrashPoint: s.latestCrash ? { seq: s.latestCrash.seq, time: iso(s.latestCrash.time)! } : null,
    latestAppPoint: s.latestApp
      ? { seq: s.latestApp.seq, time: iso(s.latestApp.time)!, tag: s.latestApp.tag }
      : null,
    oldestPoint: s.oldestPoint,
    journalBytes: s.journalBytes,
    lastHeartbeatAt: iso(s.lastHeartbeatAt),
    protected: s.protected ?? true,
    resyncOpenSince: s.resyncOpenSince ?? null,
    health: s.health,
  };
}
