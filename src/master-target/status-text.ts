// `rebound master-target status` without --json: one block per machine, health last.
import { formatSize } from '../util/size.js';
import type { MachineStatusJson } from './replication-status.js';

export function formatMachineStatus(s: MachineStatusJson): string {
  const lines = [`machine ${s.machineId}: ${s.connected ? 'streaming' : 'NOT STREAMING'}`];
  lines.push(
    s.rpoSeconds === null
      ? '  RPO unknown (nothing applied and no heartbeat yet)'
      : `  RPO ${s.rpoSeconds.toFixed(1)} s (every change made before ${s.currentAsOf} is in the replica)`,
  );
  const newest = s.appliedTime ? ` (newest change ${s.appliedTime})` : '';
  lines.push(`  applied through seq ${s.appliedThrough}${newest}`);
  const crash = s.latestCrashPoint;
  lines.push(`  latest crash-consistent point: ${crash ? `seq ${crash.seq} at ${crash.time}` : 'none'}`);
  const app = s.latestAppPoint;
  lines.push(`  latest app-consistent point: ${app ? `seq ${app.seq} '${app.tag}' at ${app.time}` : 'none'}`);
  lines.push(`  journal ${formatSize(s.journalBytes)}; points from seq ${s.oldestPoint} on are viewable`);
  if (s.health.length === 0) lines.push('  health: ok');
  else {
    lines.push('  health problems:');
    for (const p of s.health) lines.push(`    ${p.code}: ${p.message}`);
  }
  return lines.join('\n');
}
