// Mutual TLS 1.3 endpoints that carry frames. Both sides present a certificate from the
// deployment's CA and trust only that CA; each side then checks the other's role (a process
// server, say, accepts only agents). A connection whose peer fails any check, or that sends a
// malformed frame, is closed with a logged, named reason; nothing it sent after the last good
// frame is handed on. Other connections are not affected.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/ca.js';
import { type Identity, peerIdentity, type Role } from '../pki/roles.js';
import {
  decodeError,
  encodeFrame,
  errorFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_FRAME_PAYLOAD,
  WireErrorCode,
} from './frame.js';

const TLS_VERSION = 'TLSv1.3';
/**
 * Received frames held for a consumer that is behind before the socket stops reading.
 * Checked after a frame is queued, so a frame larger than this still gets through; beyond
 * it the sender is held back by TCP, which costs this process no memory.
 */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** How long a closing connection may take to flush its last bytes before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;
/** A client that has not completed the TLS handshake by then is dropped. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface EndpointOptions {
  material: TlsMaterial;
  logger: Logger;
  /** Roles whose certificates are accepted from the peer. */
  acceptRoles: readonly Role[];
  maxPayload?: number;
  maxQueuedBytes?: number;
}

function tlsOptions(m: TlsMaterial) {
  return { key: m.key, cert: m.cert, ca: m.ca, minVersion: TLS_VERSION, maxVersion: TLS_VERSION } as const;
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'ERR_SSL_CERTIFICATE_VERIFY_FAILED',
]);

/** A named reason for a TLS or socket error, for logs and for the caller. */
export function describeTlsError(err: Error & { code?: string; reason?: string }): string {
  const code = err.code ?? '';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'peer sent no certificate';
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
    return 'peer requires a certificate and we sent none (TLS alert certificate required)';
  }
  if (UNTRUSTED.has(code)) return `peer certificate is not issued by this deployment's CA (${code})`;
  if (code === 'CERT_HAS_EXPIRED') return 'peer certificate has expired (CERT_HAS_EXPIRED)';
  if (code === 'CERT_NOT_YET_VALID') return 'peer certificate is not yet valid (CERT_NOT_YET_VALID)';
  if (code === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA') {
    return "peer rejected our certificate: not issued by its deployment's CA (TLS alert unknown CA)";
  }
  if (code === 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' || code === 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR') {
    return `peer rejected our certificate (${code})`;
  }
  if (
    code === 'ERR_SSL_UNSUPPORTED_PROTOCOL' ||
    code === 'ERR_SSL_NO_PROTOCOLS_AVAILABLE' ||
    code === 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION'
  ) {
    return `peer does not speak TLS 1.3 (${code})`;
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_HTTP_REQUEST') {
    return `peer does not speak TLS (${code})`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return `peer certificate does not name the host: ${err.reason ?? err.message}`;
  if (code === 'ECONNRESET') return 'connection reset by peer';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'TLS handshake timed out';
  if (code === 'ECONNREFUSED') return `connection refused (${err.message})`;
  return `TLS error: ${err.message}${code ? ` (${code})` : ''}`;
}

/** host:port of the peer, or undefined once TLS has destroyed the socket (then it is not logged). */
function remoteOf(socket: tls.TLSSocket): string | undefined {
  const a = socket.remoteAddress;
  return a ? `${a.includes(':') ? `[${a}]` : a}:${socket.remotePort}` : undefined;
}

/**
 * Why the TLS server dropped a client before `secureConnection`. When the client's certificate
 * fails verification, Node destroys the socket itself and reports only a hang-up; the
 * verification error is on the socket.
 */
function clientRejection(err: Error, socket: tls.TLSSocket): string {
  const verify = socket.authorizationError as unknown as string | Error | null | undefined;
  if (verify) {
    const code =
      typeof verify === 'string' ? verify : ((verify as NodeJS.ErrnoException).code ?? verify.message);
    return describeTlsError(Object.assign(new Error(code), { code }));
  }
  if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') {
    return "peer hung up during the TLS handshake (it may not trust this server's certificate)";
  }
  return describeTlsError(err);
}

/** Checks a verified peer's identity against the roles accepted; returns it or a reason. */
function checkPeer(socket: tls.TLSSocket, accept: readonly Role[]): Identity | string {
  if (!socket.authorized) {
    return `peer certificate is not verified (${String(socket.authorizationError ?? 'no certificate')})`;
  }
  let id: Identity;
  try {
    id = peerIdentity(socket.getPeerCertificate());
  } catch (e) {
    return (e as Error).message;
  }
  if (!accept.includes(id.role)) {
    return `peer role '${id.role}' (${id.name}) is not accepted here (accepted: ${accept.join(', ')})`;
  }
  return id;
}

