// The shape of the configuration server's periodic background work (item monitor, heartbeat
// watch, storage refresh, group points).
import type { BackgroundService } from './background.js';
import type { ServerContext } from './context.js';

/**
 * A service that runs `pass` every intervalMs, never two passes at once (a pass still running
 * skips the tick); a failed pass is logged and the next one tries again. stop() waits for the
 * pass under way.
 */
export function periodicService(
  ctx: ServerContext,
  name: string,
  intervalMs: number,
  pass: () => Promise<unknown>,
): BackgroundService {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = pass()
      .then(() => undefined)
      .catch((e) =>
        ctx.logger.error({ err: (e as Error).message }, `${name}: failed; the next pass tries again`),
      )
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    name,
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
