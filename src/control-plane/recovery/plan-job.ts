// A recovery plan's jobs (`rebound failover --plan P`, ...): one job that runs, group after
// group, the pre script, the steps of each machine's own job (failover, commit, ...) and the
// post script, then waits for the group's manual actions to be confirmed. Within a group the
// machines' steps go side by side, step name by step name: every source is shut down before
// any is drained, and a replication group's common point is chosen once every member has been
// checked and before any is rolled back.
import { runHook } from '../../agent/hook-runner.js';
import type { ServerContext } from '../context.js';
import type { Job } from '../db/schema.js';
import { dataPlaneId } from '../items/data-plane.js';
import { type ItemRows, loadItem, setItem } from '../items/item-rows.js';
import {
  isConfirmation,
  type JobDefinition,
  type JobOutcome,
  type StepContext,
  type StepDefinition,
} from '../jobs/definitions.js';
import { commitJob } from './commit-job.js';
import { failbackJob } from './failback-job.js';
import { type FailoverParams, failoverJob, latestKnown, waitApplied } from './failover-job.js';
import { commonPoint } from './group-points.js';
import { groupById } from './groups.js';
import { recoveryMt } from './mt-ops.js';
import { PLAN_JOB_PREFIX } from './plan-store.js';
import type { FailoverRecord, TestFailoverRecord } from './recovery-records.js';
import { reprotectJob } from './reprotect-job.js';
import { RECOVERY_OPERATIONS, type RecoveryOperation } from './requests.js';
import { cleanupTestFailoverJob, type TestFailoverParams, testFailoverJob } from './test-failover-job.js';

/** The item jobs a plan is made of, by kind. */
const MEMBER_JOBS: Record<string, JobDefinition<unknown>> = Object.fromEntries(
  [testFailoverJob, cleanupTestFailoverJob, failoverJob, commitJob, reprotectJob, failbackJob].map((d) => [
    d.kind,
    d as JobDefinition<unknown>,
  ]),
);

/** The member step before which a replication group's common point must be chosen. */
const COMMON_POINT_BEFORE: Partial<Record<RecoveryOperation, string>> = {
  failover: 'choose the recovery point',
  'test-failover': 'open a view of the point',
};

const SCRIPT_TIMEOUT_MS = 10 * 60_000;

export interface PlanMember {
  itemId: string;
  machineName: string;
  kind: string;
  params: unknown;
}

export interface PlanCommonPoint {
  groupId: string;
  groupName: string;
  itemIds: string[];
}

export interface PlanJobGroup {
  name: string;
  pre?: string;
  post?: string;
  manual: string[];
  members: PlanMember[];
  /** Replication groups whose members recover at one common point (unplanned failover, test). */
  common: PlanCommonPoint[];
}

export interface PlanJobParams {
  planId: string;
  planName: string;
  operation: RecoveryOperation;
  /** The point asked for: what the common points are chosen by. */
  point: string;
  groups: PlanJobGroup[];
}

const memberStepName = (step: string, m: PlanMember) => `${step} (${m.machineName})`;

/** The member's own steps, each under its own name and wrapped to run with the member's params. */
function memberSteps(m: PlanMember): { own: string; step: StepDefinition<PlanJobParams> }[] {
  const def = MEMBER_JOBS[m.kind];
  if (!def) throw new Error(`job kind '${m.kind}' cannot be part of a plan`);
  return def.steps(m.params).map((step) => {
    const name = memberStepName(step.name, m);
    if (isConfirmation(step)) {
      return {
        own: step.name,
        step: { name, weight: step.weight, confirmation: () => step.confirmation(m.params) },
      };
    }
    return {
      own: step.name,
      step: {
        name,
        weight: step.weight,
        resumable: step.resumable,
        run: (s) => step.run({ ...s, params: m.params } as StepContext<unknown>),
      },
    };
  });
}

function scriptStep(p: PlanJobParams, g: PlanJobGroup, phase: 'pre' | 'post'): StepDefinition<PlanJobParams> {
  const script = phase === 'pre' ? g.pre! : g.post!;
  return {
    name: `plan group ${g.name}: ${phase} script`,
    // A script may not be safe to run twice: after a restart in its middle the job fails, saying so.
    resumable: false,
    async run() {
      const r = await runHook(`the ${phase} script of plan group '${g.name}'`, script, SCRIPT_TIMEOUT_MS, {
        REBOUND_PLAN: p.planName,
        REBOUND_PLAN_GROUP: g.name,
        REBOUND_OPERATION: p.operation,
        REBOUND_PHASE: phase,
        REBOUND_MACHINES: g.members.map((m) => m.machineName).join(','),
      });
      if (!r.ok) throw new Error(r.reason);
      return { message: `exited 0 in ${(r.ms / 1000).toFixed(1)} s` };
    },
  };
}

