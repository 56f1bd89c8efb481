// Background service: every few seconds, each item's RPO, health and state (protected <->
// resync-required) from the data plane, and the RPO-threshold alert raised or cleared by its
// policy's threshold.
import { clearAlert, raiseAlert } from '../alerts.js';
import type { BackgroundService } from '../background.js';
import type { ServerContext } from '../context.js';
import { periodicService } from '../periodic-service.js';
import { replicaStatus } from './data-plane.js';
import { assessItem, RPO_ALERT_KIND } from './item-health.js';

/** Item states the monitor refreshes (the others belong to the job acting on the item). */
const WATCHED = ['protected', 'resync-required'];

export async function refreshItems(ctx: ServerContext): Promise<void> {
  // One read for every watched item and what it refers to, one for the open RPO alerts: a
  // thousand healthy items cost two queries and no writes.
  const rows = await ctx.db
    .selectFrom('items')
    .innerJoin('machines', 'machines.id', 'items.machine_id')
    .innerJoin('policies', 'policies.id', 'items.policy_id')
    .innerJoin('master_targets', 'master_targets.id', 'items.master_target_id')
    .selectAll('items')
    .select([
      'machines.name as machine_name',
      'policies.name as policy_name',
      'policies.rpo_threshold_minutes as rpo_threshold_minutes',
      'master_targets.builtin as master_target_builtin',
    ])
    .where('items.state', 'in', WATCHED)
    .execute();
  const alerted = new Set(
    (
      await ctx.db
        .selectFrom('alerts')
        .select('subject_id')
        .where('kind', '=', RPO_ALERT_KIND)
        .where('cleared_at', 'is', null)
        .execute()
    ).map((a) => a.subject_id),
  );
  const changed: { id: string; state: string; rpoSeconds: number | null; health: string }[] = [];
  const alerts: (() => Promise<unknown>)[] = [];
  for (const item of rows) {
    const a = assessItem({
      state: item.state,
      machineName: item.machine_name,
      policyName: item.policy_name,
      rpoThresholdMinutes: item.rpo_threshold_minutes,
      status: replicaStatus(ctx, { builtin: item.master_target_builtin }, { id: item.machine_id }),
    });
    const health = JSON.stringify(a.health);
    if (a.state !== item.state || a.rpoSeconds !== item.rpo_seconds || health !== item.health_json) {
      changed.push({ id: item.id, state: a.state, rpoSeconds: a.rpoSeconds, health });
    }
    const message = a.rpoAlert;
    if (message) {
      alerts.push(() =>
        raiseAlert(ctx, { severity: 'warning', kind: RPO_ALERT_KIND, subjectId: item.id, message }),
      );
    } else if (alerted.has(item.id)) {
      alerts.push(() => clearAlert(ctx, RPO_ALERT_KIND, item.id));
    }
  }
  // One commit for every changed item: when a master target's health changes, all its items do,
  // and a commit each would hold the server for seconds.
  if (changed.length > 0) {
    const now = ctx.now();
    await ctx.db.transaction().execute(async (trx) => {
      for (const c of changed) {
        // Only while still watched: a job may have taken the item over meanwhile.
        await trx
          .updateTable('items')
          .set({ state: c.state, rpo_seconds: c.rpoSeconds, health_json: c.health, updated_at: now })
          .where('id', '=', c.id)
          .where('state', 'in', WATCHED)
          .execute();
      }
    });
  }
  for (const alert of alerts) await alert();
}

export async function startItemMonitor(ctx: ServerContext, intervalMs = 5000): Promise<BackgroundService> {
  return periodicService(ctx, 'item monitor', intervalMs, () => refreshItems(ctx));
}
