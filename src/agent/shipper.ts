// The agent's shipper: streams the durable part of the change log to the process
// server (see src/wire/log-streamer.ts), sends the machine's disks first, and trims the
// log once changes are durable there (never past the last checkpoint). Once a second it
// offers a position heartbeat ("as of now, every change has seq <= S") that travels to
// the master target behind those changes, so an idle machine's RPO stays small.
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/ca.js';
import { encodeDisks, type Frame, FrameType } from '../wire/frame.js';
import { LogStreamer, type StreamerStatus } from '../wire/log-streamer.js';
import { decodeReplicated, encodeReplicatedRequest } from '../wire/replicated-frame.js';
import { connectFrames } from '../wire/tls-endpoint.js';
import type { AckGate } from './ack-gate.js';
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
  /** How often a position heartbeat is offered (default 1000 ms). */
  heartbeatMs?: number;
  /** Told what the process server (or, in sync mode, the master target) has made durable. */
  ackGate?: AckGate;
}

/** How a process server too old to relay master-target acks refuses the request. */
const NO_RELAY = /(unknown|unexpected) frame type 10\b/;

export class Shipper {
  private readonly streamer: LogStreamer;
  readonly resync: Resync;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private resyncWarned = false;
  /** The process server refused the `replicated` request: stop asking. */
  private relayUnsupported = false;

  constructor(private readonly opts: ShipperOptions) {
    const { agent, logger, ackGate } = opts;
    const log = agent.log;
    const sync = ackGate?.mode === 'sync';
    if (ackGate) ackGate.remoteProblem = () => this.remoteProblem(sync);
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
        if (sync && !this.relayUnsupported && NO_RELAY.test(this.streamer.status().lastError ?? '')) {
          this.relayUnsupported = true;
          ackGate?.degrade(
            'the process server does not relay master-target acknowledgements (an older version): sync mode cannot be honoured',
          );
        }
        // The process server syncs its cache before its hello: everything before resumeFrom is durable there.
        // (Not when it claims more than this log holds: that is refused below.)
        if (ackGate?.mode === 'process-server' && resumeFrom > 0 && resumeFrom <= log.nextSeq)
          ackGate.remoteDurable(resumeFrom - 1);
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
      preamble: async () => [
        { type: FrameType.Disks, payload: encodeDisks(agent.diskInfo()) },
        ...(sync && !this.relayUnsupported
          ? [{ type: FrameType.Replicated, payload: encodeReplicatedRequest() }]
          : []),
      ],
      onAckNow: (seq) => {
        if (ackGate?.mode === 'process-server') ackGate.remoteDurable(seq);
      },
      onAck: async (seq) => {
        await agent.trimLog(seq);
      },
      onFrame: async (f) => this.onFrame(f, ackGate),
      makeDurable: () => agent.syncLog(),
    });
  }

  /** A relayed master-target ack (sync mode). */
  private async onFrame(f: Frame, ackGate: AckGate | undefined): Promise<void> {
    if (f.type !== FrameType.Replicated || ackGate?.mode !== 'sync') {
      throw new Error(`unexpected frame type ${f.type} from the process server`);
    }
    const { seq } = decodeReplicated(f.payload);
    const sent = this.streamer.status().sentThrough;
    if (seq > sent) throw new Error(`replicated seq ${seq} is beyond what was sent (${sent})`);
    ackGate.remoteDurable(seq);
  }

  private remoteProblem(sync: boolean): string | undefined {
    const s = this.streamer.status();
    if (!s.connected) return `process server not connected${s.lastError ? `: ${s.lastError}` : ''}`;
    if (sync && this.relayUnsupported)
      return 'the process server cannot relay master-target acknowledgements';
    if (sync) return 'the process server is connected; the master target has not confirmed';
    return undefined;
  }

  start(): void {
    this.streamer.start();
    this.resync.start();
    this.heartbeat();
    this.heartbeatTimer ??= setInterval(() => this.heartbeat(), this.opts.heartbeatMs ?? 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    await this.resync.stop();
    await this.streamer.stop();
  }

  resyncStatus(): ResyncStatus {
    return this.resync.status();
  }

  /**
   * Every change completed before now has a sequence number below nextSeq: that is the
   * promise. Not while any range is resync required: those changes are in no log record,
   * so no position can speak for them, and the replica's RPO must keep growing.
   */
  private heartbeat(): void {
    const { agent, logger } = this.opts;
    const dirty = resyncRequiredBytes(agent);
    if (dirty > 0) {
      if (!this.resyncWarned)
        logger.warn(
          { machineId: agent.machineId, resyncRequiredBytes: dirty },
          'shipper: ranges are resync required: position heartbeats stop until they are resynced',
        );
      this.resyncWarned = true;
      return;
    }
    this.resyncWarned = false;
    this.streamer.offerHeartbeat({ time: Date.now(), throughSeq: agent.log.nextSeq - 1 });
  }

  /** The process server's address, host:port. */
  get target(): string {
    return `${this.opts.host}:${this.opts.port}`;
  }

  status(): StreamerStatus {
    return this.streamer.status();
  }
}

/** Bytes of the captured disks marked resync required (changes that have no log record). */
export function resyncRequiredBytes(agent: Agent): number {
  return agent.captured.reduce((n, d) => n + d.bitmap.dirtyBytes, 0);
}
