// Progress of a sequence number over time, sampled by polling, and what follows from two
// of them: the agent's (acknowledged through seq S at time t) and the master target's
// (applied through seq S at time t). Pure: no I/O.

export interface SeqSample {
  /** Milliseconds on one monotonic clock (performance.now()). */
  t: number;
  seq: number;
}

export class SeqTimeline {
  private readonly s: SeqSample[];

  constructor(samples: SeqSample[]) {
    // Polls may see a stale value after a newer one (two reads in flight): keep it monotonic.
    let max = 0;
    this.s = samples.map((x) => {
      max = Math.max(max, x.seq);
      return { t: x.t, seq: max };
    });
  }

  get last(): SeqSample | undefined {
    return this.s.at(-1);
  }

  /** Index of the first sample with seq >= s, or -1. */
  private firstAtLeast(seq: number): number {
    let lo = 0;
    let hi = this.s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.s[mid]!.seq >= seq) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.s.length ? lo : -1;
  }

  /** When seq was first seen: the time of the first sample at or beyond it (an upper bound). */
  seenAt(seq: number): number | undefined {
    const i = this.firstAtLeast(seq);
    return i < 0 ? undefined : this.s[i]!.t;
  }

  /** When seq was reached, interpolated linearly between the samples around it. */
  reachedAt(seq: number): number | undefined {
    const i = this.firstAtLeast(seq);
    if (i < 0) return undefined;
    const b = this.s[i]!;
    const a = this.s[i - 1];
    if (!a || b.seq === a.seq) return b.t;
    return a.t + ((seq - a.seq) / (b.seq - a.seq)) * (b.t - a.t);
  }

  /** The seq at time t, interpolated between samples (0 before the first). */
  seqAt(t: number): number {
    let lo = 0;
    let hi = this.s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.s[mid]!.t <= t) lo = mid + 1;
      else hi = mid;
    }
    const a = this.s[lo - 1];
    const b = this.s[lo];
    if (!a) return 0;
    if (!b) return a.seq;
    return a.seq + ((t - a.t) / (b.t - a.t)) * (b.seq - a.seq);
  }
}

/**
 * Per write, from its acknowledgement at the agent (interpolated) to the first master-target
 * sample that shows it applied (so each lag is overstated by at most one poll interval).
 * Writes in seqs [from, to]; sorted ascending, in milliseconds. Writes never applied are left out
 * and counted in `missing`.
 */
export function writeLags(
  agent: SeqTimeline,
  mt: SeqTimeline,
  from: number,
  to: number,
  skip: (seq: number) => boolean = () => false,
): { lags: Float64Array; missing: number } {
  const out: number[] = [];
  let missing = 0;
  for (let seq = Math.max(1, Math.ceil(from)); seq <= to; seq++) {
    if (skip(seq)) continue;
    const acked = agent.reachedAt(seq);
    const applied = mt.seenAt(seq);
    if (acked === undefined || applied === undefined) {
      missing++;
      continue;
    }
    out.push(Math.max(0, applied - acked));
  }
  return { lags: Float64Array.from(out).sort(), missing };
}

/** The p-th percentile (0..100) of ascending values, nearest rank; undefined when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** How many of the ascending `seqs` lie in (a, b]. */
export function countIn(seqs: readonly number[], a: number, b: number): number {
  const upper = (x: number) => {
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seqs[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return upper(b) - upper(a);
}
