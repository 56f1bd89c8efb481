// What a running agent says about its acknowledgement mode and app-consistent points
// (its control socket's /status), for `rebound agent log`.
import type { AckGateStatus } from './ack-gate.js';
import type { AppPointsStatus } from './app-points.js';
import type { CongestionStatus } from './congestion.js';
import { callAgent } from './control-server.js';

export interface PolicyStatus {
  ack?: AckGateStatus;
  appConsistent?: AppPointsStatus;
  congestion?: CongestionStatus;
}

/** The running agent's status, or undefined when none answers on the data dir's socket. */
export async function fetchPolicyStatus(dataDir: string): Promise<PolicyStatus | undefined> {
  try {
    const r = await callAgent(dataDir, 'GET', '/status');
    if (r.status !== 200) return undefined;
    return {
      ack: r.body.ack as AckGateStatus | undefined,
      appConsistent: r.body.appConsistent as AppPointsStatus | undefined,
      congestion: r.body.congestion as CongestionStatus | undefined,
    };
  } catch {
    return undefined;
  }
}

export function formatPolicyStatus(s: PolicyStatus): string {
  const lines: string[] = [];
  const a = s.ack;
  if (a) {
    if (a.mode === 'async')
      lines.push(`acknowledgement mode async: a FLUSH is acknowledged once in ${a.durableAt}`);
    else {
      lines.push(
        `acknowledgement mode ${a.mode}: ${a.state}` +
          (a.state === 'ok'
            ? ` (a FLUSH is acknowledged once in ${a.durableAt})`
            : ` since ${a.degradedSince}: acknowledged once in the agent's change log only: ${a.reason}`),
      );
      lines.push(
        `  durable at the remote through seq ${a.remoteDurableThrough}` +
          (a.owedThrough ? `; acknowledged without it through seq ${a.owedThrough}` : '') +
          `; ${a.waiting} waiting; timeout ${a.timeoutSeconds} s; degraded ${a.degradations} times`,
      );
    }
  }
  const c = s.congestion;
  if (c) {
    const state =
      c.state === 'blocking'
        ? `blocking: ${c.blockedNow} changes wait for room in the log`
        : c.state === 'pulled-ahead'
          ? `pulled ahead: ${c.pulledAhead} changes went to the dirty bitmap (resync required)`
          : 'none';
    lines.push(
      `congestion policy ${c.policy}${c.policy === 'block' ? ` (at most ${c.blockTimeoutSeconds} s)` : ''}: ${state}`,
    );
  }
  const p = s.appConsistent;
  if (p) {
    lines.push(
      `app-consistent points: ${p.off ? `off (${p.off})` : `every ${p.intervalMinutes} min, next at ${p.next ?? 'now'}`}; ` +
        `${p.taken} taken, ${p.failed} failed`,
    );
    const l = p.last;
    if (l)
      lines.push(
        l.kind === 'app'
          ? `  last: app point '${l.tag}' at seq ${l.seq} (${l.time}, frozen ${l.frozenMs} ms)`
          : `  last: failed at ${l.time}: ${l.reason}; crash-consistent flush at seq ${l.seq ?? 'none'}`,
      );
    if (l?.thawError) lines.push(`  last thaw failed: ${l.thawError}`);
  }
  return lines.join('\n');
}
