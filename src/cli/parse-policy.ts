// Parsing of the agent's replication-policy options (acknowledgement mode, app-consistent
// frequency), with errors that name the bad value.
import { ACK_MODES, type AckMode } from '../agent/ack-gate.js';
import { MAX_APP_CONSISTENT_MINUTES } from '../agent/app-points.js';

export function parseAckMode(text: string): AckMode {
  if (!(ACK_MODES as readonly string[]).includes(text)) {
    throw new Error(`--ack-mode '${text}' is not one of ${ACK_MODES.join(', ')}`);
  }
  return text as AckMode;
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
