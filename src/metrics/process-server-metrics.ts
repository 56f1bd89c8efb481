// The process server's metrics, one sample per machine it caches: cache size, the backlog
// the master target has not acknowledged, sequence numbers on both hops, connections,
// and the RPO as the master target's acknowledgements prove it.
import type { Registry } from 'prom-client';
import { processServerProblems } from '../process-server/machine-health.js';
import type { MachineStatus, ProcessServer } from '../process-server/process-server.js';
import { rpoSeconds } from '../wire/stream-freshness.js';
import { itemGauge, problemGauge } from './registry.js';

export function registerProcessServerMetrics(
  registry: Registry,
  ps: ProcessServer,
  forwarding: boolean,
): void {
  const items = () => ps.status();
  const g = (name: string, help: string, value: (s: MachineStatus) => number | boolean | undefined) =>
    itemGauge(registry, `rebound_process_server_${name}`, help, items, value);
  g('cache_bytes', 'Bytes in the machine’s cache files.', (s) => s.cacheBytes);
  g(
    'backlog_bytes',
    'Cache bytes the master target has not acknowledged (applied and durable).',
    (s) => s.backlogBytes,
  );
  g(
    'acked_seq',
    'Highest sequence number durable in the cache (acknowledged to the agent).',
    (s) => s.ackedThrough,
  );
  g(
    'forwarded_seq',
    'Highest sequence number the master target has acknowledged.',
    (s) => s.forwardedThrough,
  );
  g('agent_connected', '1 while the machine’s agent is streaming here.', (s) => s.connected);
  g(
    'forwarder_connected',
    '1 while the machine is being forwarded to the master target.',
    (s) => s.forwarderConnected,
  );
  g(
    'rpo_seconds',
    'Now minus the source time through which the master target provably holds every change.',
    (s) => rpoSeconds(Date.now(), s.replicaCurrentAsOf),
  );
  g('agent_heartbeat_age_seconds', 'Seconds since the agent’s last position heartbeat arrived.', (s) =>
    s.lastHeartbeat ? (Date.now() - s.lastHeartbeat.receivedAt) / 1000 : undefined,
  );
  problemGauge(registry, 'rebound_process_server_health_problem', () => {
    const now = Date.now();
    return ps
      .status()
      .map((s) => ({ machineId: s.machineId, health: processServerProblems(s, now, { forwarding }) }));
  });
}
