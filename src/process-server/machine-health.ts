// Health problems of one machine at the process server, from its status. Pure.
import type { HealthProblem } from '../util/health.js';
import type { MachineStatus } from './process-server.js';

/** An agent whose position heartbeats stop for this long counts as silent. */
export const AGENT_SILENCE_MS = 30_000;

export function processServerProblems(
  s: MachineStatus,
  now: number,
  opts: { forwarding: boolean },
): HealthProblem[] {
  const out: HealthProblem[] = [];
  if (!s.connected) {
    out.push({
      code: 'agent-disconnected',
      message: 'the machine’s agent is not streaming to this process server',
    });
  } else if (s.lastHeartbeat && now - s.lastHeartbeat.receivedAt > AGENT_SILENCE_MS) {
    out.push({
      code: 'no-position-heartbeat',
      message: `no position heartbeat from the agent for ${Math.round((now - s.lastHeartbeat.receivedAt) / 1000)} s`,
    });
  }
  if (opts.forwarding && !s.forwarderConnected) {
    out.push({
      code: 'master-target-unreachable',
      message: `not forwarding to the master target${s.lastForwardError ? `: ${s.lastForwardError}` : ''}`,
    });
  }
  // Problems the process server itself found (cache-corrupt).
  out.push(...(s.problems ?? []));
  return out;
}
