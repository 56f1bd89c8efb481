// Which recovery points `rebound master-target points` lists: every point of the last
// two hours, then fewer the older they are (one per 15 minutes up to a day, one per hour
// up to a week, then one per day), preferring app-consistent points. Thinning only
// shortens the list: every point stays viewable, and any second of the retention window
// can still be chosen by time. Pure.
import type { RecoveryPoint } from './replica.js';

export interface ThinTier {
  /** Points at least this old (ms, relative to now) fall in this tier... */
  fromAgeMs: number;
  /** ...and keep one point per bucket of this many ms (0: keep every point). */
  bucketMs: number;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The default tiers, youngest first. */
export const DEFAULT_THIN_TIERS: readonly ThinTier[] = [
  { fromAgeMs: 0, bucketMs: 0 },
  { fromAgeMs: 2 * HOUR, bucketMs: 15 * MINUTE },
  { fromAgeMs: DAY, bucketMs: HOUR },
  { fromAgeMs: 7 * DAY, bucketMs: DAY },
];

/**
 * The points to list, in their original (seq) order. Buckets are aligned to absolute
 * time (a point's bucket does not change from one listing to the next); in each bucket
 * the newest app-consistent point is kept, or the newest point when it has none. The
 * newest point and the newest app-consistent point are always kept. Points with a time
 * after `nowMs` (a source clock ahead of ours) count as young.
 */
export function thinPoints(
  points: readonly RecoveryPoint[],
  nowMs: number,
  tiers: readonly ThinTier[] = DEFAULT_THIN_TIERS,
): RecoveryPoint[] {
  const keep = new Set<RecoveryPoint>();
  const best = new Map<string, RecoveryPoint>();
  for (const p of points) {
    const age = nowMs - p.time;
    let tier = 0;
    for (let t = 0; t < tiers.length; t++) if (age >= tiers[t]!.fromAgeMs) tier = t;
    const { bucketMs } = tiers[tier]!;
    if (age < 0 || bucketMs <= 0) {
      keep.add(p);
      continue;
    }
    const key = `${tier}:${Math.floor(p.time / bucketMs)}`;
    const held = best.get(key);
    if (!held || better(p, held)) best.set(key, p);
  }
  for (const p of best.values()) keep.add(p);
  const newest = points.at(-1);
  if (newest) keep.add(newest);
  for (let i = points.length - 1; i >= 0; i--) {
    if (points[i]!.kind === 'app') {
      keep.add(points[i]!);
      break;
    }
  }
  return points.filter((p) => keep.has(p));
}

/** App-consistent beats crash-consistent; then the newer one. */
function better(a: RecoveryPoint, b: RecoveryPoint): boolean {
  if (a.kind !== b.kind) return a.kind === 'app';
  return a.seq > b.seq;
}

/** One line for the operator: what the thinned listing shows. */
export function describeThinning(tiers: readonly ThinTier[] = DEFAULT_THIN_TIERS): string {
  return tiers
    .map((t, i) => {
      const next = tiers[i + 1];
      const upTo = next ? ` up to ${age(next.fromAgeMs)} old` : '';
      return t.bucketMs <= 0 ? `all${upTo}` : `one per ${per(t.bucketMs)}${upTo}`;
    })
    .join(', ');
}

function per(ms: number): string {
  if (ms === DAY) return 'day';
  if (ms === HOUR) return 'hour';
  return age(ms);
}

function age(ms: number): string {
  if (ms % DAY === 0) return `${ms / DAY} ${ms === DAY ? 'day' : 'days'}`;
  if (ms % HOUR === 0) return `${ms / HOUR} h`;
  return `${ms / MINUTE} min`;
}
