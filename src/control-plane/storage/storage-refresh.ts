// Background: re-probes the built-in master target's datastores and retention volumes every
// 15 minutes (S24: a new volume shows within 15 minutes, or at once with a refresh), and once
// at start so the inventory is filled when the server says it is ready.
import type { BackgroundService } from '../background.js';
import type { ServerContext } from '../context.js';
import { periodicService } from '../periodic-service.js';
import { refreshLocalStorage } from './storage-store.js';

export const STORAGE_REFRESH_MS = 15 * 60_000;

/** REBOUND_STORAGE_REFRESH_MS shortens the period (tests). */
function periodMs(): number {
  const env = Number(process.env.REBOUND_STORAGE_REFRESH_MS);
  return Number.isInteger(env) && env > 0 ? env : STORAGE_REFRESH_MS;
}

export async function startStorageRefresh(ctx: ServerContext): Promise<BackgroundService> {
  const pass = () => refreshLocalStorage(ctx);
  await pass().catch((e) =>
    ctx.logger.error({ err: (e as Error).message }, 'storage refresh failed; the next pass tries again'),
  );
  return periodicService(ctx, 'storage-refresh', periodMs(), pass);
}
