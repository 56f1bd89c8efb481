// The configuration server's background work (heartbeat watch, inventory refresh, the job
// runner, ...): each is started after the API listens and stopped before the database closes.
import type { ServerContext } from './context.js';
import { startHeartbeatWatch } from './heartbeat-watch.js';
import { startItemMonitor } from './items/item-monitor.js';
import { startJobRunner } from './jobs/service.js';
import { startGroupPoints } from './recovery/group-point-service.js';
import { startStorageRefresh } from './storage/storage-refresh.js';

export interface BackgroundService {
  name: string;
  stop(): Promise<void>;
}

export type BackgroundStarter = (ctx: ServerContext) => Promise<BackgroundService>;

/** Every background service, in start order (stopped in reverse). */
export const BACKGROUND_SERVICES: BackgroundStarter[] = [
  startHeartbeatWatch,
  startStorageRefresh,
  startJobRunner,
  (ctx) => startItemMonitor(ctx),
  (ctx) => startGroupPoints(ctx),
];
