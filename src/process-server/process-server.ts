// The process server: terminates agent streams over mutual TLS, keeps each machine's
// changes in a durable cache (a change log under the agent's own sequence numbers),
// and acknowledges only what it has fsynced. Forwarding to the master target is the
// next step (docs/architecture.md); until then the cache grows up to its limit.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ChangeLog } from '../changelog/change-log.js';
import { markerPayload, RecordType } from '../changelog/record.js';
import type { TlsMaterial } from '../pki/ca.js';
import {
  decodeChange,
  decodeHello,
  decodeMarker,
  encodeAck,
  encodeHello,
  type Frame,
  FrameError,
  FrameType,
  WireErrorCode,
} from '../wire/frame.js';
import { type FrameConnection, type FrameServer, listenFrames } from '../wire/tls-endpoint.js';

export interface ProcessServerOptions {
  dataDir: string;
  host: string;
  port: number;
  material: TlsMaterial;
  /** This process server's component name (its certificate's). */
  name: string;
  logger: Logger;
  /** Per machine; beyond it the stream waits (the agent's backlog grows). Default 8 GiB. */
  cacheLimitBytes?: number;
}

/** Appended but not yet written to the cache file: the stream pauses beyond this. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
const MACHINE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

interface MachineCache {
  id: string;
  log: ChangeLog;
  /** The connection streaming this machine now (a newer one replaces it). */
  conn: FrameConnection | undefined;
  ackedThrough: number;
}

export interface MachineStatus {
  machineId: string;
  /** Highest sequence durable in the cache (and acknowledged). */
  ackedThrough: number;
  cacheBytes: number;
  connected: boolean;
}

export class ProcessServer {
  private readonly machines = new Map<string, MachineCache>();
  private opening = new Map<string, Promise<MachineCache>>();

  private constructor(
    private readonly opts: ProcessServerOptions,
    private server: FrameServer | undefined,
  ) {}

  static async start(opts: ProcessServerOptions): Promise<ProcessServer> {
    mkdirSync(join(opts.dataDir, 'machines'), { recursive: true });
    const ps = new ProcessServer(opts, undefined);
    ps.server = await listenFrames({
      host: opts.host,
      port: opts.port,
      material: opts.material,
      logger: opts.logger,
      acceptRoles: ['agent'],
      onConnection: (conn) => ps.serveAgent(conn),
    });
    return ps;
  }

  get port(): number {
    return this.server!.address.port;
  }

  status(): MachineStatus[] {
    return [...this.machines.values()].map((m) => ({
      machineId: m.id,
      ackedThrough: m.ackedThrough,
      cacheBytes: m.log.bytes,
      connected: m.conn !== undefined,
    }));
  }

  /** The cache of one machine, opened on first use (read it with records()). */
  async cache(machineId: string): Promise<ChangeLog> {
    return (await this.machine(machineId)).log;
  }

  private machine(id: string): Promise<MachineCache> {
    const known = this.machines.get(id);
    if (known) return Promise.resolve(known);
    let p = this.opening.get(id);
    if (!p) {
      p = (async () => {
        const log = await ChangeLog.open(join(this.opts.dataDir, 'machines', id, 'cache'), {
          maxBytes: this.opts.cacheLimitBytes ?? 8 * 1024 ** 3,
          segmentBytes: 64 * 1024 * 1024,
          logger: this.opts.logger,
        });
        const m: MachineCache = { id, log, conn: undefined, ackedThrough: log.durableSeq };
        this.machines.set(id, m);
        this.opening.delete(id);
        return m;
      })();
      this.opening.set(id, p);
    }
    return p;
  }

