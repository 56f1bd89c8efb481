// One NBD client connection: the fixed-newstyle handshake, then the transmission
// phase with requests served concurrently and replies sent whole, possibly out of
// order. Malformed input closes this connection only, with a logged reason.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { payloadPool } from './buffer-pool.js';
import {
  BASE_ALLOCATION,
  CMD,
  CMD_FLAG,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  INFO,
  MAX_OPTION_LENGTH,
  MAX_PAYLOAD,
  NBD_ERR,
  OPT,
  PREFERRED_BLOCK,
  REP,
  REQUEST_HEADER_SIZE,
  STATE_HOLE,
  STATE_ZERO,
  TF,
} from './constants.js';
import { NbdError, nbdErrorCode } from './errors.js';
import type { ExportLookup, NbdExport } from './export.js';
import {
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
  parseGoRequest,
  parseMetaContextRequest,
  parseOptionHeader,
} from './option-codec.js';
import { RECEIVE_REUSE_BYTES, ReceiveBuffer } from './receive-buffer.js';
import { adoptWithReadBuffer } from './socket-adopt.js';
import {
  encodeBlockStatus,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  encodeStructuredDone,
  encodeStructuredError,
  parseRequest,
  type Request,
  type StatusExtent,
} from './transmission-codec.js';

const BASE_ALLOCATION_ID = 1;
/** Pause reading from the socket while this much request data is queued or in flight. */
// Small on purpose: clients such as nbdcopy open several connections, and the
// agent's memory must stay bounded (goal: 128 MiB) whatever they pipeline.
const MAX_BUFFERED = 4 * 1024 * 1024;
/**
 * Pause reading once this much is received and not yet taken (the rest waits in the
 * kernel's socket buffer); ReceiveBuffer keeps that much of chunks for reuse.
 */
const MAX_QUEUED = RECEIVE_REUSE_BYTES;
/**
 * Pause reading while this many requests are being served, or this many replies wait
 * to be written: a client that pipelines without reading replies must not make the
 * server queue requests or small replies (each costs far more than its bytes) without bound.
 */
const MAX_INFLIGHT = 1024;
const MAX_UNSENT_REPLIES = 4096;
/** Requests (or options) handled back to back before yielding to other connections. */
const YIELD_EVERY = 256;
const MAX_STATUS_EXTENTS = 4096;

class Closed extends Error {}

/** SEND_DF only with structured replies: the spec says it MUST be clear otherwise. */
export function transmissionFlags(exp: NbdExport, structured: boolean): number {
  let f = TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_FUA | TF.CAN_MULTI_CONN;
  if (structured) f |= TF.SEND_DF;
  if (exp.readOnly) f |= TF.READ_ONLY;
  else f |= TF.SEND_TRIM | TF.SEND_WRITE_ZEROES | TF.SEND_FAST_ZERO;
  return f;
}

export class NbdConnection {
  private readonly rb = new ReceiveBuffer();
  private readonly socket: Socket;
  private waiter:
    | { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void; direct: boolean }
    | undefined;
  private closed = false;
  private structured = false;
  private metaExport: string | undefined; // export the base:allocation context was selected for
  private inflight = 0;
  private inflightBytes = 0;
  private idle: (() => void) | undefined;
  private capacity: (() => void) | undefined;
  private unsent = 0; // replies handed to the socket and not yet written out
  private corked = false;
  private handled = 0; // options and requests read so far

  /**
   * `accepted` should come from a server made with pauseOnConnect: the connection then
   * reads into its own buffers (see socket-adopt.ts); otherwise it copies 'data' events.
   */
  constructor(
    accepted: Socket,
    private readonly exports: ExportLookup,
    private readonly log: Logger,
  ) {
    const adopted = adoptWithReadBuffer(
      accepted,
      () => this.rb.nextBuffer(),
      (n, buf) => this.onReceived(buf, n),
    );
    const socket = adopted ?? accepted;
    this.socket = socket;
    if (!adopted) {
      socket.on('data', (b: Buffer) => {
        this.rb.push(b);
        this.afterReceive();
      });
      socket.resume();
    }
    socket.setNoDelay?.(true);
    socket.on('end', () => this.fail(new Closed('client closed the connection')));
    socket.on('close', () => this.fail(new Closed('connection closed')));
    socket.on('error', (e) => this.fail(new Closed(`socket error: ${e.message}`)));
    socket.on('drain', () => this.wakeCapacity());
  }

