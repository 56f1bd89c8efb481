// QMP and the QEMU guest agent speak JSON objects separated by newlines over a socket. This
// splits the byte stream into messages (a message may arrive in pieces, several may arrive
// together) and hands them out in order, each read bounded by a timeout.
import { connect, type Socket } from 'node:net';

/** Splits received bytes into JSON messages; lines that are not JSON are skipped (a guest agent may emit junk after a reset). */
export class JsonLineSplitter {
  private pending = '';

  push(chunk: Buffer | string): unknown[] {
    this.pending += chunk.toString();
    const out: unknown[] = [];
    let nl = this.pending.indexOf('\n');
    while (nl >= 0) {
      const line = this.pending
        .slice(0, nl)
        .replace(/[\r\xff]/g, '')
        .trim();
      this.pending = this.pending.slice(nl + 1);
      if (line) {
        try {
          out.push(JSON.parse(line));
        } catch {
          // not a message
        }
      }
      nl = this.pending.indexOf('\n');
    }
    return out;
  }
}

export class JsonStream {
  private readonly queue: unknown[] = [];
  private waiter?: { resolve: (m: unknown) => void; reject: (e: Error) => void };
  private closedWith?: Error;

  private constructor(private readonly socket: Socket) {
    const splitter = new JsonLineSplitter();
    socket.on('data', (d) => {
      for (const m of splitter.push(d)) {
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          w.resolve(m);
        } else this.queue.push(m);
      }
    });
    const end = (e?: Error) => {
      this.closedWith ??= e ?? new Error('connection closed');
      this.waiter?.reject(this.closedWith);
      this.waiter = undefined;
    };
    socket.on('error', end);
    socket.on('close', () => end());
  }

  static open(path: string, timeoutMs: number): Promise<JsonStream> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection to ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', reject);
        resolve(new JsonStream(socket));
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  send(message: unknown): void {
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  /** The next message, or an error after timeoutMs ('timeout' in its message). */
  next(timeoutMs: number): Promise<unknown> {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new TimeoutError(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

export class TimeoutError extends Error {}
