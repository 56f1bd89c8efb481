// The job that enables replication of a machine (`rebound protect`):
//   validate choices -> prepare the replica on the master target -> configure the agent ->
//   initial replication (N %) -> protected.
// The item is made (state enabling) with the job; every step is idempotent (re-run after a
// restart), and a job that fails or is cancelled leaves the item failed with the reason in its
// health, to be unprotected (which cleans up) or retried.
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';
import { type JobDefinition, type JobOutcome, type StepContext, sleep } from '../jobs/definitions.js';
import { agentConnected, builtinMasterTarget, dataPlaneId, replicaStatus } from './data-plane.js';
import { followFirstCopy } from './first-copy.js';
import { type ItemRows, loadItem, setItem } from './item-rows.js';

export interface EnableParams {
  itemId: string;
}

export const ENABLE_REPLICATION = 'enable-replication';

/** How long the agent has to start streaming once its configuration is published. */
export const AGENT_START_TIMEOUT_MS = 15 * 60_000;
const POLL_MS = 1000;

async function rows(s: StepContext<EnableParams>): Promise<ItemRows> {
  const r = await loadItem(s.ctx.db, s.params.itemId);
  if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
  return r;
}

export const enableReplicationJob: JobDefinition<EnableParams> = {
  kind: ENABLE_REPLICATION,
  steps: () => [
    {
      name: 'validate choices',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        if (!r.machine.agent_name) throw new Error(`machine '${r.machine.name}' has no registered agent`);
        if (r.item.datastore_id && !r.datastore) throw new Error('the chosen datastore no longer exists');
        if (r.item.retention_volume_id) {
          if (!r.retentionVolume) throw new Error('the chosen retention volume no longer exists');
          if (r.retentionVolume.valid !== 1) {
            throw new Error(
              `retention volume '${r.retentionVolume.path}' is not valid: ${r.retentionVolume.invalid_reason}`,
            );
          }
        }
        const parts = [
          `policy ${r.policy.name}`,
          `process server ${r.processServer.name}`,
          `master target ${r.masterTarget.name}`,
          ...(r.datastore ? [`datastore ${r.datastore.name}`] : []),
          ...(r.retentionVolume ? [`retention volume ${r.retentionVolume.path}`] : []),
        ];
        return { message: parts.join(', ') };
      },
    },
    {
      name: 'prepare the replica on the master target',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const mt = builtinMasterTarget(s.ctx, r.masterTarget);
        if (!mt) {
          throw new Error(
            `master target '${r.masterTarget.name}' is not built into this configuration server: not supported yet`,
          );
        }
        const id = dataPlaneId(r.machine);
        if (mt.replica(id)) {
          return {
            message: 'a replica of this machine is already there: it is reused (only differences move)',
          };
        }
        return {
          message: 'the replica disks are made when the agent first streams (sparse, at the disks’ sizes)',
        };
      },
    },
    {
      name: 'configure the agent',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const mt = builtinMasterTarget(s.ctx, r.masterTarget)!;
        const id = dataPlaneId(r.machine);
        await s.message(
          `waiting for the agent of '${r.machine.name}' to stream to process server ${r.processServer.name} (${r.processServer.address})`,
        );
        const deadline = Date.now() + AGENT_START_TIMEOUT_MS;
        for (;;) {
          // The built-in process server says whether the agent streams; else the master target does.
          const snap = mt.snapshot(id);
          const streaming = agentConnected(s.ctx, r.processServer, r.machine) ?? snap?.connected;
          if (snap && streaming) break;
          if (Date.now() > deadline) {
            throw new Error(
              `the agent of '${r.machine.name}' did not start streaming within ${AGENT_START_TIMEOUT_MS / 60_000} min: ` +
                `is 'rebound agent serve' running there, and can it reach ${r.processServer.address}?`,
            );
          }
          await sleep(POLL_MS, s.signal);
        }
        return { message: `the agent streams to process server ${r.processServer.name}` };
      },
    },
    {
      name: 'initial replication',
      weight: 8,
      resumable: true,
      async run(s) {
        const r = await rows(s);
        await setItem(s.ctx.db, r.item.id, { state: 'initial-replication' }, s.ctx.now());
        await followFirstCopy(s, { doing: 'copying the disks' });
        return { message: 'the initial copy has ended: recovery points are taken from now on' };
      },
    },
    {
      name: 'protected',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const st = replicaStatus(s.ctx, r.masterTarget, r.machine);
        await setItem(
          s.ctx.db,
          r.item.id,
          { state: 'protected', progress_pct: 100, rpo_seconds: st?.rpoSeconds ?? null, health_json: '[]' },
          s.ctx.now(),
        );
        return { message: `machine '${r.machine.name}' is protected` };
      },
    },
  ],
  async finish(ctx: ServerContext, job: Job, outcome: JobOutcome) {
    if (outcome.state !== 'Failed' && outcome.state !== 'Cancelled') return;
    const { itemId } = JSON.parse(job.params_json) as EnableParams;
    const problem =
      outcome.state === 'Failed'
        ? { code: 'enable-failed', message: `enabling replication failed: ${outcome.error}` }
        : { code: 'enable-cancelled', message: 'enabling replication was cancelled' };
    await setItem(ctx.db, itemId, { state: 'failed', health_json: JSON.stringify([problem]) }, ctx.now());
  },
};
