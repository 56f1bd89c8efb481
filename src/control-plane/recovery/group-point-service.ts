// Background service: takes each replication group's common points at its policies'
// frequencies (the shortest of its members': crash-consistent bookmark and app-consistent
// minutes; 0 is off), while every member is protected. A failure raises a warning alert on
// the group, cleared by the next success.
import { clearAlert, raiseAlert } from '../alerts.js';
import type { BackgroundService } from '../background.js';
import type { ServerContext } from '../context.js';
import { periodicService } from '../periodic-service.js';
import { takeGroupPoint } from './group-points.js';
import { groupMembers } from './groups.js';

export const GROUP_POINT_ALERT = 'group-point-failed';
const CHECK_MS = 15_000;

async function due(
  ctx: ServerContext,
  groupId: string,
  kind: 'crash' | 'app',
  minutes: number,
): Promise<boolean> {
  if (!(minutes > 0)) return false;
  const last = await ctx.db
    .selectFrom('group_points')
    .select('taken_at')
    .where('group_id', '=', groupId)
    .where('kind', '=', kind)
    .orderBy('taken_at', 'desc')
    .executeTakeFirst();
  return !last || Date.parse(ctx.now()) - Date.parse(last.taken_at) >= minutes * 60_000;
}

export async function takeDueGroupPoints(ctx: ServerContext): Promise<void> {
  for (const g of await ctx.db.selectFrom('replication_groups').selectAll().execute()) {
    const members = await groupMembers(ctx, g.id);
    if (members.length === 0 || members.some((r) => r.item.state !== 'protected')) continue;
    const every = (k: 'crash_consistent_minutes' | 'app_consistent_minutes') =>
      Math.min(...members.map((r) => r.policy[k]));
    for (const kind of ['app', 'crash'] as const) {
      if (
        !(await due(
          ctx,
          g.id,
          kind,
          every(kind === 'app' ? 'app_consistent_minutes' : 'crash_consistent_minutes'),
        ))
      )
        continue;
      try {
        await takeGroupPoint(ctx, g, kind);
        await clearAlert(ctx, GROUP_POINT_ALERT, g.id);
      } catch (e) {
        await raiseAlert(ctx, {
          severity: 'warning',
          kind: GROUP_POINT_ALERT,
          subjectId: g.id,
          message: `replication group '${g.name}': no ${kind}-consistent common point: ${(e as Error).message}`,
        });
      }
    }
  }
}

export async function startGroupPoints(
  ctx: ServerContext,
  intervalMs = CHECK_MS,
): Promise<BackgroundService> {
  return periodicService(ctx, 'group points', intervalMs, () => takeDueGroupPoints(ctx));
}
