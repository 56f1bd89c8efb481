// Parsing of the agent's replication-policy options (acknowledgement mode, app-consistent
// frequency, congestion), with errors that name the bad value.
import { ACK_MODES, type AckMode } from '../agent/ack-gate.js';
import { MAX_APP_CONSISTENT_MINUTES } from '../agent/app-points.js';
import { CONGESTION_POLICIES, type CongestionPolicy } from '../agent/congestion.js';

export function parseAckMode(text: string): AckMode {
  if (!(ACK_MODES as readonly string[]).includes(text)) {
    throw new Error(`--ack-mode '${text}' is not one of ${ACK_MODES.join(', ')}`);
  }
  return text as AckMode;
}

export function parseCongestionPolicy(text: string): CongestionPolicy {
  if (!(CONGESTION_POLICIES as readonly string[]).includes(text)) {
    throw new Error(`--on-congestion '${text}' is not one of ${CONGESTION_POLICIES.join(', ')}`);
  }
  return text as CongestionPolicy;
}

/** Minutes between app-consistent points: 0 (off) to 720; fractions allowed. */
export function parseAppConsistentMinutes(text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || n > MAX_APP_CONSISTENT_MINUTES) {
    throw new Error(
      `--app-consistent-minutes '${text}' is not a number of minutes from 0 (off) to ${MAX_APP_CONSISTENT_MINUTES}`,
    );
  }
  return n;
}
