// Failover (`rebound failover ITEM`): the machine is brought up at the recovery site from a
// recovery point. Planned: the source is shut down first and replication drained, so nothing
// is lost. Unplanned: the point is latest (what the process server still holds is applied
// first), latest-processed (what is applied now), latest-app, a point id or a time.
//   [shut down the source -> drain] -> choose the point -> roll the replica back ->
//   create the recovered machine -> its agent -> power on.
// The master target's rollback costs only the journal after the point, so the time to the
// recovered machine's boot does not grow with the disk size.
import { join } from 'node:path';
import { resolvePoint } from '../../master-target/point-spec.js';
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';
import { builtinProcessServer, dataPlaneId } from '../items/data-plane.js';
import { type ItemRows, loadItem, setItem } from '../items/item-rows.js';
import {
  type JobDefinition,
  type JobOutcome,
  type StepContext,
  type StepDefinition,
  sleep,
} from '../jobs/definitions.js';
import {
  agentBookmark,
  isManual,
  machineSite,
  machineSpec,
  siteById,
  siteMachine,
  waitRegistered,
} from './machine-ops.js';
import { recoveryMt } from './mt-ops.js';
import { type FailoverRecord, notReady, parseFailover } from './recovery-records.js';
import { adapterFor, agentRegistration, siteDir } from './site-registry.js';

export const FAILOVER = 'failover';
/** The point of a replication group's member: its seq of the group's common point (plan-job.ts). */
export const GROUP_POINT = 'group-common-point';

export interface FailoverParams {
  itemId: string;
  planned: boolean;
  /** latest | latest-processed | latest-app | a point id | an ISO time (unplanned). */
  point: string;
  recoverySiteId: string;
  recoveredName: string;
  /** The source's site is physical: its shutdown is a manual step. */
  sourceManual: boolean;
  /** The recovery site is physical: bringing the machine up is manual. */
  recoveryManual: boolean;
}

const DRAIN_TIMEOUT_MS = 10 * 60_000;
const SHUTDOWN_TIMEOUT_MS = 120_000;

async function rows(s: StepContext<FailoverParams>): Promise<ItemRows> {
  const r = await loadItem(s.ctx.db, s.params.itemId);
  if (!r) throw new Error(`item ${s.params.itemId} no longer exists`);
  return r;
}

async function saveRecord(s: StepContext<FailoverParams>, r: ItemRows, patch: Partial<FailoverRecord>) {
  const prev = parseFailover(r.item.failover_json);
  const rec: FailoverRecord = {
    point: 0,
    pointTime: null,
    planned: s.params.planned,
    failback: false,
    recoveredName: s.params.recoveredName,
    disks: null,
    committed: false,
    at: s.ctx.now(),
    ...prev,
    ...patch,
  };
  await setItem(s.ctx.db, r.item.id, { failover_json: JSON.stringify(rec) }, s.ctx.now());
  return rec;
}

