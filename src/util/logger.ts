import { destination, type Logger, pino } from 'pino';

/** Structured logs (JSON lines) on stderr; stdout stays for command output. */
export function createLogger(level = process.env.REBOUND_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid } }, destination({ dest: 2, sync: true }));
}