  private async serveAgent(conn: FrameConnection): Promise<void> {
    const log = this.opts.logger.child({ conn: conn.id });
    const frames = conn[Symbol.asyncIterator]();
    const first = await frames.next();
    if (first.done) return;
    if (first.value.type !== FrameType.Hello) {
      conn.close(`expected hello first, got frame type ${first.value.type}`, WireErrorCode.Protocol);
      return;
    }
    let machineId: string;
    try {
      const hello = decodeHello(first.value.payload);
      machineId = hello.machineId ?? '';
      if (hello.role !== 'agent') throw new FrameError(`hello says role '${hello.role}', expected agent`);
      if (!MACHINE_ID.test(machineId)) throw new FrameError(`hello machine id '${machineId}' is not valid`);
    } catch (e) {
      conn.close((e as Error).message, WireErrorCode.Protocol);
      return;
    }
    const m = await this.machine(machineId);
    if (m.conn && m.conn !== conn) m.conn.close('replaced by a newer connection from the same machine');
    m.conn = conn;
    // resumeFrom 0: nothing ever received, the agent starts with the oldest change it has.
    const resumeFrom = m.log.nextSeq > 1 || m.log.trimmedThrough > 0 ? m.log.nextSeq : 0;
    await conn.send(
      FrameType.Hello,
      encodeHello({ resumeFrom, role: 'process-server', name: this.opts.name, machineId }),
    );
    log.info({ machineId, resumeFrom }, 'process server: agent stream started');
    try {
      await this.receive(conn, frames, m);
    } finally {
      if (m.conn === conn) m.conn = undefined;
    }
  }

  private async receive(conn: FrameConnection, frames: AsyncIterator<Frame>, m: MachineCache): Promise<void> {
    const pending: { written: Promise<void>; bytes: number }[] = [];
    let pendingBytes = 0;
    let ackScheduled = false;
    const ack = async () => {
      ackScheduled = false;
      try {
        await m.log.sync();
      } catch (e) {
        conn.close(`cache sync failed: ${(e as Error).message}`, WireErrorCode.Internal);
        return;
      }
      const durable = m.log.durableSeq;
      if (durable > m.ackedThrough && m.conn === conn) {
        m.ackedThrough = durable;
        await conn.send(FrameType.Ack, encodeAck({ seq: durable })).catch(() => undefined);
      }
    };
    for (;;) {
      const n = await frames.next();
      if (n.done) return;
      const f = n.value;
      let appended: { written: Promise<void> };
      try {
        appended = await this.append(m, f);
      } catch (e) {
        conn.close(
          (e as Error).message,
          e instanceof FrameError ? WireErrorCode.Protocol : WireErrorCode.Internal,
        );
        return;
      }
      pending.push({ written: appended.written, bytes: f.payload.length });
      pendingBytes += f.payload.length;
      // Bounded memory: the cache's append queue holds the payloads until they are written.
      while (pendingBytes > MAX_PENDING_BYTES || pending.length > 4096) {
        const p = pending.shift()!;
        await p.written;
        pendingBytes -= p.bytes;
      }
      // Group commit: one sync and ack for every frame that arrived in this turn.
      if (!ackScheduled) {
        ackScheduled = true;
        setImmediate(() => void ack());
      }
    }
  }

  private async append(m: MachineCache, f: Frame): Promise<{ written: Promise<void> }> {
    const log = m.log;
    if (f.type === FrameType.Change) {
      const c = decodeChange(f.payload);
      this.checkSeq(log, c.seq);
      await this.waitForRoom(log, c.data.length);
      const type =
        c.kind === 'write' ? RecordType.Write : c.kind === 'zero' ? RecordType.Zero : RecordType.Trim;
      return log.appendAt(c.seq, {
        type,
        flags: c.flags,
        disk: c.disk,
        time: c.time,
        offset: c.offset,
        length: c.length,
        payload: c.data,
      });
    }
    if (f.type === FrameType.Marker) {
      const mk = decodeMarker(f.payload);
      this.checkSeq(log, mk.seq);
      return log.appendAt(mk.seq, {
        type: mk.kind === 'flush' ? RecordType.Flush : RecordType.Bookmark,
        flags: 0,
        disk: 0,
        time: mk.time,
        offset: 0,
        length: 0,
        payload: markerPayload(0, mk.kind === 'bookmark' ? mk.tag : undefined),
      });
    }
    if (f.type === FrameType.Heartbeat) return { written: Promise.resolve() };
    throw new FrameError(`unexpected frame type ${f.type} in an agent stream`);
  }

  private checkSeq(log: ChangeLog, seq: number): void {
    if (seq < log.nextSeq) {
      throw new FrameError(`seq ${seq} repeats or goes back (this cache's next seq is ${log.nextSeq})`);
    }
  }

  private async waitForRoom(log: ChangeLog, bytes: number): Promise<void> {
    let warned = false;
    while (!log.hasRoom(bytes)) {
      if (!warned) {
        this.opts.logger.warn({ cacheBytes: log.bytes }, 'process server cache full: the agent stream waits');
        warned = true;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async close(): Promise<void> {
    await this.server?.close();
    for (const m of this.machines.values()) await m.log.close();
  }
}
