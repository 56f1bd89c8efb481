// QMP (the QEMU Machine Protocol) and the QEMU guest agent protocol, over their Unix sockets.
import { randomInt } from 'node:crypto';
import { JsonStream } from './json-stream.js';

type Reply = { return?: unknown; error?: { class: string; desc: string }; event?: string; id?: unknown };

/** The answer to one command: its `return`, or an error carrying QEMU's description. */
export function replyValue(command: string, reply: Reply): unknown {
  if (reply.error) throw new Error(`${command}: ${reply.error.desc} (${reply.error.class})`);
  return reply.return;
}

export class QmpClient {
  private constructor(private readonly stream: JsonStream) {}

  /** Connects, reads the greeting and leaves capability negotiation. */
  static async connect(socketPath: string, timeoutMs = 5000): Promise<QmpClient> {
    const stream = await JsonStream.open(socketPath, timeoutMs);
    try {
      const greeting = (await stream.next(timeoutMs)) as { QMP?: unknown };
      if (!greeting.QMP) throw new Error(`${socketPath} is not a QMP socket`);
      const c = new QmpClient(stream);
      await c.execute('qmp_capabilities', undefined, timeoutMs);
      return c;
    } catch (e) {
      stream.close();
      throw e;
    }
  }

  /** Runs a command and returns its result; events arriving meanwhile are skipped. */
  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
    const id = `rebound-${randomInt(1 << 30)}`;
    this.stream.send({ execute: command, ...(args ? { arguments: args } : {}), id });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = (await this.stream.next(Math.max(1, deadline - Date.now()))) as Reply;
      if (m.event) continue;
      if (m.id === id) return replyValue(command, m);
    }
  }

  close(): void {
    this.stream.close();
  }
}

export class GuestAgentClient {
  private constructor(private readonly stream: JsonStream) {}

  /**
   * Connects to the guest agent's channel and synchronises with guest-sync (a random id echoed
   * back: anything older on the channel is skipped). Undefined when nobody answers within
   * syncTimeoutMs: the guest has no agent running.
   */
  static async connect(socketPath: string, syncTimeoutMs = 3000): Promise<GuestAgentClient | undefined> {
    const stream = await JsonStream.open(socketPath, syncTimeoutMs);
    const id = randomInt(1 << 30);
    stream.send({ execute: 'guest-sync', arguments: { id } });
    const deadline = Date.now() + syncTimeoutMs;
    try {
      for (;;) {
        const m = (await stream.next(Math.max(1, deadline - Date.now()))) as Reply;
        if (m.return === id) return new GuestAgentClient(stream);
      }
    } catch {
      stream.close();
      return undefined;
    }
  }

  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<unknown> {
    this.stream.send({ execute: command, ...(args ? { arguments: args } : {}) });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = (await this.stream.next(Math.max(1, deadline - Date.now()))) as Reply;
      if ('return' in m || m.error) return replyValue(command, m);
    }
  }

  close(): void {
    this.stream.close();
  }
}
