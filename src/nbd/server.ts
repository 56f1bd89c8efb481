// The NBD server: TCP and Unix-socket listeners in front of a set of exports.
import { existsSync, unlinkSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { NbdConnection } from './connection.js';
import type { ExportLookup } from './export.js';

export class NbdServer {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private nextId = 1;

  constructor(
    private readonly exports: ExportLookup,
    private readonly log: Logger,
  ) {}

  get connectionCount(): number {
    return this.sockets.size;
  }

  private accept(accepted: Socket): void {
    const id = this.nextId++;
    const peer = accepted.remoteAddress ? `${accepted.remoteAddress}:${accepted.remotePort}` : 'unix';
    const conn = new NbdConnection(accepted, this.exports, this.log.child({ conn: id, peer }));
    const socket = conn.stream;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    void conn.run();
  }

  private listen(arg: { host: string; port: number } | { path: string }): Promise<Server> {
    // Paused, so that a connection can take the socket over before anything is read.
    const server = createServer({ pauseOnConnect: true }, (s) => this.accept(s));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = () => {
        server.off('error', reject);
        server.on('error', (e) => this.log.error({ err: e }, 'NBD listener error'));
        resolve(server);
      };
      if ('path' in arg) server.listen(arg.path, done);
      else server.listen(arg.port, arg.host, done);
    });
  }

  async listenTcp(host: string, port: number): Promise<AddressInfo> {
    const s = await this.listen({ host, port });
    const addr = s.address() as AddressInfo;
    this.log.info({ host: addr.address, port: addr.port }, 'NBD server listening on TCP');
    return addr;
  }

  async listenUnix(path: string): Promise<void> {
    if (existsSync(path)) unlinkSync(path); // a stale socket from a previous run
    await this.listen({ path });
    this.log.info({ path }, 'NBD server listening on a Unix socket');
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(() => r(undefined)))));
  }
}
