// Background service: every few seconds, each item's RPO, health and state (protected <->
// resync-required) from the data plane, and the RPO-threshold alert raised or cleared by its
// policy's threshold.
import { clearAlert, raiseAlert } from '../alerts.js';
import type { BackgroundService } from '../background.js';
import type { ServerContext } from '../context.js';
import { replicaStatus } from './data-plane.js';
import { assessItem, RPO_ALERT_KIND } from './item-health.js';
import { withRows } from './item-rows.js';

/** Item states the monitor refreshes (the others belong to the job acting on the item). */
const WATCHED = ['protected', 'resync-required'];

export async function refreshItems(ctx: ServerContext): Promise<void> {
  const items = await ctx.db.selectFrom('items').selectAll().where('state', 'in', WATCHED).execute();
  for (const item of items) {
    const r = await withRows(ctx.db, item);
    const a = assessItem({
      state: item.state,
      machineName: r.machine.name,
      policyName: r.policy.name,
      rpoThresholdMinutes: r.policy.rpo_threshold_minutes,
      status: replicaStatus(ctx, r.masterTarget, r.machine),
    });
    const health = JSON.stringify(a.health);
    if (a.state !== item.state || a.rpoSeconds !== item.rpo_seconds || health !== item.health_json) {
      // Only while still watched: a job may have taken the item over meanwhile.
      await ctx.db
        .updateTable('items')
        .set({ state: a.state, rpo_seconds: a.rpoSeconds, health_json: health, updated_at: ctx.now() })
        .where('id', '=', item.id)
        .where('state', 'in', WATCHED)
        .execute();
    }
    if (a.rpoAlert) {
      await raiseAlert(ctx, {
        severity: 'warning',
        kind: RPO_ALERT_KIND,
        subjectId: item.id,
        message: a.rpoAlert,
      });
    } else {
      await clearAlert(ctx, RPO_ALERT_KIND, item.id);
    }
  }
}

export async function startItemMonitor(ctx: ServerContext, intervalMs = 5000): Promise<BackgroundService> {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = refreshItems(ctx)
      .catch((e) => ctx.logger.error({ err: e }, 'item monitor: refresh failed'))
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  return {
    name: 'item monitor',
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
