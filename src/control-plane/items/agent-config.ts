// What an agent is told about its replication in the answer to its heartbeat: where to ship
// and under which policy, or null to stop shipping (not protected, being disabled, failed).
import type { ServerContext } from '../context.js';

export interface ReplicationConfig {
  itemId: string;
  /** host:port of the process server to ship to (mutual TLS). */
  processServer: string;
  processServerName: string;
  ackMode: string;
  appConsistentMinutes: number;
  crashConsistentMinutes: number;
  retentionHours: number;
  rpoThresholdMinutes: number;
}

/** Item states in which the agent ships its changes. */
const SHIPPING = [
  'enabling',
  'initial-replication',
  'protected',
  'resync-required',
  'reprotecting',
  // A planned failover or a failback drains replication before it hands the disks over.
  'failing-over',
  'failing-back',
];

export async function replicationConfigFor(
  ctx: ServerContext,
  machineId: string,
): Promise<ReplicationConfig | null> {
  const r = await ctx.db
    .selectFrom('items')
    .innerJoin('policies', 'policies.id', 'items.policy_id')
    .innerJoin('process_servers', 'process_servers.id', 'items.process_server_id')
    .select([
      'items.id as itemId',
      'items.state as state',
      'process_servers.address as address',
      'process_servers.name as psName',
      'policies.ack_mode as ackMode',
      'policies.app_consistent_minutes as app',
      'policies.crash_consistent_minutes as crash',
      'policies.retention_hours as retention',
      'policies.rpo_threshold_minutes as rpo',
    ])
    .where('items.machine_id', '=', machineId)
    .executeTakeFirst();
  if (!r || !SHIPPING.includes(r.state) || !r.address) return null;
  return {
    itemId: r.itemId,
    processServer: r.address,
    processServerName: r.psName,
    ackMode: r.ackMode,
    appConsistentMinutes: r.app,
    crashConsistentMinutes: r.crash,
    retentionHours: r.retention,
    rpoThresholdMinutes: r.rpo,
  };
}
