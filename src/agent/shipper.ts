// The agent's shipper: streams the durable part of the change log to the process
// server (see src/wire/log-streamer.ts), sends the machine's disks first, and trims the
// log once changes are durable there (never past the last checkpoint).
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/ca.js';
import { encodeDisks, FrameType } from '../wire/frame.js';
import { LogStreamer, type StreamerStatus } from '../wire/log-streamer.js';
import { connectFrames } from '../wire/tls-endpoint.js';
import type { Agent } from './agent.js';
import { Resync, type ResyncStatus } from './resync.js';

export interface ShipperOptions {
  agent: Agent;
  host: string;
  port: number;
  material: TlsMaterial;
  /** This agent's component name (its certificate's). */
  name: string;
  logger: Logger;
}

export class Shipper {
  private readonly streamer: LogStreamer;
  readonly resync: Resync;

  constructor(opts: ShipperOptions) {
    const { agent, logger } = opts;
    const log = agent.log;
    const connect = () =>
      connectFrames({
        host: opts.host,
        port: opts.port,
        material: opts.material,
        logger,
        acceptRoles: ['process-server'],
      });
    this.resync = new Resync({ agent, connect, name: opts.name, logger });
    agent.resyncWake = () => this.resync.kick();
    agent.replicationStatus = () => ({ shipper: this.status(), resync: this.resync.status() });
    this.streamer = new LogStreamer({
      what: 'shipper',
      log,
      logger,
      connect,
      hello: { resumeFrom: 0, role: 'agent', name: opts.name, machineId: agent.machineId },
      resume: async (resumeFrom) => {
        const from = resumeFrom === 0 ? log.trimmedThrough + 1 : resumeFrom;
        if (from > log.nextSeq) {
          throw new Error(
            `process server wants seq ${from} but this agent's log ends at ${log.nextSeq - 1}: ` +
              'is it the same machine (was the agent data dir replaced)?',
          );
        }
        if (from <= log.trimmedThrough) {
          // Changes the replica never got are gone from the log: only a resync can bring them.
          logger.error(
            { wanted: from, trimmedThrough: log.trimmedThrough },
            'shipper: the process server lacks changes this log no longer holds: every disk is marked resync required',
          );
          await agent.markAllResyncRequired();
          this.resync.kick();
          return log.trimmedThrough + 1;
        }
        return from;
      },
      preamble: async () => [{ type: FrameType.Disks, payload: encodeDisks(agent.diskInfo()) }],
      onAck: async (seq) => {
        await agent.trimLog(seq);
      },
      makeDurable: () => agent.syncLog(),
    });
  }

  start(): void {
    this.streamer.start();
    this.resync.start();
  }

  async stop(): Promise<void> {
    await this.resync.stop();
    await this.streamer.stop();
  }

  resyncStatus(): ResyncStatus {
    return this.resync.status();
  }

  status(): StreamerStatus {
    return this.streamer.status();
  }
}