function commonPointStep(
  p: PlanJobParams,
  g: PlanJobGroup,
  c: PlanCommonPoint,
): StepDefinition<PlanJobParams> {
  return {
    name: `replication group ${c.groupName}: choose the common point`,
    resumable: true,
    async run(s) {
      const group = await groupById(s.ctx, c.groupId);
      if (!group) throw new Error(`replication group '${c.groupName}' no longer exists`);
      const members: ItemRows[] = [];
      for (const id of c.itemIds) {
        const r = await loadItem(s.ctx.db, id);
        if (!r) throw new Error(`item ${id} no longer exists`);
        members.push(r);
      }
      if (p.point === 'latest') {
        // What the process server already holds is applied first (bounded: it may be cut off).
        for (const r of members) {
          const mt = recoveryMt(s.ctx, r.masterTarget);
          const held = await latestKnown(s.ctx, r, mt);
          await waitApplied(
            s,
            mt,
            dataPlaneId(r.machine),
            held,
            `applying what the process server holds for '${r.machine.name}'`,
            60_000,
          ).catch(() => undefined);
        }
      }
      const { point, seqs } = await commonPoint(s.ctx, group, members, p.point);
      for (const r of members) {
        const seq = seqs.get(r.item.id)!;
        const member = g.members.find((m) => m.itemId === r.item.id)!;
        if (p.operation === 'failover') {
          const rec: FailoverRecord = {
            point: seq,
            pointTime: point.taken_at,
            planned: false,
            failback: false,
            recoveredName: (member.params as FailoverParams).recoveredName,
            disks: null,
            committed: false,
            at: s.ctx.now(),
          };
          await setItem(s.ctx.db, r.item.id, { failover_json: JSON.stringify(rec) }, s.ctx.now());
        } else {
          const params = member.params as TestFailoverParams;
          const rec: TestFailoverRecord = {
            point: seq,
            viewId: null,
            machineName: params.machineName,
            siteId: params.siteId,
            startedAt: s.ctx.now(),
          };
          await setItem(s.ctx.db, r.item.id, { test_failover_json: JSON.stringify(rec) }, s.ctx.now());
        }
      }
      return {
        message:
          `the ${point.kind}-consistent point of ${point.taken_at}: ` +
          members.map((r) => `'${r.machine.name}' at seq ${seqs.get(r.item.id)}`).join(', '),
      };
    },
  };
}

/**
 * The operations that bring machines up run a group's scripts and manual actions; clean-up,
 * commit and reprotect only act on replication.
 */
const OPERATIONS_WITH_ACTIONS: readonly RecoveryOperation[] = ['test-failover', 'failover', 'failback'];

function groupSteps(p: PlanJobParams, g: PlanJobGroup): StepDefinition<PlanJobParams>[] {
  const steps: StepDefinition<PlanJobParams>[] = [];
  const actions = OPERATIONS_WITH_ACTIONS.includes(p.operation);
  if (actions && g.pre) steps.push(scriptStep(p, g, 'pre'));
  // Each machine's steps by the name of its job's step, in the order the names first appear.
  const byName = new Map<string, StepDefinition<PlanJobParams>[]>();
  for (const m of g.members) {
    for (const { own, step } of memberSteps(m)) byName.set(own, [...(byName.get(own) ?? []), step]);
  }
  const anchor = COMMON_POINT_BEFORE[p.operation];
  for (const [name, list] of byName) {
    if (name === anchor) for (const c of g.common) steps.push(commonPointStep(p, g, c));
    steps.push(...list);
  }
  if (!actions) return steps;
  if (g.post) steps.push(scriptStep(p, g, 'post'));
  g.manual.forEach((text, i) => {
    steps.push({ name: `plan group ${g.name}: manual action ${i + 1}`, confirmation: () => text });
  });
  return steps;
}

/** The job kind of a plan operation. */
export const planJobKind = (op: RecoveryOperation) => `${PLAN_JOB_PREFIX}${op}`;

function planJob(op: RecoveryOperation): JobDefinition<PlanJobParams> {
  return {
    kind: planJobKind(op),
    steps: (p) => p.groups.flatMap((g) => groupSteps(p, g)),
    async finish(ctx: ServerContext, job: Job, outcome: JobOutcome) {
      // Each machine's own job leaves its item consistent, for the machines the plan reached.
      const p = JSON.parse(job.params_json) as PlanJobParams;
      const started = await ctx.db
        .selectFrom('job_steps')
        .select('name')
        .where('job_id', '=', job.id)
        .where('started_at', 'is not', null)
        .execute();
      for (const g of p.groups) {
        for (const m of g.members) {
          const reached = started.some((x) => x.name.endsWith(` (${m.machineName})`));
          if (!reached) continue;
          await MEMBER_JOBS[m.kind]?.finish?.(
            ctx,
            { ...job, params_json: JSON.stringify(m.params) },
            outcome,
          );
        }
      }
    },
  };
}

export const PLAN_JOBS: JobDefinition<PlanJobParams>[] = RECOVERY_OPERATIONS.map(planJob);
