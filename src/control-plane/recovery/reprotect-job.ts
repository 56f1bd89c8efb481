// Reprotect (`rebound reprotect ITEM`): replication is reversed after a failover (recovered
// machine -> original site) or restored after a failback (original machine -> recovery site).
//   power off the target machine and keep it off (S21) -> its disks become the replica
//   (reused when they exist, S22: only differences move; else new disks on the datastore) ->
//   switch the item's direction -> the source's agent copies the differences -> protected.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { callAgent } from '../../agent/control-server.js';
import { createSparseFile } from '../../storage/sparse-file.js';
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';
import { dataPlaneId } from '../items/data-plane.js';
import { followFirstCopy } from '../items/first-copy.js';
import { type ItemRows, loadItem, setItem } from '../items/item-rows.js';
import type { JobDefinition, JobOutcome, StepContext, StepDefinition } from '../jobs/definitions.js';
import { agentDisks, isManual, machineById, machineSite, siteMachine } from './machine-ops.js';
import { type HandedDisk, recoveryMt } from './mt-ops.js';

export const REPROTECT = 'reprotect';

export interface ReprotectParams {
  itemId: string;
  /** The machine that replicates from now on, and the one whose disks become its replica. */
  sourceId: string;
  targetId: string;
  processServerId: string;
  masterTargetId: string;
  datastoreId: string;
  retentionVolumeId: string | null;
  policyId: string;
  direction: 'forward' | 'reverse';
  /** The state to go back to when the job fails before the switch. */
  previousState: string;
  targetManual: boolean;
}

const SHUTDOWN_TIMEOUT_MS = 120_000;
const COPY_TIMEOUT_MS = 60 * 60_000;

async function rows(s: StepContext<ReprotectParams>): Promise<ItemRows> {
  const r = await loadItem(s.ctx.db, s.params.itemId);
  if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
  return r;
}

async function machine(s: StepContext<ReprotectParams>, id: string) {
  const m = await machineById(s.ctx, id);
  if (!m) throw new Error(`machine ${id} no longer exists`);
  return m;
}

const holdReason = (p: ReprotectParams) => `reprotect of item ${p.itemId} is in progress (S21)`;

function powerOffStep(p: ReprotectParams): StepDefinition<ReprotectParams> {
  if (p.targetManual) {
    return {
      name: 'power off the target machine',
      confirmation: () =>
        'Power off the machine whose disks become the replica and keep it off until the reprotect completes (S21), then confirm',
    };
  }
  return {
    name: 'power off the target machine',
    resumable: true,
    async run(s) {
      const target = await machine(s, s.params.targetId);
      const at = await machineSite(s.ctx, target);
      await at.adapter.holdOff(target.name, holdReason(s.params));
      const how = await at.adapter.shutdown(target.name, { timeoutMs: SHUTDOWN_TIMEOUT_MS });
      if (isManual(how)) throw new Error(how.manual);
      await at.adapter.stopAgent(target.name);
      return {
        message: `'${target.name}' is ${how === 'was-off' ? 'off' : `shut down (${how})`} and kept off`,
      };
    },
  };
}

