// Where an item's replication status comes from. The process server and master target built
// into this server are read directly (ctx.builtin); a remote one reports through its
// heartbeats (not yet: until then its items show no status).
import type { MasterTarget } from '../../master-target/master-target.js';
import { type MachineStatusJson, statusJson } from '../../master-target/replication-status.js';
import type { ProcessServer } from '../../process-server/process-server.js';
import type { ServerContext } from '../context.js';
import type { Machine, MasterTargetRow, ProcessServerRow } from '../db/schema.js';

/**
 * The id the data plane knows the machine by: its agent's machine id, which registration
 * records as the machine's id.
 */
export function dataPlaneId(machine: Pick<Machine, 'id'>): string {
  return machine.id;
}

export function builtinMasterTarget(
  ctx: ServerContext,
  row: Pick<MasterTargetRow, 'builtin'>,
): MasterTarget | undefined {
  return row.builtin === 1 ? ctx.builtin.masterTarget : undefined;
}

export function builtinProcessServer(ctx: ServerContext, row: ProcessServerRow): ProcessServer | undefined {
  return row.builtin === 1 ? ctx.builtin.processServer : undefined;
}

/** The master target's replication status of a machine, when it holds a replica of it. */
export function replicaStatus(
  ctx: ServerContext,
  mt: Pick<MasterTargetRow, 'builtin'>,
  machine: Pick<Machine, 'id'>,
): MachineStatusJson | undefined {
  const builtin = builtinMasterTarget(ctx, mt);
  if (!builtin) return undefined;
  const [s] = builtin.status(dataPlaneId(machine));
  return s && statusJson(s);
}

/** Whether the process server is streaming the machine from its agent now (undefined: unknown). */
export function agentConnected(
  ctx: ServerContext,
  ps: ProcessServerRow,
  machine: Pick<Machine, 'id'>,
): boolean | undefined {
  const builtin = builtinProcessServer(ctx, ps);
  if (!builtin) return undefined;
  return builtin.status().some((m) => m.machineId === dataPlaneId(machine) && m.connected);
}

/**
 * The initial copy's progress as the agent last reported it in its heartbeat (machines.status_json:
 * `replication.resync.percent`), when it did.
 */
export function agentCopyPercent(machine: Pick<Machine, 'status_json'>): number | undefined {
  if (!machine.status_json) return undefined;
  try {
    const s = JSON.parse(machine.status_json) as {
      replication?: { resync?: { percent?: unknown; state?: unknown } };
    };
    const p = s.replication?.resync?.percent;
    return typeof p === 'number' && Number.isFinite(p) ? p : undefined;
  } catch {
    return undefined;
  }
}
