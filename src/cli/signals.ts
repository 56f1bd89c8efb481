// A clean stop on SIGTERM or SIGINT for the long-running commands.
import type { Logger } from 'pino';

export function stopOnSignals(what: string, logger: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `stopping ${what}`);
    await close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
