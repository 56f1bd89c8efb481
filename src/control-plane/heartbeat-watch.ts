// Background service: a component silent for longer than the threshold (15 min by default,
// `rebound server start --heartbeat-alert-minutes`) gets a critical `heartbeat-missing` alert,
// cleared when it heartbeats again (here or at once by the heartbeat route). A component that
// registered and never heartbeated counts from its registration. The built-in process server and
// master target run inside the server: their liveness is the server's own.
import { clearAlert, raiseAlert } from './alerts.js';
import type { BackgroundService } from './background.js';
import type { ServerContext } from './context.js';
import { DEFAULT_HEARTBEAT_ALERT_MINUTES } from './heartbeat-contract.js';
import { periodicService } from './periodic-service.js';

export const HEARTBEAT_MISSING = 'heartbeat-missing';

interface Watched {
  id: string;
  what: string;
  since: string;
  heard: boolean;
}

async function watched(ctx: ServerContext): Promise<Watched[]> {
  const out: Watched[] = [];
  const machines = await ctx.db
    .selectFrom('machines')
    .select(['id', 'name', 'agent_name', 'registered_at', 'last_heartbeat_at'])
    .where('agent_name', 'is not', null)
    .execute();
  for (const m of machines) {
    out.push({
      id: m.id,
      what: `agent '${m.agent_name}' of machine '${m.name}'`,
      since: m.last_heartbeat_at ?? m.registered_at ?? '',
      heard: m.last_heartbeat_at !== null,
    });
  }
  for (const [table, role] of [
    ['process_servers', 'process server'],
    ['master_targets', 'master target'],
  ] as const) {
    const rows = await ctx.db
      .selectFrom(table)
      .select(['id', 'name', 'registered_at', 'last_heartbeat_at'])
      .where('builtin', '=', 0)
      .execute();
    for (const r of rows) {
      out.push({
        id: r.id,
        what: `${role} '${r.name}'`,
        since: r.last_heartbeat_at ?? r.registered_at,
        heard: r.last_heartbeat_at !== null,
      });
    }
  }
  return out;
}

function minutesText(m: number): string {
  return m >= 1 && Number.isInteger(m) ? `${m} min` : `${Math.round(m * 60)} s`;
}

/** One pass: raise or clear the alert of every watched component. */
export async function checkHeartbeats(ctx: ServerContext, thresholdMinutes: number): Promise<void> {
  const cutoff = new Date(Date.parse(ctx.now()) - thresholdMinutes * 60_000).toISOString();
  // Only changes are written: one query finds the open alerts, so a sweep over a thousand
  // healthy components reads once and writes nothing.
  const open = new Set(
    (
      await ctx.db
        .selectFrom('alerts')
        .select('subject_id')
        .where('kind', '=', HEARTBEAT_MISSING)
        .where('cleared_at', 'is', null)
        .execute()
    ).map((a) => a.subject_id),
  );
  for (const w of await watched(ctx)) {
    if (w.since < cutoff) {
      if (open.has(w.id)) continue;
      await raiseAlert(ctx, {
        severity: 'critical',
        kind: HEARTBEAT_MISSING,
        subjectId: w.id,
        message:
          `${w.what} has sent no heartbeat for more than ${minutesText(thresholdMinutes)} ` +
          (w.heard ? `(last at ${w.since})` : `(none since it registered at ${w.since})`),
      });
    } else if (open.has(w.id)) {
      await clearAlert(ctx, HEARTBEAT_MISSING, w.id);
    }
  }
}

export async function startHeartbeatWatch(ctx: ServerContext): Promise<BackgroundService> {
  const minutes = ctx.heartbeatAlertMinutes ?? DEFAULT_HEARTBEAT_ALERT_MINUTES;
  // Often enough that an alert is at most a third of the threshold late; never busier than 2/s.
  const everyMs = Math.min(30_000, Math.max(500, (minutes * 60_000) / 3));
  return periodicService(ctx, 'heartbeat-watch', everyMs, () => checkHeartbeats(ctx, minutes));
}