  /** The socket this connection reads and writes (not the accepted one, if adopted). */
  get stream(): Socket {
    return this.socket;
  }

  /** Runs the connection to its end; never throws. */
  async run(): Promise<void> {
    try {
      const exp = await this.handshake();
      if (exp) await this.transmission(exp);
    } catch (e) {
      if (!(e instanceof Closed)) this.close(`internal error: ${(e as Error).message}`);
    }
  }

  private onReceived(buf: Buffer, nread: number): void {
    this.rb.received(buf, nread);
    this.afterReceive();
  }

  private afterReceive(): void {
    const w = this.waiter;
    if (w) {
      const got = w.direct ? this.rb.directDone() : this.rb.length >= w.n ? this.rb.take(w.n) : undefined;
      if (got) {
        this.waiter = undefined;
        w.resolve(got);
      }
    }
    // Never pause while a read waits for more than is queued (a WRITE payload may be
    // larger than MAX_QUEUED): that would wait forever.
    if (!this.waiter && this.rb.length > MAX_QUEUED) this.socket.pause();
  }

  private fail(e: Error): void {
    this.closed = true;
    const w = this.waiter;
    this.waiter = undefined;
    this.rb.cancelDirect();
    w?.reject(e);
    this.wakeCapacity();
  }

  private resumeIfLow(n: number): void {
    if ((this.rb.length < n || this.rb.length < MAX_QUEUED / 2) && this.socket.isPaused())
      this.socket.resume();
  }

