// Failback (`rebound failback ITEM`, S27): a planned failover from the recovery site back to
// the original machine. The recovered machine shuts down, replication drains (nothing is
// lost), the master target hands the original disks back at that point, and the original
// machine boots on them with a fresh agent log (its disks were rewritten behind its agent).
// Then `rebound reprotect ITEM` replicates to the recovery site again.
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';
import { builtinProcessServer, dataPlaneId } from '../items/data-plane.js';
import { type ItemRows, loadItem, setItem } from '../items/item-rows.js';
import type { JobDefinition, JobOutcome, StepContext } from '../jobs/definitions.js';
import { waitApplied } from './failover-job.js';
import { agentBookmark, isManual, machineById, machineSite, siteMachine } from './machine-ops.js';
import { recoveryMt } from './mt-ops.js';
import { type FailoverRecord, parseFailover } from './recovery-records.js';
import { agentRegistration } from './site-registry.js';

export const FAILBACK = 'failback';

export interface FailbackParams {
  itemId: string;
  /** The original machine the item fails back to (the item's partner). */
  originalId: string;
}

const SHUTDOWN_TIMEOUT_MS = 120_000;

async function rows(s: StepContext<FailbackParams>): Promise<ItemRows> {
  const r = await loadItem(s.ctx.db, s.params.itemId);
  if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
  return r;
}

async function original(s: StepContext<FailbackParams>) {
  const m = await machineById(s.ctx, s.params.originalId);
  if (!m)
    throw new Error(`the original machine ${s.params.originalId} no longer exists: failback is impossible`);
  return { machine: m, at: await machineSite(s.ctx, m) };
}

async function record(s: StepContext<FailbackParams>, r: ItemRows, patch: Partial<FailoverRecord>) {
  const prev = parseFailover(r.item.failover_json);
  const rec = { ...prev, ...patch };
  await setItem(s.ctx.db, r.item.id, { failover_json: JSON.stringify(rec) }, s.ctx.now());
}

export const failbackJob: JobDefinition<FailbackParams> = {
  kind: FAILBACK,
  steps: () => [
    {
      name: 'shut down the recovered machine',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        if (r.item.state !== 'protected' && r.item.state !== 'failing-back') {
          throw new Error(
            `machine '${r.machine.name}' is ${r.item.state}: only a protected machine fails back`,
          );
        }
        if (r.item.state === 'protected') {
          await setItem(s.ctx.db, r.item.id, { state: 'failing-back' }, s.ctx.now());
          await record(s, r, {
            point: 0,
            pointTime: null,
            planned: true,
            failback: true,
            recoveredName: r.machine.name,
            disks: null,
            committed: false,
            at: s.ctx.now(),
          });
        }
        const at = await machineSite(s.ctx, r.machine);
        const how = await at.adapter.shutdown(r.machine.name, { timeoutMs: SHUTDOWN_TIMEOUT_MS });
        if (isManual(how)) throw new Error(how.manual);
        if (how === 'forced') {
          return { warning: `'${r.machine.name}' did not shut down cleanly and was stopped` };
        }
        return { message: `'${r.machine.name}' is off` };
      },
    },
    {
      name: 'drain replication',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const mt = recoveryMt(s.ctx, r.masterTarget);
        let seq = parseFailover(r.item.failover_json)?.point || 0;
        if (!seq) {
          const m = await siteMachine(await machineSite(s.ctx, r.machine), r.machine.name);
          seq = await agentBookmark(m, 'failback');
          await record(s, r, { point: seq });
        }
        await waitApplied(s, mt, dataPlaneId(r.machine), seq, 'draining');
        return { message: `everything through seq ${seq} is on the original disks: nothing is lost` };
      },
    },
    {
      name: 'hand the original disks back',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const rec = parseFailover(r.item.failover_json)!;
        const mt = recoveryMt(s.ctx, r.masterTarget);
        const id = dataPlaneId(r.machine);
        if (mt.replica(id)) {
          await mt.failover(id, rec.point);
          await mt.release(id);
        }
        await builtinProcessServer(s.ctx, r.processServer)?.removeMachine(id);
        const at = await machineSite(s.ctx, r.machine);
        await at.adapter.stopAgent(r.machine.name);
        return { message: `the original disks hold point ${rec.point}` };
      },
    },
    {
      name: 'start the original machine',
      resumable: true,
      async run(s) {
        const { machine, at } = await original(s);
        await at.adapter.releaseHold(machine.name);
        // Its disks were written by the master target: its old change log means nothing now.
        await at.adapter.startAgent(machine.name, agentRegistration(s.ctx), { resetLog: true });
        const m = await at.adapter.get(machine.name);
        if (m?.powerState !== 'running') {
          const r = await at.adapter.powerOn(machine.name, { disksFrom: { kind: 'agent' } });
          if (isManual(r)) return { warning: r.manual };
        }
        return { message: `'${machine.name}' runs at site '${at.site.name}' on its own disks` };
      },
    },
    {
      name: 'failed back',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const rec = parseFailover(r.item.failover_json)!;
        await record(s, r, { committed: true });
        await setItem(
          s.ctx.db,
          r.item.id,
          { state: 'failed-back', rpo_seconds: null, health_json: '[]' },
          s.ctx.now(),
        );
        const { machine } = await original(s);
        return {
          message: `'${machine.name}' is back at point ${rec.point}: run 'rebound reprotect ${machine.name}' to protect it again`,
        };
      },
    },
  ],
  async finish(ctx: ServerContext, job: Job, outcome: JobOutcome) {
    if (outcome.state !== 'Failed' && outcome.state !== 'Cancelled') return;
    const p = JSON.parse(job.params_json) as FailbackParams;
    const problem = {
      code: 'failback-failed',
      message: `failback did not complete: ${outcome.error ?? 'cancelled'}`,
    };
    await setItem(ctx.db, p.itemId, { health_json: JSON.stringify([problem]) }, ctx.now());
  },
};
