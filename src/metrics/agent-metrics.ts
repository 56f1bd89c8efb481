// The agent's metrics: change log size and limit, backlog the process server has not
// acknowledged, resync-required bytes, shipper state. One sample per machine (an agent
// protects one machine).
import type { Registry } from 'prom-client';
import type { Agent } from '../agent/agent.js';
import { type AgentLiveStatus, agentLiveStatus } from '../agent/live-status.js';
import type { Shipper } from '../agent/shipper.js';
import { itemGauge, problemGauge } from './registry.js';

export function registerAgentMetrics(registry: Registry, agent: Agent, shipper?: Shipper): void {
  const items = () => [agentLiveStatus(agent, shipper)];
  const g = (name: string, help: string, value: (s: AgentLiveStatus) => number | boolean | undefined) =>
    itemGauge(registry, `rebound_agent_${name}`, help, items, value);
  g('log_bytes', 'Bytes in the change log files (and queued for them).', (s) => s.logBytes);
  g('log_limit_bytes', 'The change log size limit (--log-limit).', (s) => s.logLimitBytes);
  g(
    'resync_required_bytes',
    'Bytes of the protected disks marked resync required (changes with no log record).',
    (s) => s.resyncRequiredBytes,
  );
  g(
    'backlog_bytes',
    'Change-log bytes the process server has not acknowledged (absent without a process server).',
    (s) => s.shipper?.backlogBytes,
  );
  g('shipper_connected', '1 while the shipper is connected to its process server.', (s) =>
    s.shipper ? s.shipper.connected : undefined,
  );
  g('acked_seq', 'Highest sequence number durable at the process server.', (s) => s.shipper?.ackedThrough);
  g('next_seq', 'The next sequence number the change log hands out.', () => agent.log.nextSeq);
  problemGauge(registry, 'rebound_agent_health_problem', items);
}
