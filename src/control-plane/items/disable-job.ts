// The job that disables replication of a machine (`rebound unprotect ITEM --yes`):
//   stop replication at the agent -> remove the cached changes at the process server ->
//   remove the replica and journal at the master target -> remove the item.
// The item is disabling from the request on; its agent stops shipping at its next heartbeat
// (the answer no longer carries a replication configuration). Each step is idempotent.
import { clearAlert } from '../alerts.js';
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';
import { type JobDefinition, type JobOutcome, type StepContext, sleep } from '../jobs/definitions.js';
import { agentConnected, builtinMasterTarget, builtinProcessServer, dataPlaneId } from './data-plane.js';
import { RPO_ALERT_KIND } from './item-health.js';
import { type ItemRows, loadItem, setItem } from './item-rows.js';

export interface DisableParams {
  itemId: string;
  machineName: string;
}

export const DISABLE_REPLICATION = 'disable-replication';

/** How long the agent has to stop streaming (it hears it at its next heartbeat, every 15 s). */
export const AGENT_STOP_TIMEOUT_MS = 5 * 60_000;

async function rows(s: StepContext<DisableParams>): Promise<ItemRows | undefined> {
  return loadItem(s.ctx.db, s.params.itemId);
}

const formatBytes = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export const disableReplicationJob: JobDefinition<DisableParams> = {
  kind: DISABLE_REPLICATION,
  steps: () => [
    {
      name: 'stop replication at the agent',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        if (!r) return { skipped: 'the item is already gone' };
        const { machine, processServer } = r;
        await s.message(
          `waiting for the agent of '${machine.name}' to stop streaming (it hears at its next heartbeat)`,
        );
        const deadline = Date.now() + AGENT_STOP_TIMEOUT_MS;
        for (;;) {
          const streaming = agentConnected(s.ctx, processServer, machine);
          if (streaming === undefined) {
            return {
              warning: `process server '${processServer.name}' is not built in: whether the agent stopped is not known here`,
            };
          }
          if (!streaming) return { message: `the agent of '${machine.name}' no longer streams` };
          if (Date.now() > deadline) {
            throw new Error(
              `the agent of '${machine.name}' still streams to process server '${processServer.name}' after ` +
                `${AGENT_STOP_TIMEOUT_MS / 60_000} min: stop its replication there, then unprotect again`,
            );
          }
          await sleep(1000, s.signal);
        }
      },
    },
    {
      name: 'remove the cached changes at the process server',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        if (!r) return { skipped: 'the item is already gone' };
        const ps = builtinProcessServer(s.ctx, r.processServer);
        if (!ps) {
          return {
            warning: `process server '${r.processServer.name}' is not built in: remove its cache of the machine there`,
          };
        }
        const removed = await ps.removeMachine(dataPlaneId(r.machine));
        return {
          message: removed ? 'the cache of the machine was removed' : 'no cache of the machine was there',
        };
      },
    },
    {
      name: 'remove the replica and journal at the master target',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        if (!r) return { skipped: 'the item is already gone' };
        const mt = builtinMasterTarget(s.ctx, r.masterTarget);
        if (!mt) {
          return {
            warning: `master target '${r.masterTarget.name}' is not built in: remove the replica of the machine there`,
          };
        }
        const freed = await mt.removeMachine(dataPlaneId(r.machine));
        if (!freed) return { message: 'no replica of the machine was there' };
        return {
          message: `removed the replica disks (${formatBytes(freed.replicaBytes)}) and the undo journal (${formatBytes(freed.journalBytes)})`,
        };
      },
    },
    {
      name: 'remove the item',
      resumable: true,
      async run(s) {
        await s.ctx.db.deleteFrom('items').where('id', '=', s.params.itemId).execute();
        await clearAlert(s.ctx, RPO_ALERT_KIND, s.params.itemId);
        return { message: `machine '${s.params.machineName}' is no longer protected` };
      },
    },
  ],
  async finish(ctx: ServerContext, job: Job, outcome: JobOutcome) {
    if (outcome.state !== 'Failed' && outcome.state !== 'Cancelled') return;
    const { itemId } = JSON.parse(job.params_json) as DisableParams;
    const problem =
      outcome.state === 'Failed'
        ? { code: 'disable-failed', message: `disabling replication failed: ${outcome.error}` }
        : { code: 'disable-cancelled', message: 'disabling replication was cancelled' };
    await setItem(ctx.db, itemId, { state: 'failed', health_json: JSON.stringify([problem]) }, ctx.now());
  },
};
