// Raising and clearing alerts. An alert is open until cleared; raising one that is already open
// (same kind, same subject) updates its message instead of opening a second.
import { randomUUID } from 'node:crypto';
import type { ServerContext } from './context.js';

export type Severity = 'critical' | 'warning' | 'info';

export interface AlertInput {
  severity: Severity;
  /** Stable name, e.g. 'heartbeat-missing', 'rpo-threshold-exceeded'. */
  kind: string;
  /** The machine, item or component it is about. */
  subjectId: string;
  message: string;
}

/** Opens the alert, or refreshes the open one of the same kind and subject. Returns its id. */
export async function raiseAlert(ctx: ServerContext, a: AlertInput): Promise<string> {
  const open = await ctx.db
    .selectFrom('alerts')
    .select('id')
    .where('kind', '=', a.kind)
    .where('subject_id', '=', a.subjectId)
    .where('cleared_at', 'is', null)
    .executeTakeFirst();
  if (open) {
    await ctx.db
      .updateTable('alerts')
      .set({ message: a.message, severity: a.severity })
      .where('id', '=', open.id)
      .execute();
    return open.id;
  }
  const id = randomUUID();
  await ctx.db
    .insertInto('alerts')
    .values({
      id,
      severity: a.severity,
      kind: a.kind,
      subject_id: a.subjectId,
      message: a.message,
      raised_at: ctx.now(),
      cleared_at: null,
    })
    .execute();
  ctx.logger.warn({ alert: a }, a.message);
  return id;
}

/** Clears the open alert of that kind and subject, if any. */
export async function clearAlert(ctx: ServerContext, kind: string, subjectId: string): Promise<void> {
  // Nearly always nothing is open: a read costs no commit, an empty UPDATE does.
  const open = await ctx.db
    .selectFrom('alerts')
    .select('id')
    .where('kind', '=', kind)
    .where('subject_id', '=', subjectId)
    .where('cleared_at', 'is', null)
    .executeTakeFirst();
  if (!open) return;
  await ctx.db
    .updateTable('alerts')
    .set({ cleared_at: ctx.now() })
    .where('kind', '=', kind)
    .where('subject_id', '=', subjectId)
    .where('cleared_at', 'is', null)
    .execute();
}
