// Metrics endpoint and health logging for each long-running component, started by its
// CLI command: a registry of its own, /metrics when --metrics-listen is given, and a
// monitor that logs health problems (with machineId, seq, rpoSeconds) as they come and go.
import type { Logger } from 'pino';
import type { Agent } from '../agent/agent.js';
import { agentLiveStatus } from '../agent/live-status.js';
import type { Shipper } from '../agent/shipper.js';
import type { MasterTarget } from '../master-target/master-target.js';
import { processServerProblems } from '../process-server/machine-health.js';
import type { ProcessServer } from '../process-server/process-server.js';
import { HealthMonitor, type MonitoredItem } from '../util/health.js';
import { rpoSeconds } from '../wire/stream-freshness.js';
import { registerAgentMetrics } from './agent-metrics.js';
import { registerMasterTargetMetrics } from './master-target-metrics.js';
import { type MetricsEndpoint, startMetricsServer } from './metrics-server.js';
import { registerProcessServerMetrics } from './process-server-metrics.js';
import { newRegistry } from './registry.js';

export interface Observability {
  /** The /metrics endpoint, when one was asked for. */
  metrics?: MetricsEndpoint;
  close(): Promise<void>;
}

type Listen = { host: string; port: number } | undefined;

async function start(
  what: string,
  logger: Logger,
  listen: Listen,
  register: (r: ReturnType<typeof newRegistry>) => void,
  items: () => MonitoredItem[],
): Promise<Observability> {
  const monitor = new HealthMonitor({ what, logger, items });
  monitor.start();
  let metrics: MetricsEndpoint | undefined;
  if (listen) {
    const registry = newRegistry();
    register(registry);
    try {
      metrics = await startMetricsServer({ ...listen, registry, logger, what });
    } catch (e) {
      monitor.stop();
      throw e;
    }
  }
  return {
    metrics,
    async close() {
      monitor.stop();
      await metrics?.close();
    },
  };
}

export function startAgentObservability(
  agent: Agent,
  shipper: Shipper | undefined,
  logger: Logger,
  listen: Listen,
): Promise<Observability> {
  return start(
    'agent',
    logger,
    listen,
    (r) => registerAgentMetrics(r, agent, shipper),
    () => {
      const s = agentLiveStatus(agent, shipper);
      return [{ machineId: s.machineId, seq: agent.log.nextSeq - 1, health: s.health }];
    },
  );
}

export function startProcessServerObservability(
  ps: ProcessServer,
  logger: Logger,
  listen: Listen,
  forwarding: boolean,
): Promise<Observability> {
  return start(
    'process server',
    logger,
    listen,
    (r) => registerProcessServerMetrics(r, ps, forwarding),
    () => {
      const now = Date.now();
      return ps.status().map((s) => ({
        machineId: s.machineId,
        seq: s.ackedThrough,
        rpoSeconds: rpoSeconds(now, s.replicaCurrentAsOf),
        health: processServerProblems(s, now, { forwarding }),
      }));
    },
  );
}

export function startMasterTargetObservability(
  mt: MasterTarget,
  logger: Logger,
  listen: Listen,
): Promise<Observability> {
  return start(
    'master target',
    logger,
    listen,
    (r) => registerMasterTargetMetrics(r, mt),
    () =>
      mt.status().map((s) => ({
        machineId: s.machineId,
        seq: s.appliedThrough,
        rpoSeconds: s.rpoSeconds,
        health: s.health,
      })),
  );
}
