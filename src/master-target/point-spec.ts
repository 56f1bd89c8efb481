// Which point an operator means: `latest`, `latest-app`, a recovery point's id (its
// sequence number) or an ISO-8601 time (the last change at or before it). Pure.
import type { RecoveryPoint } from './replica.js';

export interface PointSource {
  appliedThrough: number;
  oldestPoint: number;
  recoveryPoints(): RecoveryPoint[];
  pointAtTime(ms: number): number | undefined;
  /** Why a seq is not a consistent point (inside a resync), or undefined. */
  pointProblem?(seq: number): string | undefined;
}

/** The seq an operator's point names; refused when the replica was not consistent there. */
export function resolvePoint(spec: string, r: PointSource): number {
  const seq = resolveSpec(spec, r);
  const problem = r.pointProblem?.(seq);
  if (problem) throw new Error(problem);
  return seq;
}

function resolveSpec(spec: string, r: PointSource): number {
  if (spec === 'latest') return r.appliedThrough;
  if (spec === 'latest-app') {
    const app = r.recoveryPoints().filter((p) => p.kind === 'app');
    const last = app.at(-1);
    if (!last) throw new Error('no app-consistent point yet');
    return last.seq;
  }
  if (/^\d+$/.test(spec)) {
    const seq = Number(spec);
    if (!r.recoveryPoints().some((p) => p.seq === seq)) {
      throw new Error(`no recovery point ${seq} (list them with 'rebound master-target points')`);
    }
    return seq;
  }
  const ms = Date.parse(spec);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(spec) || Number.isNaN(ms)) {
    throw new Error(
      `point '${spec}' is not latest, latest-app, a recovery point id or an ISO time (2026-11-23T08:00:00Z)`,
    );
  }
  const seq = r.pointAtTime(ms);
  if (seq === undefined || seq < r.oldestPoint) {
    throw new Error(`no point at or before ${new Date(ms).toISOString()} is retained`);
  }
  return seq;
}
