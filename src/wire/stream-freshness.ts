// How current the receiver of a log stream is, in source time, as the sender can prove it:
// position heartbeats wait until every record they cover has been sent, then go out; once
// the receiver acknowledges through a heartbeat's seq (or already had), the receiver holds
// every change the source made before the heartbeat's time. Acknowledged records prove the
// same for their own times. Pure bookkeeping; the streamer does the I/O.
// Semantics: docs/protocol.md ("Heartbeats and RPO").

export interface PositionHeartbeat {
  /** Source time (ms since the epoch). */
  time: number;
  /** Every change the source made before `time` has seq <= this. */
  throughSeq: number;
}

/** Heartbeats kept while their records are not yet sent or acknowledged: older ones go first. */
const MAX_KEPT = 64;

export class StreamFreshness {
  /** Offered, waiting for sentThrough to reach their seq. */
  private waitingToSend: PositionHeartbeat[] = [];
  /** Sent, waiting for the receiver's ack to reach their seq. */
  private waitingForAck: PositionHeartbeat[] = [];
  private asOf: number | undefined;
  private newest: PositionHeartbeat | undefined;

  /** Source time through which the receiver is proven to hold every change; undefined until known. */
  get currentAsOf(): number | undefined {
    return this.asOf;
  }

  /** The newest heartbeat offered (for status: how recently the source was heard from). */
  get newestOffered(): PositionHeartbeat | undefined {
    return this.newest;
  }

  /** A new heartbeat to pass on once the stream has sent through its seq. */
  offer(hb: PositionHeartbeat): void {
    if (this.newest && hb.throughSeq < this.newest.throughSeq) {
      // The source's log went back (it was replaced or cut after a power loss): older
      // promises no longer describe this log.
      this.waitingToSend = [];
    }
    this.newest = hb;
    push(this.waitingToSend, hb);
  }

  /**
   * The heartbeat to send now that everything through sentThrough is on the wire: the
   * newest one it covers (older covered ones are superseded and dropped), or undefined.
   */
  takeSendable(sentThrough: number): PositionHeartbeat | undefined {
    let ready: PositionHeartbeat | undefined;
    while (this.waitingToSend.length && this.waitingToSend[0]!.throughSeq <= sentThrough) {
      ready = this.waitingToSend.shift();
    }
    return ready;
  }

  /** A heartbeat went out; ackedThrough is what the receiver has acknowledged so far. */
  sent(hb: PositionHeartbeat, ackedThrough: number): void {
    if (hb.throughSeq <= ackedThrough) this.advance(hb.time);
    else push(this.waitingForAck, hb);
  }

  /** The receiver acknowledged through seq; newestRecordTime is the source time of the newest record acked. */
  acked(seq: number, newestRecordTime?: number): void {
    if (newestRecordTime !== undefined) this.advance(newestRecordTime);
    while (this.waitingForAck.length && this.waitingForAck[0]!.throughSeq <= seq) {
      this.advance(this.waitingForAck.shift()!.time);
    }
  }

  private advance(time: number): void {
    if (this.asOf === undefined || time > this.asOf) this.asOf = time;
  }
}

function push(list: PositionHeartbeat[], hb: PositionHeartbeat): void {
  list.push(hb);
  if (list.length > MAX_KEPT) list.shift();
}

/** RPO in seconds: now minus the source time the receiver is current as of; undefined if unknown. */
export function rpoSeconds(now: number, currentAsOf: number | undefined): number | undefined {
  if (currentAsOf === undefined) return undefined;
  return Math.max(0, now - currentAsOf) / 1000;
}