/** Waits until the master target applied through seq. */
export async function waitApplied(
  s: StepContext<unknown>,
  mt: ReturnType<typeof recoveryMt>,
  machineId: string,
  seq: number,
  what: string,
  timeoutMs = DRAIN_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const applied = mt.snapshot(machineId)?.appliedThrough ?? 0;
    if (applied >= seq) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: the master target applied through seq ${applied} but not ${seq} within ${timeoutMs / 1000} s`,
      );
    }
    await s.message(`${what}: applied through seq ${applied} of ${seq}`);
    await sleep(300, s.signal);
  }
}

function sourceSteps(p: FailoverParams): StepDefinition<FailoverParams>[] {
  if (!p.planned) return [];
  const shutdown: StepDefinition<FailoverParams> = p.sourceManual
    ? {
        name: 'shut down the source machine',
        confirmation: () => 'Shut the source machine down cleanly (its agent flushes its log), then confirm',
      }
    : {
        name: 'shut down the source machine',
        resumable: true,
        async run(s) {
          const r = await rows(s);
          const at = await machineSite(s.ctx, r.machine);
          const how = await at.adapter.shutdown(r.machine.name, { timeoutMs: SHUTDOWN_TIMEOUT_MS });
          if (isManual(how))
            throw new Error(`site '${at.site.name}' asks for a manual shutdown: ${how.manual}`);
          if (how === 'forced') {
            return {
              warning: `'${r.machine.name}' did not shut down within ${SHUTDOWN_TIMEOUT_MS / 1000} s and was stopped: what it had not flushed is lost`,
            };
          }
          return {
            message:
              how === 'was-off' ? `'${r.machine.name}' was off` : `'${r.machine.name}' shut down cleanly`,
          };
        },
      };
  return [
    shutdown,
    {
      name: 'drain replication',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const mt = recoveryMt(s.ctx, r.masterTarget);
        const id = dataPlaneId(r.machine);
        let seq = parseFailover(r.item.failover_json)?.point || 0;
        if (!seq) {
          const at = await machineSite(s.ctx, r.machine);
          const m = await siteMachine(at, r.machine.name);
          seq = m.agent?.running
            ? await agentBookmark(m, 'planned-failover')
            : await latestKnown(s.ctx, r, mt);
          await saveRecord(s, r, { point: seq });
        }
        await waitApplied(s, mt, id, seq, 'draining');
        return { message: `everything through seq ${seq} is applied at the master target: nothing is lost` };
      },
    },
  ];
}

/** Without a local agent: what the process server holds for the machine, applied. */
export async function latestKnown(
  ctx: ServerContext,
  r: ItemRows,
  mt: ReturnType<typeof recoveryMt>,
): Promise<number> {
  const ps = builtinProcessServer(ctx, r.processServer);
  const cached = ps?.status().find((m) => m.machineId === dataPlaneId(r.machine))?.ackedThrough ?? 0;
  return Math.max(cached, mt.snapshot(dataPlaneId(r.machine))?.appliedThrough ?? 0);
}

function recoverySteps(p: FailoverParams): StepDefinition<FailoverParams>[] {
  if (p.recoveryManual) {
    return [
      {
        name: 'bring up the recovered machine',
        confirmation: (q) =>
          `Write the recovered disks (see the step 'roll the replica back to the point') to machine '${q.recoveredName}', ` +
          'install the Rebound agent on it, register it, boot it, then confirm',
      },
      {
        name: 'wait for its agent',
        resumable: true,
        async run(s) {
          const m = await waitRegistered(s.ctx, s.params.recoveredName, s.signal, 30 * 60_000);
          await adoptRecovered(s, m.id);
          return { message: `the agent of '${m.name}' registered` };
        },
      },
      finalStep(),
    ];
  }
  return [
    {
      name: 'create the recovered machine',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const rec = parseFailover(r.item.failover_json)!;
        const site = (await siteById(s.ctx, s.params.recoverySiteId))!;
        const adapter = await adapterFor(s.ctx, site);
        if (await adapter.get(s.params.recoveredName)) return { message: 'it exists already' };
        const source = await machineSpec(s.ctx, r.machine);
        await adapter.create({
          name: s.params.recoveredName,
          disks: (rec.disks ?? []).map((d) => ({ name: d.name, path: d.path, sizeBytes: d.size })),
          boot: source.boot,
          memoryMiB: source.memoryMiB,
          network: 'none',
          disksFrom: { kind: 'agent' },
        });
        return { message: `'${s.params.recoveredName}' at site '${site.name}'` };
      },
    },
    {
      name: 'install its agent',
      resumable: true,
      async run(s) {
        const site = (await siteById(s.ctx, s.params.recoverySiteId))!;
        // Its disks were just written by the master target: a log its agent kept from an
        // earlier cycle means nothing now (a new agent has none).
        await (await adapterFor(s.ctx, site)).startAgent(s.params.recoveredName, agentRegistration(s.ctx), {
          resetLog: true,
        });
        const m = await waitRegistered(s.ctx, s.params.recoveredName, s.signal);
        await adoptRecovered(s, m.id);
        return { message: `its agent registered as '${m.agent_name}'` };
      },
    },
    {
      name: 'power on the recovered machine',
      resumable: true,
      async run(s) {
        const site = (await siteById(s.ctx, s.params.recoverySiteId))!;
        const adapter = await adapterFor(s.ctx, site);
        const m = await adapter.get(s.params.recoveredName);
        if (m?.powerState !== 'running')
          await adapter.powerOn(s.params.recoveredName, { disksFrom: { kind: 'agent' } });
        return { message: `'${s.params.recoveredName}' is running at site '${site.name}'` };
      },
    },
    finalStep(),
  ];
}

/** The recovered machine's row says where it is and that a failover of this item made it (S26). */
async function adoptRecovered(s: StepContext<FailoverParams>, machineId: string): Promise<void> {
  const r = await rows(s);
  await s.ctx.db
    .updateTable('machines')
    .set({ site_id: s.params.recoverySiteId, created_by_failover_of: r.item.id, os_type: r.machine.os_type })
    .where('id', '=', machineId)
    .execute();
  await setItem(s.ctx.db, r.item.id, { partner_machine_id: machineId }, s.ctx.now());
}

function finalStep(): StepDefinition<FailoverParams> {
  return {
    name: 'failed over',
    resumable: true,
    async run(s) {
      const r = await rows(s);
      await setItem(s.ctx.db, r.item.id, { state: 'failed-over', health_json: '[]' }, s.ctx.now());
      return { message: `commit with 'rebound commit ${r.machine.name}', then reprotect` };
    },
  };
}

export const failoverJob: JobDefinition<FailoverParams> = {
  kind: FAILOVER,
  steps: (p) => [
    {
      name: 'check the item',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const problem = notReady(r.machine.name, r.item, 'fails over', ['failing-over']);
        if (problem) throw new Error(problem);
        if (r.item.state === 'protected') {
          await setItem(
            s.ctx.db,
            r.item.id,
            { state: 'failing-over', failover_json: null, recovery_site_id: s.params.recoverySiteId },
            s.ctx.now(),
          );
        }
        return { message: `${s.params.planned ? 'planned' : 'unplanned'} failover of '${r.machine.name}'` };
      },
    },
    ...sourceSteps(p),
    {
      name: 'choose the recovery point',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const mt = recoveryMt(s.ctx, r.masterTarget);
        const id = dataPlaneId(r.machine);
        const replica = mt.replica(id);
        if (!replica)
          throw new Error(`master target '${r.masterTarget.name}' holds no replica of '${r.machine.name}'`);
        let point = parseFailover(r.item.failover_json)?.point || 0;
        if (!s.params.planned && s.params.point === GROUP_POINT) {
          // Chosen for the whole replication group by the plan's common-point step.
          if (!point)
            throw new Error(`the common point of '${r.machine.name}'s replication group was not chosen`);
        } else if (!s.params.planned) {
          if (s.params.point === 'latest') {
            // What the process server already holds is applied first (bounded: it may be cut off).
            const held = await latestKnown(s.ctx, r, mt);
            await waitApplied(s, mt, id, held, 'applying what the process server holds', 60_000).catch(
              () => undefined,
            );
          }
          const spec = s.params.point === 'latest-processed' ? 'latest' : s.params.point;
          point = resolvePoint(spec, replica);
        }
        const time = replica.recoveryPoints().find((x) => x.seq === point)?.time;
        await saveRecord(s, r, { point, pointTime: time ? new Date(time).toISOString() : null });
        return { message: `point ${point}${time ? ` (${new Date(time).toISOString()})` : ''}` };
      },
    },
    {
      name: 'roll the replica back to the point',
      resumable: true,
      async run(s) {
        const r = await rows(s);
        const rec = parseFailover(r.item.failover_json)!;
        if (rec.disks) return { message: 'done already' };
        const mt = recoveryMt(s.ctx, r.masterTarget);
        const site = (await siteById(s.ctx, s.params.recoverySiteId))!;
        const moveTo = join(siteDir(s.ctx, site), 'disks', s.params.recoveredName);
        const done = await mt.failover(dataPlaneId(r.machine), rec.point, { moveTo });
        await saveRecord(s, r, { disks: done.disks });
        return { message: `the replica is at point ${done.point}; its disks are in ${moveTo}` };
      },
    },
    ...recoverySteps(p),
  ],
  async finish(ctx: ServerContext, job: Job, outcome: JobOutcome) {
    if (outcome.state !== 'Failed' && outcome.state !== 'Cancelled') return;
    const { itemId } = JSON.parse(job.params_json) as FailoverParams;
    const r = await loadItem(ctx.db, itemId);
    if (!r) return;
    const rec = parseFailover(r.item.failover_json);
    if (!rec?.disks) {
      // Nothing was handed over: the replica is as it was, replication goes on.
      await setItem(ctx.db, itemId, { state: 'protected', failover_json: null }, ctx.now());
      return;
    }
    const problem = {
      code: 'failover-failed',
      message: `the failover stopped after the replica was rolled back to point ${rec.point}: ${outcome.error ?? 'cancelled'}; run it again to finish`,
    };
    await setItem(
      ctx.db,
      itemId,
      { state: 'failing-over', health_json: JSON.stringify([problem]) },
      ctx.now(),
    );
  },
};
