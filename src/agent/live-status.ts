// What a running agent adds to its file-based summary: the shipper's state and the
// backlog the process server has not acknowledged. Served by the control socket's
// /status, printed by `rebound agent log`, exported as metrics.
import type { HealthProblem } from '../util/health.js';
import { formatSize } from '../util/size.js';
import type { Agent } from './agent.js';
import { resyncRequiredBytes, type Shipper } from './shipper.js';

export interface ShipperLiveStatus {
  /** Where it ships (host:port). */
  processServer: string;
  connected: boolean;
  /** Every change <= this is durable at the process server. */
  ackedThrough: number;
  sentThrough: number;
  /** Log bytes the process server has not acknowledged (see docs/protocol.md). */
  backlogBytes: number;
  /** The process server holds every seq handed out so far (a planned failover then waits for the master target). */
  drained?: boolean;
  /** Source time through which the process server provably holds every change (ISO). */
  processServerCurrentAsOf?: string;
  lastError?: string;
}

export interface AgentLiveStatus {
  machineId: string;
  logBytes: number;
  logLimitBytes: number;
  resyncRequiredBytes: number;
  /** Absent when the agent ships nowhere (no --process-server). */
  shipper?: ShipperLiveStatus;
  health: HealthProblem[];
}

/** The log counts as nearly full above this share of its limit. */
const LOG_NEARLY_FULL = 0.9;

export function agentLiveStatus(agent: Agent, shipper?: Shipper): AgentLiveStatus {
  const out: AgentLiveStatus = {
    machineId: agent.machineId,
    logBytes: agent.log.bytes,
    logLimitBytes: agent.log.maxBytes,
    resyncRequiredBytes: resyncRequiredBytes(agent),
    health: [],
  };
  if (shipper) {
    const s = shipper.status();
    out.shipper = {
      processServer: shipper.target,
      connected: s.connected,
      ackedThrough: s.ackedThrough,
      sentThrough: s.sentThrough,
      backlogBytes: s.backlogBytes,
      drained: s.ackedThrough >= agent.log.nextSeq - 1,
      processServerCurrentAsOf:
        s.receiverCurrentAsOf === undefined ? undefined : new Date(s.receiverCurrentAsOf).toISOString(),
      lastError: s.lastError,
    };
  }
  out.health = agentProblems(out);
  return out;
}

export function agentProblems(s: Omit<AgentLiveStatus, 'health'>): HealthProblem[] {
  const out: HealthProblem[] = [];
  if (s.shipper && !s.shipper.connected) {
    out.push({
      code: 'process-server-unreachable',
      message:
        `not connected to the process server at ${s.shipper.processServer}` +
        (s.shipper.lastError ? `: ${s.shipper.lastError}` : ''),
    });
  }
  if (s.resyncRequiredBytes > 0) {
    out.push({
      code: 'resync-required',
      message: `${formatSize(s.resyncRequiredBytes)} of the protected disks must be resynced (changes with no log record)`,
    });
  }
  if (s.logLimitBytes > 0 && s.logBytes > s.logLimitBytes * LOG_NEARLY_FULL) {
    out.push({
      code: 'change-log-nearly-full',
      message: `the change log holds ${formatSize(s.logBytes)} of its ${formatSize(s.logLimitBytes)} limit`,
    });
  }
  return out;
}

/** The lines `rebound agent log` adds for a running agent. */
export function formatLiveStatus(s: Partial<AgentLiveStatus>): string {
  const lines = ['running agent:'];
  if (s.logBytes !== undefined && s.logLimitBytes !== undefined)
    lines.push(`  log ${formatSize(s.logBytes)} of ${formatSize(s.logLimitBytes)}`);
  if (s.resyncRequiredBytes !== undefined)
    lines.push(`  resync required: ${s.resyncRequiredBytes ? formatSize(s.resyncRequiredBytes) : 'none'}`);
  const sh = s.shipper;
  if (!sh) lines.push('  shipper: none (no --process-server)');
  else {
    lines.push(
      `  shipper to ${sh.processServer}: ${sh.connected ? 'connected' : 'NOT CONNECTED'}, ` +
        `acknowledged through seq ${sh.ackedThrough}, sent through ${sh.sentThrough}`,
    );
    lines.push(`  backlog (not acknowledged by the process server): ${formatSize(sh.backlogBytes)}`);
    if (sh.processServerCurrentAsOf)
      lines.push(`  the process server holds every change made before ${sh.processServerCurrentAsOf}`);
  }
  const health = s.health ?? [];
  if (health.length === 0) lines.push('  health: ok');
  else {
    lines.push('  health problems:');
    for (const p of health) lines.push(`    ${p.code}: ${p.message}`);
  }
  return lines.join('\n');
}
