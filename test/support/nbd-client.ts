// A small pipelining NBD client for tests that must know exactly which requests
// were acknowledged (crash loops) or must speak to the server byte by byte
// (fuzzing). It negotiates fixed newstyle + NBD_OPT_GO and uses simple replies.
import { connect, type Socket } from 'node:net';
import {
  CMD,
  CMD_FLAG,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  IHAVEOPT,
  OPT,
  REP,
} from '../../src/nbd/constants.js';
import { encodeRequest } from '../../src/nbd/transmission-codec.js';

export class NbdRequestError extends Error {
  constructor(
    readonly errno: number,
    what: string,
  ) {
    super(`${what} failed with NBD error ${errno}`);
  }
}

interface Pending {
  readLength: number;
  resolve: (data: Buffer) => void;
  reject: (e: Error) => void;
  what: string;
}

export interface ConnectTarget {
  host?: string;
  port?: number;
  path?: string;
}

export class TestNbdClient {
  size = 0;
  flags = 0;
  private buf = Buffer.alloc(0);
  private pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private waiter?: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void };
  private closedError?: Error;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.pump();
    });
    const fail = (e: Error) => {
      this.closedError ??= e;
      this.waiter?.reject(e);
      this.waiter = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('connection closed')));
  }

  static async connect(target: ConnectTarget, exportName = ''): Promise<TestNbdClient> {
    const sock = target.path ? connect(target.path) : connect(target.port!, target.host ?? '127.0.0.1');
    await new Promise<void>((res, rej) => {
      sock.once('connect', res);
      sock.once('error', rej);
    });
    sock.setNoDelay(true);
    const c = new TestNbdClient(sock);
    await c.handshake(exportName);
    return c;
  }

  /** True once the connection has failed or closed. */
  get closed(): boolean {
    return this.closedError !== undefined;
  }

  private take(n: number): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    if (this.waiter) {
      if (this.buf.length < this.waiter.n) return;
      const w = this.waiter;
      this.waiter = undefined;
      const out = this.buf.subarray(0, w.n);
      this.buf = this.buf.subarray(w.n);
      w.resolve(out);
      return;
    }
    // Transmission phase: simple replies.
    while (this.buf.length >= 16) {
      const cookie = this.buf.readBigUInt64BE(8);
      const p = this.pending.get(cookie);
      if (!p) {
        this.sock.destroy(new Error(`reply for unknown cookie ${cookie}`));
        return;
      }
      const error = this.buf.readUInt32BE(4);
      const dataLen = error === 0 ? p.readLength : 0;
      if (this.buf.length < 16 + dataLen) return;
      const data = Buffer.from(this.buf.subarray(16, 16 + dataLen));
      this.buf = this.buf.subarray(16 + dataLen);
      this.pending.delete(cookie);
      if (error) p.reject(new NbdRequestError(error, p.what));
      else p.resolve(data);
    }
  }

  private async handshake(exportName: string): Promise<void> {
    const greeting = await this.take(18);
    if (greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('server is not fixed newstyle');
    const cflags = Buffer.alloc(4);
    cflags.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    this.sock.write(cflags);
    const name = Buffer.from(exportName);
    const data = Buffer.alloc(4 + name.length + 2);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt16BE(0, 4 + name.length);
    const hdr = Buffer.alloc(16);
    hdr.writeBigUInt64BE(IHAVEOPT, 0);
    hdr.writeUInt32BE(OPT.GO, 8);
    hdr.writeUInt32BE(data.length, 12);
    this.sock.write(Buffer.concat([hdr, data]));
    for (;;) {
      const rh = await this.take(20);
      const type = rh.readUInt32BE(12);
      const len = rh.readUInt32BE(16);
      const body = len ? await this.take(len) : Buffer.alloc(0);
      if (type === REP.ACK) return;
      if (type === REP.INFO && body.readUInt16BE(0) === 0) {
        this.size = Number(body.readBigUInt64BE(2));
        this.flags = body.readUInt16BE(10);
      } else if (type >= 2 ** 31) {
        throw new Error(`NBD_OPT_GO refused (0x${type.toString(16)}): ${body.toString()}`);
      }
    }
  }

  private request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    payload?: Buffer,
    what = '',
  ): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError);
    const cookie = this.nextCookie++;
    const c = Buffer.alloc(8);
    c.writeBigUInt64BE(cookie);
    const p = new Promise<Buffer>((resolve, reject) => {
      this.pending.set(cookie, { readLength: type === CMD.READ ? length : 0, resolve, reject, what });
    });
    const header = encodeRequest({ type, flags, cookie: c, offset, length });
    this.sock.write(payload ? Buffer.concat([header, payload]) : header);
    return p;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(CMD.READ, 0, offset, length, undefined, `read ${offset}+${length}`);
  }

  async write(offset: number, data: Buffer, fua = false): Promise<void> {
    await this.request(
      CMD.WRITE,
      fua ? CMD_FLAG.FUA : 0,
      offset,
      data.length,
      data,
      `write ${offset}+${data.length}`,
    );
  }

  async flush(): Promise<void> {
    await this.request(CMD.FLUSH, 0, 0, 0, undefined, 'flush');
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.request(CMD.TRIM, 0, offset, length, undefined, `trim ${offset}+${length}`);
  }

  async writeZeroes(offset: number, length: number, flags = 0): Promise<void> {
    await this.request(
      CMD.WRITE_ZEROES,
      flags,
      offset,
      length,
      undefined,
      `write-zeroes ${offset}+${length}`,
    );
  }

  /** Sends NBD_CMD_DISC and waits for the server to close the connection. */
  async disconnect(): Promise<void> {
    if (this.closedError) return;
    const closed = new Promise((r) => this.sock.once('close', r));
    this.sock.end(encodeRequest({ type: CMD.DISC, flags: 0, cookie: Buffer.alloc(8), offset: 0, length: 0 }));
    await closed;
  }

  destroy(): void {
    this.sock.destroy();
  }
}
