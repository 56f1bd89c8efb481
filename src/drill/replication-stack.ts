// The drill's recovery site, in the drill's own process: a deployment CA, a master
// target and a process server on loopback, and the agent's shipper, each hop over
// mutual TLS exactly as separate machines would run them.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Agent } from '../agent/agent.js';
import { Shipper } from '../agent/shipper.js';
import { MasterTarget } from '../master-target/master-target.js';
import type { Replica } from '../master-target/replica.js';
import { initCa, issueCert, loadTlsMaterial } from '../pki/ca.js';
import { ProcessServer } from '../process-server/process-server.js';

export interface ReplicationStack {
  masterTarget: MasterTarget;
  processServer: ProcessServer;
  shipper: Shipper;
  /** Waits until the initial replication has ended (the machine is protected); returns its ms. */
  waitForProtected(machineId: string, timeoutMs?: number): Promise<number>;
  /** Waits until the master target holds the bookmark with this tag; returns its replica. */
  waitForBookmark(machineId: string, tag: string, timeoutMs?: number): Promise<Replica>;
  close(): Promise<void>;
}

export async function startReplicationStack(
  work: string,
  agent: Agent,
  logger: Logger,
): Promise<ReplicationStack> {
  const ca = join(work, 'ca');
  const tls = join(work, 'tls');
  await initCa(ca);
  const ids = [
    { role: 'agent', name: 'drill-agent' },
    { role: 'process-server', name: 'drill-ps' },
    { role: 'master-target', name: 'drill-mt' },
  ] as const;
  for (const id of ids) await issueCert(ca, { ...id, outDir: tls });
  const [agentTls, psTls, mtTls] = await Promise.all(ids.map((id) => loadTlsMaterial(tls, id)));
  const masterTarget = await MasterTarget.start({
    dataDir: join(work, 'mt'),
    retentionDir: join(work, 'retention'),
    host: '127.0.0.1',
    port: 0,
    material: mtTls!,
    name: 'drill-mt',
    logger,
  });
  const processServer = await ProcessServer.start({
    dataDir: join(work, 'ps'),
    host: '127.0.0.1',
    port: 0,
    material: psTls!,
    name: 'drill-ps',
    logger,
    masterTarget: { host: '127.0.0.1', port: masterTarget.port },
  });
  const shipper = new Shipper({
    agent,
    host: '127.0.0.1',
    port: processServer.port,
    material: agentTls!,
    name: 'drill-agent',
    logger,
  });
  shipper.start();
  return {
    masterTarget,
    processServer,
    shipper,
    async waitForProtected(machineId, timeoutMs = 60_000) {
      const started = Date.now();
      for (;;) {
        const replica = masterTarget.replica(machineId);
        const r = shipper.resyncStatus();
        if (replica && replica.resyncOpenSince === undefined && r.state === 'idle' && r.passes > 0) {
          return Date.now() - started;
        }
        if (Date.now() - started > timeoutMs) {
          throw new Error(
            `the initial replication did not end in ${timeoutMs} ms (resync ${JSON.stringify(r)})`,
          );
        }
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    async waitForBookmark(machineId, tag, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const replica = masterTarget.replica(machineId);
        if (replica?.recoveryPoints().some((p) => p.tag === tag)) return replica;
        if (Date.now() > deadline) {
          throw new Error(
            `bookmark '${tag}' did not reach the master target in ${timeoutMs} ms ` +
              `(replica applied through ${replica?.appliedThrough ?? 'nothing'}, resync open since ` +
              `${replica?.resyncOpenSince ?? 'none'}; shipper ${JSON.stringify(shipper.status())}; ` +
              `resync ${JSON.stringify(shipper.resyncStatus())})`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async close() {
      await shipper.stop();
      await processServer.close();
      await masterTarget.close();
    },
  };
}
