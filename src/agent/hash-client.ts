// The agent's hash session: a connection of its own to the process server (which relays
// it to the master target) that asks for the replica's block hashes during a resync.
// Requests are pipelined; answers are matched by request id.
import {
  type BlockHashesPayload,
  decodeBlockHashes,
  decodeError,
  decodeHello,
  encodeHashRequest,
  encodeHello,
  FrameType,
  type HashRequestPayload,
  WireErrorCode,
} from '../wire/frame.js';
import type { FrameConnection } from '../wire/tls-endpoint.js';

interface Pending {
  resolve: (h: BlockHashesPayload) => void;
  reject: (e: Error) => void;
}

export class HashClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | undefined;
  /** Bytes of requests sent and answers received (what the hashes cost on the wire). */
  bytes = 0;

  private constructor(private readonly conn: FrameConnection) {}

  static async open(
    connect: () => Promise<FrameConnection>,
    hello: { name: string; machineId: string },
  ): Promise<HashClient> {
    const conn = await connect();
    try {
      await conn.send(FrameType.Hello, encodeHello({ resumeFrom: 0, role: 'agent', ...hello }));
      const frames = conn[Symbol.asyncIterator]();
      const first = await frames.next();
      if (first.done || first.value.type !== FrameType.Hello) {
        throw new Error(`process server did not answer hello: ${conn.closeReason ?? 'closed'}`);
      }
      decodeHello(first.value.payload);
      const client = new HashClient(conn);
      void client.receive(frames);
      return client;
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  request(r: Omit<HashRequestPayload, 'requestId'>): Promise<BlockHashesPayload> {
    if (this.failure) return Promise.reject(this.failure);
    const requestId = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const payload = encodeHashRequest({ ...r, requestId });
    this.bytes += payload.length + 16;
    return new Promise<BlockHashesPayload>((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.conn.send(FrameType.HashRequest, payload).catch((e: Error) => this.fail(e));
    });
  }

  close(): void {
    this.conn.close();
    this.fail(new Error('hash session closed'));
  }

  private async receive(frames: AsyncIterator<{ type: FrameType; payload: Buffer }>): Promise<void> {
    try {
      for (;;) {
        const n = await frames.next();
        if (n.done) break;
        const f = n.value;
        if (f.type === FrameType.Error) {
          const e = decodeError(f.payload);
          throw new Error(`hash session refused: ${e.message}`);
        }
        if (f.type !== FrameType.BlockHashes) {
          this.conn.close(`unexpected frame type ${f.type} in a hash session`, WireErrorCode.Protocol);
          break;
        }
        this.bytes += f.payload.length + 16;
        const h = decodeBlockHashes(f.payload);
        const p = this.pending.get(h.requestId);
        if (!p) {
          this.conn.close(`answer to unknown hash request ${h.requestId}`, WireErrorCode.Protocol);
          break;
        }
        this.pending.delete(h.requestId);
        p.resolve(h);
      }
      throw new Error(`hash session closed${this.conn.closeReason ? `: ${this.conn.closeReason}` : ''}`);
    } catch (e) {
      this.fail(e as Error);
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }
}