  /** The next n bytes (a copy). */
  private read(n: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Closed('connection closed'));
    this.resumeIfLow(n);
    if (this.rb.length >= n) return Promise.resolve(this.rb.take(n));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject, direct: false };
    });
  }

  /**
   * Reads a WRITE payload into a buffer from payloadPool, which goes back to the pool
   * once the write has settled. Bytes not yet received are read straight into it.
   */
  private async readPayload(n: number): Promise<Buffer> {
    if (this.closed) throw new Closed('connection closed');
    const into = payloadPool.acquire(n);
    this.resumeIfLow(n);
    if (this.rb.length >= n) return this.rb.take(n, into);
    this.rb.startDirect(into, n);
    // If the connection fails meanwhile, `into` is not returned to the pool: the
    // socket may still have been lent part of it.
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject, direct: true };
    });
  }

  /** Logs why and closes; the server and other connections carry on. */
  private close(reason: string, level: 'warn' | 'debug' = 'warn'): void {
    if (!this.closed) this.log[level]({ reason }, 'closing NBD connection');
    this.uncork(); // replies queued in this turn go out before the socket is destroyed
    this.closed = true;
    this.socket.destroy();
    this.fail(new Closed(reason));
  }

  /**
   * Queues a reply. Replies produced in one turn of the event loop leave in one
   * writev: the socket is corked at the first and uncorked once the turn's I/O
   * callbacks have run. A send on loopback costs tens of microseconds (it wakes the
   * client), which was the largest single cost of small writes (fio 4k: 90 us a reply).
   */
  private send(...bufs: Buffer[]): void {
    if (this.closed) return;
    this.unsent++;
    const written = () => {
      if (--this.unsent <= MAX_UNSENT_REPLIES) this.wakeCapacity();
    };
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => this.uncork());
    }
    for (let i = 0; i < bufs.length; i++) {
      this.socket.write(bufs[i], i === bufs.length - 1 ? written : undefined);
    }
  }

  /** Writes a reply at once, uncorked (when no other reply of this turn can join it). */
  private sendNow(buf: Buffer): void {
    if (this.closed) return;
    this.unsent++;
    this.socket.write(buf, () => {
      if (--this.unsent <= MAX_UNSENT_REPLIES) this.wakeCapacity();
    });
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  /**
   * Waits until the client has read enough replies and enough requests have been
   * served to take more; every YIELD_EVERY calls, lets other connections run too.
   */
  private async waitForCapacity(): Promise<void> {
    if (++this.handled % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
    while (
      !this.closed &&
      (this.inflight >= MAX_INFLIGHT ||
        this.inflightBytes > MAX_BUFFERED ||
        this.unsent > MAX_UNSENT_REPLIES ||
        this.socket.writableLength > MAX_BUFFERED)
    ) {
      await new Promise<void>((r) => {
        this.capacity = r;
      });
    }
  }

  private reply(option: number, type: number, data?: Buffer): void {
    this.send(encodeOptionReply(option, type, data));
  }

  private replyError(option: number, type: number, message: string): void {
    this.log.debug({ option, message }, 'NBD option refused');
    this.reply(option, type, Buffer.from(message, 'utf8'));
  }

  // ---- handshake ----------------------------------------------------------

  private async handshake(): Promise<NbdExport | undefined> {
    this.send(encodeGreeting());
    const clientFlags = (await this.read(4)).readUInt32BE(0);
    if (clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
      this.close(`unknown client flags 0x${clientFlags.toString(16)}`);
      return undefined;
    }
    const fixed = (clientFlags & FLAG_C_FIXED_NEWSTYLE) !== 0;
    const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      await this.waitForCapacity();
      const hdr = parseOptionHeader(await this.read(16));
      if (typeof hdr === 'string') {
        this.close(hdr);
        return undefined;
      }
      if (hdr.length > MAX_OPTION_LENGTH) {
        this.close(`option ${hdr.option} length ${hdr.length} exceeds the limit of ${MAX_OPTION_LENGTH}`);
        return undefined;
      }
      const data = await this.read(hdr.length);
      if (!fixed && hdr.option !== OPT.EXPORT_NAME) {
        this.close(`option ${hdr.option} from a client without fixed newstyle`);
        return undefined;
      }
      const exp = this.option(hdr.option, data, noZeroes);
      if (exp === 'abort') {
        this.close('client aborted the handshake', 'debug');
        return undefined;
      }
      if (exp) return exp;
    }
  }

  /** Handles one option; returns the export when transmission starts. */
  private option(option: number, data: Buffer, noZeroes: boolean): NbdExport | 'abort' | undefined {
    switch (option) {
      case OPT.EXPORT_NAME: {
        const name = data.toString('utf8');
        const exp = this.exports.get(name);
        if (!exp) {
          this.close(`NBD_OPT_EXPORT_NAME: no export named '${name}'`);
          return 'abort';
        }
        this.send(encodeExportNameReply(exp.size, transmissionFlags(exp, this.structured), noZeroes));
        if (this.metaExport !== undefined && this.exports.get(this.metaExport) !== exp)
          this.metaExport = undefined;
        return exp;
      }
      case OPT.ABORT:
        this.reply(option, REP.ACK);
        return 'abort';
      case OPT.LIST:
        if (data.length) {
          this.replyError(option, REP.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          return undefined;
        }
        for (const e of this.exports.list()) this.reply(option, REP.SERVER, encodeServerEntry(e.name));
        this.reply(option, REP.ACK);
        return undefined;
      case OPT.INFO:
      case OPT.GO: {
        const req = parseGoRequest(data);
        if (typeof req === 'string') {
          this.replyError(option, REP.ERR_INVALID, req);
          return undefined;
        }
        const exp = this.exports.get(req.name);
        if (!exp) {
          this.replyError(option, REP.ERR_UNKNOWN, `no export named '${req.name}'`);
          return undefined;
        }
        this.reply(option, REP.INFO, encodeInfoExport(exp.size, transmissionFlags(exp, this.structured)));
        this.reply(option, REP.INFO, encodeInfoBlockSize(1, PREFERRED_BLOCK, MAX_PAYLOAD));
        if (req.infos.includes(INFO.NAME)) {
          const n = Buffer.from(exp.name, 'utf8');
          const b = Buffer.alloc(2 + n.length);
          b.writeUInt16BE(INFO.NAME, 0);
          n.copy(b, 2);
          this.reply(option, REP.INFO, b);
        }
        this.reply(option, REP.ACK);
        if (option === OPT.INFO) return undefined;
        // Block status is only valid for the export the context was selected for.
        if (this.metaExport !== undefined && this.exports.get(this.metaExport) !== exp)
          this.metaExport = undefined;
        return exp;
      }
      case OPT.STRUCTURED_REPLY:
        if (data.length) {
          this.replyError(option, REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          return undefined;
        }
        this.structured = true;
        this.reply(option, REP.ACK);
        return undefined;
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT:
        this.metaContext(option, data);
        return undefined;
      default:
        this.replyError(option, REP.ERR_UNSUP, `option ${option} is not supported`);
        return undefined;
    }
  }

  private metaContext(option: number, data: Buffer): void {
    const set = option === OPT.SET_META_CONTEXT;
    if (set) this.metaExport = undefined; // SET replaces the selection, even when it fails
    if (!this.structured) {
      this.replyError(option, REP.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
      return;
    }
    const req = parseMetaContextRequest(data);
    if (typeof req === 'string') {
      this.replyError(option, REP.ERR_INVALID, req);
      return;
    }
    if (!this.exports.get(req.name)) {
      this.replyError(option, REP.ERR_UNKNOWN, `no export named '${req.name}'`);
      return;
    }
    const matches = set
      ? req.queries.some((q) => q === BASE_ALLOCATION)
      : req.queries.length === 0 || req.queries.some((q) => q === BASE_ALLOCATION || q === 'base:');
    if (matches) {
      this.reply(option, REP.META_CONTEXT, encodeMetaContext(set ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION));
      if (set) this.metaExport = req.name;
    }
    this.reply(option, REP.ACK);
  }

  // ---- transmission -------------------------------------------------------

  private async transmission(exp: NbdExport): Promise<void> {
    this.log.debug({ export: exp.name }, 'NBD transmission phase');
    for (;;) {
      await this.waitForCapacity();
      const req = parseRequest(await this.read(REQUEST_HEADER_SIZE));
      if (typeof req === 'string') {
        this.close(req);
        return;
      }
      if (req.type === CMD.DISC) {
        await this.drain();
        this.close('client disconnected', 'debug');
        return;
      }
      let payload: Buffer | undefined;
      if (req.type === CMD.WRITE) {
        if (req.length > MAX_PAYLOAD) {
          this.close(`write of ${req.length} bytes exceeds the maximum payload of ${MAX_PAYLOAD}`);
          return;
        }
        payload = await this.readPayload(req.length);
        if (this.writeNow(exp, req, payload)) continue;
      }
      this.dispatch(exp, req, payload);
    }
  }

  /**
   * A WRITE the export can do at once (NbdExport.writeNow): no promise per request, and
   * the reply leaves as soon as the export calls ack() (at once, when no other request is
   * waiting to be read), before the rest of the export's work. Through nbdfuse + loop a
   * client has one request in flight, so each write's round trip is what it waits for.
   */
  private writeNow(exp: NbdExport, req: Request, payload: Buffer): boolean {
    if (!exp.writeNow || exp.readOnly || req.flags & CMD_FLAG.FUA) return false;
    if (req.length === 0 || req.offset + req.length > exp.size) return false;
    const ack = () => {
      if (this.corked || this.rb.length >= REQUEST_HEADER_SIZE) this.ok(req);
      else this.sendNow(encodeSimpleReply(req.cookie, 0));
    };
    if (!exp.writeNow(req.offset, payload, ack)) return false;
    payloadPool.release(payload);
    return true;
  }

  private dispatch(exp: NbdExport, req: Request, payload: Buffer | undefined): void {
    const bytes = req.type === CMD.WRITE || req.type === CMD.READ ? req.length : 0;
    this.inflight++;
    this.inflightBytes += bytes;
    this.serve(exp, req, payload)
      .catch((e) => {
        const code = nbdErrorCode(e);
        if (!(e instanceof NbdError))
          this.log.error({ err: e, type: req.type, offset: req.offset }, 'NBD request failed');
        this.sendError(req, code, String((e as Error | undefined)?.message ?? e));
      })
      .finally(() => {
        // The write has settled (logged and on disk, or failed): nothing holds the payload now.
        if (payload) payloadPool.release(payload);
        this.inflight--;
        this.inflightBytes -= bytes;
        this.wakeCapacity();
        if (this.inflight === 0) this.idle?.();
      });
  }

  private wakeCapacity(): void {
    const c = this.capacity;
    this.capacity = undefined;
    c?.();
  }

  private drain(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => {
      this.idle = r;
    });
  }

  private sendError(req: Request, code: number, message: string): void {
    if (this.structured) this.send(encodeStructuredError(req.cookie, code, message));
    else this.send(encodeSimpleReply(req.cookie, code));
  }

  private ok(req: Request): void {
    this.send(encodeSimpleReply(req.cookie, 0));
  }

  private async serve(exp: NbdExport, req: Request, payload: Buffer | undefined): Promise<void> {
    const { offset, length, flags } = req;
    const end = offset + length;
    const fua = (flags & CMD_FLAG.FUA) !== 0;
    const writes = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES || req.type === CMD.TRIM;
    if (writes && exp.readOnly) throw new NbdError(NBD_ERR.EPERM, `export '${exp.name}' is read-only`);
    if (end > exp.size) {
      const code = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES ? NBD_ERR.ENOSPC : NBD_ERR.EINVAL;
      throw new NbdError(code, `request [${offset}, ${end}) is beyond the export size ${exp.size}`);
    }
    switch (req.type) {
      case CMD.READ: {
        if (length > MAX_PAYLOAD) {
          throw new NbdError(NBD_ERR.EINVAL, `read of ${length} bytes exceeds the maximum payload`);
        }
        const data = length ? await exp.read(offset, length) : Buffer.alloc(0);
        if (this.structured) {
          // A structured client must not get a simple reply to a READ, even an empty one.
          if (length === 0) this.send(encodeStructuredDone(req.cookie));
          else this.send(encodeOffsetDataHeader(req.cookie, offset, data.length), data);
        } else this.send(encodeSimpleReply(req.cookie, 0), data);
        return;
      }
      case CMD.WRITE: {
        let replied = false;
        const ack = fua
          ? undefined
          : () => {
              replied = true;
              this.ok(req);
            };
        try {
          if (length) await exp.write(offset, payload!, fua, ack);
        } catch (e) {
          if (!replied) throw e;
          this.log.error({ err: e, offset }, 'NBD write failed after its reply');
          return;
        }
        if (!replied) this.ok(req);
        return;
      }
      case CMD.FLUSH:
        await exp.flush();
        this.ok(req);
        return;
      case CMD.TRIM:
        if (length) await exp.trim(offset, length, fua);
        this.ok(req);
        return;
      case CMD.WRITE_ZEROES:
        if (flags & CMD_FLAG.FAST_ZERO && !exp.fastZero) {
          throw new NbdError(NBD_ERR.ENOTSUP, 'fast zeroing is not possible on this export');
        }
        if (length) await exp.writeZeroes(offset, length, { noHole: (flags & CMD_FLAG.NO_HOLE) !== 0, fua });
        this.ok(req);
        return;
      case CMD.CACHE:
        this.ok(req);
        return;
      case CMD.BLOCK_STATUS: {
        if (this.metaExport === undefined || !this.structured) {
          throw new NbdError(NBD_ERR.EINVAL, 'no metadata context was selected');
        }
        if (length === 0) throw new NbdError(NBD_ERR.EINVAL, 'block status of zero length');
        const one = (flags & CMD_FLAG.REQ_ONE) !== 0;
        const extents = await exp.blockStatus(offset, length);
        const out: StatusExtent[] = [];
        for (const e of extents) {
          // A write or trim racing with the store's SEEK_DATA/SEEK_HOLE walk can yield an
          // empty extent; the protocol requires every descriptor length to be nonzero.
          if (e.length <= 0) continue;
          const flagsOut = e.hole ? STATE_HOLE | STATE_ZERO : 0;
          const last = out.at(-1);
          if (last && last.flags === flagsOut) last.length += e.length;
          else out.push({ length: e.length, flags: flagsOut });
          if (out.length >= MAX_STATUS_EXTENTS) break;
        }
        if (out.length === 0) out.push({ length, flags: 0 });
        this.send(encodeBlockStatus(req.cookie, BASE_ALLOCATION_ID, one ? out.slice(0, 1) : out));
        return;
      }
      default:
        throw new NbdError(NBD_ERR.EINVAL, `unknown command ${req.type}`);
    }
  }
}