export const reprotectJob: JobDefinition<ReprotectParams> = {
  kind: REPROTECT,
  steps: (p) => [
    powerOffStep(p),
    {
      name: 'prepare the replica disks',
      resumable: true,
      async run(s) {
        const source = await machine(s, s.params.sourceId);
        const target = await machine(s, s.params.targetId);
        const srcDisks = await agentDisks(await siteMachine(await machineSite(s.ctx, source), source.name));
        const tgt = await machineSite(s.ctx, target).then((at) => at.adapter.get(target.name));
        const ds = await s.ctx.db
          .selectFrom('datastores')
          .selectAll()
          .where('id', '=', s.params.datastoreId)
          .executeTakeFirstOrThrow();
        const mt = recoveryMt(s.ctx, await mtRow(s));
        if (mt.replica(dataPlaneId(source))) return { message: 'the replica is prepared already' };
        let reused = 0;
        const disks: HandedDisk[] = [];
        for (const [i, d] of srcDisks.entries()) {
          const own = tgt?.disks.find((x) => x.name === d.name) ?? tgt?.disks[i];
          if (own && existsSync(own.path)) {
            reused++;
            disks.push({ ...d, path: own.path });
          } else {
            // S22: the target's disks are gone: new ones on the datastore.
            const path = join(ds.path, target.name, `${d.name}.img`);
            await createSparseFile(path, d.size);
            disks.push({ ...d, path });
          }
        }
        await mt.adopt(dataPlaneId(source), disks);
        const made = disks.length - reused;
        return {
          message:
            `${reused} existing disk${reused === 1 ? '' : 's'} of '${target.name}' reused (only differences move)` +
            (made ? `, ${made} new on datastore '${ds.name}'` : ''),
        };
      },
    },
    {
      name: 'reverse the direction',
      resumable: true,
      async run(s) {
        const p = s.params;
        // The item follows its source machine (items.machine_id): the agent's heartbeat answers find it.
        await s.ctx.db
          .updateTable('items')
          .set({
            machine_id: p.sourceId,
            partner_machine_id: p.targetId,
            policy_id: p.policyId,
            process_server_id: p.processServerId,
            master_target_id: p.masterTargetId,
            datastore_id: p.datastoreId,
            retention_volume_id: p.retentionVolumeId,
            direction: p.direction,
            state: 'reprotecting',
            progress_pct: 0,
            rpo_seconds: null,
            health_json: '[]',
            updated_at: s.ctx.now(),
          })
          .where('id', '=', p.itemId)
          .execute();
        const source = await machine(s, p.sourceId);
        return {
          message: `'${source.name}' replicates ${p.direction === 'reverse' ? 'back to the original site' : 'to the recovery site'}`,
        };
      },
    },
    {
      name: 'copy the differences',
      weight: 6,
      resumable: true,
      async run(s) {
        await followFirstCopy(s, { doing: 'comparing and copying the disks', timeoutMs: COPY_TIMEOUT_MS });
        const r = await rows(s);
        const source = await siteMachine(await machineSite(s.ctx, r.machine), r.machine.name).catch(
          () => undefined,
        );
        const sent = source ? await sentBytes(source.agent?.dataDir) : undefined;
        return {
          message:
            sent === undefined
              ? 'the replica is consistent'
              : `only the differences moved: ${sent} bytes sent`,
        };
      },
    },
    {
      name: 'protected',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        await setItem(s.ctx.db, r.item.id, { state: 'protected', progress_pct: 100 }, s.ctx.now());
        const target = await machine(s, s.params.targetId);
        if (!s.params.targetManual) {
          const at = await machineSite(s.ctx, target);
          await at.adapter.releaseHold(target.name);
        }
        return { message: `'${r.machine.name}' is protected; '${target.name}' stays off` };
      },
    },
  ],
  async finish(ctx: ServerContext, job: Job, outcome: JobOutcome) {
    if (outcome.state !== 'Failed' && outcome.state !== 'Cancelled') return;
    const p = JSON.parse(job.params_json) as ReprotectParams;
    const item = await ctx.db.selectFrom('items').selectAll().where('id', '=', p.itemId).executeTakeFirst();
    if (!item) return;
    const problem = {
      code: 'reprotect-failed',
      message: `reprotect did not complete: ${outcome.error ?? 'cancelled'}`,
    };
    // Before the switch nothing changed direction: the item is as it was.
    const state = item.state === 'reprotecting' ? 'resync-required' : p.previousState;
    await setItem(ctx.db, p.itemId, { state, health_json: JSON.stringify([problem]) }, ctx.now());
  },
};

async function mtRow(s: StepContext<ReprotectParams>) {
  return s.ctx.db
    .selectFrom('master_targets')
    .selectAll()
    .where('id', '=', s.params.masterTargetId)
    .executeTakeFirstOrThrow();
}

/** What the agent's copy sent, as its control API reports it. */
async function sentBytes(dataDir: string | undefined): Promise<number | undefined> {
  if (!dataDir) return undefined;
  const r = await callAgent(dataDir, 'GET', '/status').catch(() => undefined);
  const resync = (r?.body.replication as { resync?: { sentBytes?: number } } | undefined)?.resync;
  return resync?.sentBytes;
}