/** Sends what is left (optionally a last frame), then closes; destroys a peer that does not let go. */
function endSocket(socket: tls.TLSSocket, last?: Buffer): void {
  if (socket.destroyed) return;
  socket.resume(); // discard what the peer still sends, so that its end is seen and the socket closes
  if (last && socket.writable) socket.end(last);
  else socket.end();
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

let nextConnectionId = 1;

/**
 * One authenticated TLS connection that carries frames. Iterate it for the frames received
 * (one consumer at a time; the iteration ends when the connection closes, and closeReason then
 * says why if it was not a clean close); send() frames with backpressure.
 */
export class FrameConnection implements AsyncIterable<Frame> {
  readonly id = nextConnectionId++;
  readonly remote: string | undefined;
  /** Why the connection closed (undefined while open, or after a clean close by either side). */
  closeReason: string | undefined;
  /** The error code the peer closed with (its error frame), if it sent one. */
  peerErrorCode: number | undefined;
  /** Resolves when the socket has closed, with closeReason. */
  readonly closed: Promise<string | undefined>;

  private readonly log: Logger;
  private readonly decoder: FrameDecoder;
  private readonly queue: Frame[] = [];
  private queuedBytes = 0;
  private readonly maxQueued: number;
  private closing = false;
  private ended = false; // no more frames will arrive
  private wake: (() => void) | undefined;
  private drained: Promise<void> | undefined;

  constructor(
    readonly socket: tls.TLSSocket,
    readonly peer: Identity,
    logger: Logger,
    opts: { maxPayload?: number; maxQueuedBytes?: number } = {},
  ) {
    this.remote = remoteOf(socket);
    this.log = logger.child({ conn: this.id, peer: `${peer.role}/${peer.name}`, remote: this.remote });
    this.decoder = new FrameDecoder(opts.maxPayload ?? MAX_FRAME_PAYLOAD);
    this.maxQueued = opts.maxQueuedBytes ?? MAX_QUEUED_BYTES;
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.ended = true;
        this.notify();
        resolve(this.closeReason);
      });
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.onError(err));
  }

  /**
   * Sends an encoded frame. Resolves at once while the socket's buffer has room, otherwise when
   * it has drained: a sender that awaits each send never holds more than one buffer's worth.
   * Rejects if the connection is closed or closes before the buffer drains.
   */
  async sendRaw(bytes: Buffer): Promise<void> {
    if (this.closing || this.socket.destroyed || !this.socket.writable) {
      throw new Error(
        `wire connection ${this.id} is closed${this.closeReason ? `: ${this.closeReason}` : ''}`,
      );
    }
    if (this.socket.write(bytes)) return;
    this.drained ??= new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
        this.drained = undefined;
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () =>
        done(
          new Error(
            `wire connection ${this.id} closed while sending${this.closeReason ? `: ${this.closeReason}` : ''}`,
          ),
        );
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
    await this.drained;
  }

  send(type: FrameType, payload?: Uint8Array): Promise<void> {
    return this.sendRaw(encodeFrame(type, payload));
  }

  /**
   * Closes the connection. With a reason, the reason is logged at warn (`closing wire connection`)
   * and, with a code, sent to the peer in an error frame first; without one, it is a normal close
   * (logged at debug). Frames received but not yet iterated are dropped.
   */
  close(reason?: string, code?: WireErrorCode): void {
    if (this.closing) return;
    this.closing = true;
    this.ended = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.notify();
    if (reason !== undefined) {
      this.closeReason = reason;
      this.log.warn({ reason }, 'closing wire connection');
    } else {
      this.log.debug('closing wire connection');
    }
    endSocket(this.socket, code === undefined ? undefined : errorFrame(code, reason ?? 'closing'));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Frame> {
    for (;;) {
      const f = this.queue.shift();
      if (f) {
        this.queuedBytes -= f.payload.length;
        if (this.queuedBytes < this.maxQueued && this.socket.isPaused() && !this.closing)
          this.socket.resume();
        yield f;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.close((e as Error).message, WireErrorCode.Protocol);
      return;
    }
    for (const f of frames) {
      if (f.type === FrameType.Error) {
        this.onPeerError(f);
        break;
      }
      this.queue.push(f);
      this.queuedBytes += f.payload.length;
    }
    if (this.queuedBytes >= this.maxQueued) this.socket.pause();
    if (frames.length) this.notify();
  }

  /** The peer is closing and says why: frames before its error frame are still delivered. */
  private onPeerError(f: Frame): void {
    let text: string;
    try {
      const e = decodeError(f.payload);
      this.peerErrorCode = e.code;
      text = `peer closed the connection: ${e.message} (error code ${e.code})`;
    } catch (err) {
      text = `peer closed the connection with a malformed error frame: ${(err as Error).message}`;
    }
    this.closeReason = text;
    this.log.warn({ reason: text }, 'wire connection closed by peer');
    this.closing = true;
    this.ended = true;
    endSocket(this.socket);
  }

  private onEnd(): void {
    if (this.closing) return;
    try {
      this.decoder.end();
      this.log.debug('wire connection closed by peer');
    } catch (e) {
      this.closeReason = (e as Error).message;
      this.log.warn({ reason: this.closeReason }, 'closing wire connection');
    }
    this.ended = true;
    this.notify();
  }

  private onError(err: Error): void {
    if (this.closing) return;
    this.closing = true;
    this.ended = true;
    this.closeReason = describeTlsError(err);
    this.log.warn(
      { reason: this.closeReason, code: (err as NodeJS.ErrnoException).code },
      'wire connection failed',
    );
    this.notify();
  }
}

export interface FrameServerOptions extends EndpointOptions {
  host: string;
  port: number;
  /** Called for each connection whose peer passed every check. */
  onConnection: (conn: FrameConnection) => void | Promise<void>;
}

export interface FrameServer {
  server: tls.Server;
  address: AddressInfo;
  /** Connections open now. */
  connections: Set<FrameConnection>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Listens for mutual-TLS 1.3 connections from peers of the accepted roles. */
export async function listenFrames(opts: FrameServerOptions): Promise<FrameServer> {
  const log = opts.logger;
  const connections = new Set<FrameConnection>();
  const server = tls.createServer({
    ...tlsOptions(opts.material),
    requestCert: true,
    rejectUnauthorized: true,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  });
  server.on('tlsClientError', (err, socket) => {
    log.warn({ reason: clientRejection(err, socket), remote: remoteOf(socket) }, 'closing wire connection');
    socket.destroy();
  });
  server.on('secureConnection', (socket) => {
    const peer = checkPeer(socket, opts.acceptRoles);
    if (typeof peer === 'string') {
      log.warn({ reason: peer, remote: remoteOf(socket) }, 'closing wire connection');
      socket.on('error', () => undefined);
      endSocket(socket, errorFrame(WireErrorCode.Unauthorized, peer));
      return;
    }
    const conn = new FrameConnection(socket, peer, log, opts);
    connections.add(conn);
    void conn.closed.then(() => connections.delete(conn));
    log.info(
      { conn: conn.id, peer: `${peer.role}/${peer.name}`, remote: conn.remote },
      'wire connection accepted',
    );
    Promise.resolve()
      .then(() => opts.onConnection(conn))
      .catch((e: Error) => conn.close(`internal error: ${e.message}`, WireErrorCode.Internal));
  });
  server.on('error', (err) => log.error({ err }, 'wire listener error'));
  server.listen(opts.port, opts.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  log.info({ address: address.address, port: address.port }, 'wire server listening');
  return {
    server,
    address,
    connections,
    close: async () => {
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of connections) c.close('server shutting down', WireErrorCode.Shutdown);
      await done;
    },
  };
}

export interface ConnectOptions extends EndpointOptions {
  host: string;
  port: number;
  /** Name the server's certificate must carry (default: host). */
  servername?: string;
  timeoutMs?: number;
}

/**
 * Connects with mutual TLS 1.3 and checks the server's role. Rejects with an error naming why
 * (server certificate from another CA, wrong role, TLS failure, timeout).
 */
export async function connectFrames(opts: ConnectOptions): Promise<FrameConnection> {
  const log = opts.logger;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const socket = tls.connect({
    ...tlsOptions(opts.material),
    host: opts.host,
    port: opts.port,
    servername: opts.servername ?? (isIp(opts.host) ? undefined : opts.host),
    rejectUnauthorized: true,
  });
  const where = `${opts.host}:${opts.port}`;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`TLS handshake with ${where} timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect to ${where}: ${describeTlsError(err)}`));
      });
    });
  } catch (e) {
    socket.destroy();
    log.warn({ reason: (e as Error).message }, 'wire connection failed');
    throw e;
  }
  const peer = checkPeer(socket, opts.acceptRoles);
  if (typeof peer === 'string') {
    const reason = `server ${where}: ${peer}`;
    log.warn({ reason }, 'closing wire connection');
    socket.on('error', () => undefined);
    endSocket(socket, errorFrame(WireErrorCode.Unauthorized, peer));
    throw new Error(reason);
  }
  return new FrameConnection(socket, peer, log, opts);
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
