// What a plan operation becomes: each machine's request built exactly as for the item alone
// (requests.ts), so any refusal of one machine refuses the plan and nothing is queued; plus
// the replication groups that recover at one common point.
import { badRequest, conflict } from '../api/errors.js';
import type { ServerContext } from '../context.js';
import type { Item } from '../db/schema.js';
import { withRows } from '../items/item-rows.js';
import { GROUP_POINT } from './failover-job.js';
import { groupById } from './groups.js';
import { machineById } from './machine-ops.js';
import type { PlanCommonPoint, PlanJobGroup, PlanJobParams } from './plan-job.js';
import { parsePlanGroups } from './plan-model.js';
import type { RecoveryPlan } from './plan-store.js';
import {
  cleanupTestFailoverRequest,
  commitRequest,
  type FailoverBody,
  failbackRequest,
  failoverRequest,
  type JobRequest,
  type RecoveryOperation,
  type ReprotectBody,
  reprotectRequest,
  type TestFailoverBody,
  testFailoverRequest,
} from './requests.js';

export interface PlanBody extends FailoverBody, TestFailoverBody {
  /** Reprotect: the values of every machine, by its name (or its partner's). */
  machines?: Record<string, ReprotectBody>;
}

export async function planJobParams(
  ctx: ServerContext,
  plan: RecoveryPlan,
  op: RecoveryOperation,
  body: PlanBody,
  refuseIfBusy: (item: Item, ref: string) => Promise<void>,
): Promise<PlanJobParams> {
  const point = body.point ?? 'latest';
  const common = op === 'test-failover' || (op === 'failover' && !body.planned);
  const planGroups = parsePlanGroups(plan.groups_json);
  const loaded: { group: string; item: Item; name: string; partner: string | undefined }[] = [];
  for (const g of planGroups) {
    for (const id of g.items) {
      const item = await ctx.db.selectFrom('items').selectAll().where('id', '=', id).executeTakeFirst();
      if (!item)
        throw conflict(
          `recovery plan '${plan.name}' names an item that no longer exists (${id}): recreate the plan`,
        );
      const r = await withRows(ctx.db, item);
      await refuseIfBusy(item, r.machine.name);
      loaded.push({
        group: g.name,
        item,
        name: r.machine.name,
        partner: (await machineById(ctx, item.partner_machine_id))?.name,
      });
    }
  }
  if (op === 'reprotect') {
    const values = body.machines ?? {};
    const missing = loaded.filter((l) => !values[l.name] && !(l.partner && values[l.partner]));
    if (missing.length > 0) {
      throw badRequest(
        `reprotect of recovery plan '${plan.name}' needs values for every machine: none given for ${missing.map((m) => `'${m.name}'`).join(', ')}`,
      );
    }
    const known = new Set(loaded.flatMap((l) => [l.name, ...(l.partner ? [l.partner] : [])]));
    const stranger = Object.keys(values).find((k) => !known.has(k));
    if (stranger) throw badRequest(`machine '${stranger}' is not in recovery plan '${plan.name}'`);
  }
  const grouped = common && loaded.some((l) => l.item.group_id);
  if (grouped && /^\d+$/.test(point)) {
    throw badRequest(
      `recovery plan '${plan.name}' has replication groups, which recover at a common point: choose latest, latest-processed, latest-app or a time, not point ${point}`,
    );
  }
  const groups: PlanJobGroup[] = [];
  for (const g of planGroups) {
    const members = loaded.filter((l) => l.group === g.name);
    const commonPoints = new Map<string, PlanCommonPoint>();
    const out: PlanJobGroup = {
      name: g.name,
      pre: g.pre,
      post: g.post,
      manual: g.manual,
      members: [],
      common: [],
    };
    for (const l of members) {
      const inGroup = common && l.item.group_id ? l.item.group_id : undefined;
      let req: JobRequest;
      if (op === 'test-failover') req = await testFailoverRequest(ctx, l.item, { site: body.site, point });
      else if (op === 'cleanup-test-failover') req = await cleanupTestFailoverRequest(ctx, l.item);
      else if (op === 'failover') {
        req = await failoverRequest(ctx, l.item, {
          planned: body.planned,
          point: body.planned ? undefined : point,
          site: body.site,
        });
      } else if (op === 'commit') req = await commitRequest(ctx, l.item);
      else if (op === 'reprotect') {
        const values = body.machines?.[l.name] ?? (l.partner ? body.machines?.[l.partner] : undefined) ?? {};
        req = await reprotectRequest(ctx, l.item, { ...values, viaPlan: true });
      } else req = await failbackRequest(ctx, l.item);
      if (inGroup) {
        (req.params as { point: string }).point = GROUP_POINT;
        const c = commonPoints.get(inGroup) ?? {
          groupId: inGroup,
          groupName: (await groupById(ctx, inGroup))?.name ?? inGroup,
          itemIds: [],
        };
        c.itemIds.push(l.item.id);
        commonPoints.set(inGroup, c);
      }
      out.members.push({ itemId: l.item.id, machineName: l.name, kind: req.kind, params: req.params });
    }
    out.common = [...commonPoints.values()];
    groups.push(out);
  }
  return { planId: plan.id, planName: plan.name, operation: op, point, groups };
}
