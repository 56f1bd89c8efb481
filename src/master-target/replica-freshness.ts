// How current one machine's replica is, in the source's time: the newest applied change's
// time, or a position heartbeat's time once everything through its seq is applied (so an
// idle, fully replicated machine has a small RPO). Also the newest crash- and
// app-consistent points, kept as batches are applied (no journal scan per question).
// Pure bookkeeping; semantics in docs/protocol.md ("Heartbeats and RPO").
import { isSystemTag } from '../resync/markers.js';
import type { HeartbeatPayload } from '../wire/frame.js';
import type { RecoveryPoint, ReplicaItem } from './replica.js';

export class ReplicaFreshness {
  private heartbeatAsOf: number | undefined;
  /** A heartbeat whose seq is not applied yet: it counts once it is. */
  private pending: { time: number; throughSeq: number } | undefined;
  /** When the last position heartbeat arrived (this host's clock). */
  lastHeartbeatAt: number | undefined;
  latestCrash: RecoveryPoint | undefined;
  latestApp: RecoveryPoint | undefined;

  constructor(points: RecoveryPoint[] = []) {
    for (const p of points) this.notePoint(p);
  }

  /** A heartbeat from the stream; appliedThrough is the replica's now. Plain clock heartbeats prove nothing. */
  heard(hb: HeartbeatPayload, appliedThrough: number, now = Date.now()): void {
    if (hb.throughSeq === undefined) return;
    this.lastHeartbeatAt = now;
    if (hb.throughSeq <= appliedThrough) this.advance(hb.time);
    else if (!this.pending || hb.time >= this.pending.time)
      this.pending = { time: hb.time, throughSeq: hb.throughSeq };
  }

  /** A batch was applied: the replica holds everything through appliedThrough. */
  applied(appliedThrough: number, batch: ReplicaItem[] = []): void {
    for (const it of batch) {
      // Resync boundaries are bookmarks with reserved tags, not recovery points.
      if (it.type === 'marker' && it.seq <= appliedThrough && !isSystemTag(it.tag))
        this.notePoint({ seq: it.seq, time: it.time, kind: it.kind, tag: it.tag });
    }
    if (this.pending && this.pending.throughSeq <= appliedThrough) {
      this.advance(this.pending.time);
      this.pending = undefined;
    }
  }

  /**
   * Source time through which the replica holds every change: the newer of the last
   * proven heartbeat and the newest applied change (appliedTime, 0 when nothing applied).
   */
  currentAsOf(appliedTime: number): number | undefined {
    const t = Math.max(this.heartbeatAsOf ?? 0, appliedTime);
    return t > 0 ? t : undefined;
  }

  private advance(time: number): void {
    if (this.heartbeatAsOf === undefined || time > this.heartbeatAsOf) this.heartbeatAsOf = time;
  }

  private notePoint(p: RecoveryPoint): void {
    if (p.kind === 'crash' && (!this.latestCrash || p.seq > this.latestCrash.seq)) this.latestCrash = p;
    if (p.kind === 'app' && (!this.latestApp || p.seq > this.latestApp.seq)) this.latestApp = p;
  }
}
