// Replication as the configuration server asks for it: a registered agent started without
// --process-server hears in each heartbeat answer where to ship (and in which acknowledgement
// mode), or that it must not ship. A change starts, moves or stops the shipper while the agent
// keeps serving its disks; the change log keeps everything in between, so nothing is lost.
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/ca.js';
import { ACK_MODES, AckGate, type AckMode } from './ack-gate.js';
import type { Agent } from './agent.js';
import { Shipper } from './shipper.js';

/** What the heartbeat answer's `replication` field carries that the agent acts on. */
export interface ManagedReplicationConfig {
  /** host:port of the process server. */
  processServer: string;
  ackMode: string;
}

export interface ManagedReplicationOptions {
  agent: Agent;
  material: TlsMaterial;
  /** This agent's component name (its certificate's). */
  name: string;
  logger: Logger;
  ackTimeoutMs: number;
}

function hostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!m || Number(m[3]) > 65535) throw new Error(`process server address '${text}' is not HOST:PORT`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

export class ManagedReplication {
  private current: Shipper | undefined;
  private gate: AckGate | undefined;
  private key = '';
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ManagedReplicationOptions) {}

  /** The shipper running now, if any. */
  get shipper(): Shipper | undefined {
    return this.current;
  }

  /**
   * Applies the server's answer: a configuration, null (stop shipping), or undefined (the
   * server said nothing about replication: keep what runs). Changes are applied one at a time.
   */
  apply(config: ManagedReplicationConfig | null | undefined): Promise<void> {
    this.chain = this.chain
      .then(() => this.applyNow(config))
      .catch((e) => this.opts.logger.error({ err: e }, `replication change failed: ${(e as Error).message}`));
    return this.chain;
  }

  private async applyNow(config: ManagedReplicationConfig | null | undefined): Promise<void> {
    if (config === undefined) return;
    const { agent, logger } = this.opts;
    const key = config ? `${config.processServer}|${config.ackMode}` : '';
    if (key === this.key) return;
    if (this.current) {
      await this.current.stop();
      this.current = undefined;
      agent.replicationStatus = undefined;
      agent.resyncWake = undefined;
      if (!config) {
        // Disabled: the replica is deleted. Should replication start again, every disk is
        // compared block by block with the new replica (only what differs moves).
        await agent.markAllResyncRequired();
        logger.info(
          'replication stopped: the configuration server no longer asks for it; disks marked resync required',
        );
      }
    }
    this.gate?.close();
    this.gate = undefined;
    // Not shipping: flushes are acknowledged on the local log alone.
    if (!config) agent.setAckGate(new AckGate({ mode: 'async', timeoutMs: this.opts.ackTimeoutMs, logger }));
    if (config) {
      const { host, port } = hostPort(config.processServer);
      const mode = (ACK_MODES as readonly string[]).includes(config.ackMode)
        ? (config.ackMode as AckMode)
        : 'async';
      if (mode !== config.ackMode)
        logger.warn({ ackMode: config.ackMode }, 'unknown acknowledgement mode: async used');
      this.gate = new AckGate({ mode, timeoutMs: this.opts.ackTimeoutMs, logger });
      agent.setAckGate(this.gate);
      this.current = new Shipper({
        agent,
        host,
        port,
        material: this.opts.material,
        name: this.opts.name,
        logger,
        ackGate: this.gate,
      });
      this.current.start();
      logger.info(
        { processServer: config.processServer, ackMode: mode },
        'replication started as the configuration server asks',
      );
    }
    this.key = key;
  }

  async stop(): Promise<void> {
    await this.chain;
    await this.current?.stop();
    this.current = undefined;
  }
}
