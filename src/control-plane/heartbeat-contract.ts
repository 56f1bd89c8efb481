// What components send to POST /api/v1/heartbeats and what they get back (docs/control-plane.md).
// The answer is meant to grow (e.g. a `replication` field with the settings an agent should
// apply): components ignore fields they do not know.
import type { ReportedDisk } from './registration/protocol.js';

/** How often components heartbeat unless told otherwise (REBOUND_HEARTBEAT_SECONDS in tests). */
export const DEFAULT_HEARTBEAT_SECONDS = 15;

/** After this long without a heartbeat a critical alert is raised (server option). */
export const DEFAULT_HEARTBEAT_ALERT_MINUTES = 15;

export interface HeartbeatRequest {
  /** host:port of the component's listener (agents: their NBD export listener). */
  address?: string;
  /** Anything the component wants shown about itself; stored as JSON. */
  status?: Record<string, unknown>;
  /** Agents only: every disk the agent knows, with its stable id. */
  disks?: ReportedDisk[];
}

export interface HeartbeatAnswer {
  /** The server's clock. */
  now: string;
  nextHeartbeatSeconds: number;
}

/** The interval a component uses: the env override, else what the server said, else 15 s. */
export function heartbeatSeconds(answered?: number): number {
  const env = Number(process.env.REBOUND_HEARTBEAT_SECONDS);
  if (Number.isFinite(env) && env > 0) return env;
  return answered && answered > 0 ? answered : DEFAULT_HEARTBEAT_SECONDS;
}
