// The master target's side of a resync: answers hash requests (relayed by the process
// server from the agent) with the block hashes of its replica disks. A connection that
// opens with a hash request after the hellos is a hash session, not a stream.
import type { Logger } from 'pino';
import {
  decodeHashRequest,
  encodeBlockHashes,
  type Frame,
  FrameError,
  FrameType,
  WireErrorCode,
} from '../wire/frame.js';
import type { FrameConnection } from '../wire/tls-endpoint.js';
import type { Replica } from './replica.js';

/** How long a request waits for the machine's replica to exist (its stream creates it). */
const REPLICA_WAIT_MS = 30_000;
/** How long a request waits for the replica to apply through its afterSeq. */
const APPLIED_WAIT_MS = 120_000;

export async function serveHashRequests(
  conn: FrameConnection,
  first: Frame,
  frames: AsyncIterator<Frame>,
  replicaOf: () => Replica | undefined,
  logger: Logger,
): Promise<void> {
  let f: Frame | undefined = first;
  while (f) {
    try {
      if (f.type !== FrameType.HashRequest) {
        throw new FrameError(`unexpected frame type ${f.type} in a hash session`);
      }
      const req = decodeHashRequest(f.payload);
      const replica = await waitForReplica(replicaOf, conn);
      if (!replica) {
        conn.close(
          `machine has no replica here yet after ${REPLICA_WAIT_MS / 1000} s (its stream has not started)`,
          WireErrorCode.Internal,
        );
        return;
      }
      if (!replica.diskIds.includes(req.disk))
        throw new FrameError(`hash request for unknown disk ${req.disk}`);
      if (!(await waitForApplied(replica, req.afterSeq, conn))) {
        conn.close(
          `the replica has applied through seq ${replica.appliedThrough} and the hashes need seq ` +
            `${req.afterSeq}: still not there after ${APPLIED_WAIT_MS / 1000} s`,
          WireErrorCode.Internal,
        );
        return;
      }
      const { appliedThrough, blocks } = await replica.blockHashes(
        req.disk,
        req.offset,
        req.blockSize,
        req.count,
      );
      await conn.send(FrameType.BlockHashes, encodeBlockHashes({ ...req, appliedThrough, blocks }));
    } catch (e) {
      const protocol = e instanceof FrameError;
      logger.warn({ err: (e as Error).message }, 'master target: hash request refused');
      conn.close((e as Error).message, protocol ? WireErrorCode.Protocol : WireErrorCode.Internal);
      return;
    }
    const n = await frames.next();
    f = n.done ? undefined : n.value;
  }
}

async function waitForReplica(
  replicaOf: () => Replica | undefined,
  conn: FrameConnection,
): Promise<Replica | undefined> {
  const deadline = Date.now() + REPLICA_WAIT_MS;
  for (;;) {
    const r = replicaOf();
    if (r || Date.now() > deadline || conn.socket.destroyed) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
}

/**
 * Changes logged before the agent's last unlogged change must be applied before the
 * blocks are compared (see docs/architecture.md, "Resync"): wait for them.
 */
async function waitForApplied(replica: Replica, seq: number, conn: FrameConnection): Promise<boolean> {
  const deadline = Date.now() + APPLIED_WAIT_MS;
  while (replica.appliedThrough < seq) {
    if (Date.now() > deadline || conn.socket.destroyed) return false;
    await new Promise((res) => setTimeout(res, 50));
  }
  return true;
}
