// The master target's metrics, one sample per replicated machine: RPO, applied sequence,
// the latest crash- and app-consistent points, journal bytes, stream state, and one
// sample per health problem (value 1, labelled with its code) for alerting.
import type { Registry } from 'prom-client';
import type { MasterTarget } from '../master-target/master-target.js';
import type { MachineStatus } from '../master-target/replication-status.js';
import { itemGauge, problemGauge, unixSeconds } from './registry.js';

export function registerMasterTargetMetrics(registry: Registry, mt: MasterTarget): void {
  const items = () => mt.status();
  const g = (name: string, help: string, value: (s: MachineStatus) => number | boolean | undefined) =>
    itemGauge(registry, `rebound_master_target_${name}`, help, items, value);
  g(
    'rpo_seconds',
    'Now minus the source time through which the replica holds every change (newest applied change or proven heartbeat).',
    (s) => s.rpoSeconds,
  );
  g('applied_seq', 'Highest sequence number applied to the replica and durable.', (s) => s.appliedThrough);
  g(
    'current_as_of_timestamp_seconds',
    'Source time through which the replica holds every change (Unix seconds).',
    (s) => unixSeconds(s.currentAsOf),
  );
  g(
    'latest_crash_point_timestamp_seconds',
    'Source time of the newest crash-consistent point (flush) that can be viewed.',
    (s) => unixSeconds(s.latestCrash?.time),
  );
  g(
    'latest_app_point_timestamp_seconds',
    'Source time of the newest app-consistent point (bookmark) that can be viewed.',
    (s) => unixSeconds(s.latestApp?.time),
  );
  g('journal_bytes', 'Bytes of the machine’s undo journal on the retention volume.', (s) => s.journalBytes);
  g('stream_connected', '1 while a process server streams this machine here.', (s) => s.connected);
  problemGauge(registry, 'rebound_master_target_health_problem', items);
}
