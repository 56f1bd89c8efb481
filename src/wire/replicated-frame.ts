// Frame type 10, `replicated`: how an agent in `sync` acknowledgement mode learns what the
// master target has made durable. The agent asks once per connection with an empty payload
// (a process server never sends it unasked, so older agents never see this type); the process
// server answers with the master target's durable sequence, then again after every ack it gets
// from the master target. Layout in docs/protocol.md ("replicated").
import { FrameError } from './frame.js';

export interface ReplicatedPayload {
  /** Every change with seq <= this is applied and durable at the master target. */
  seq: number;
}

const SEQ_BYTES = 8;

/** The agent's request: empty. */
export function encodeReplicatedRequest(): Buffer {
  return Buffer.alloc(0);
}

/** A `replicated` frame from an agent must be the empty request. */
export function decodeReplicatedRequest(payload: Buffer): void {
  if (payload.length !== 0) {
    throw new FrameError(
      `replicated request payload is ${payload.length} bytes: an agent's request must be empty`,
    );
  }
}

export function encodeReplicated(r: ReplicatedPayload): Buffer {
  if (!Number.isSafeInteger(r.seq) || r.seq < 0) {
    throw new FrameError(`replicated seq ${r.seq} is not an integer in 0..2^53-1`);
  }
  const b = Buffer.alloc(SEQ_BYTES);
  b.writeBigUInt64BE(BigInt(r.seq), 0);
  return b;
}

export function decodeReplicated(payload: Buffer): ReplicatedPayload {
  if (payload.length !== SEQ_BYTES) {
    throw new FrameError(`replicated payload is ${payload.length} bytes: it must be its 8-byte seq`);
  }
  const v = payload.readBigUInt64BE(0);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`replicated seq ${v} exceeds 2^53 - 1`);
  return { seq: Number(v) };
}
