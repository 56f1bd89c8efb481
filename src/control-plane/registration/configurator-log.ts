// The configurator log (S9: "configurator log at a fixed path"): every registration step, success
// or failure, with a timestamp, appended to /var/log/rebound/configurator.log. Registration goes
// on if the log cannot be written (a warning on stderr says so): the log is for the operator,
// not a precondition.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export const CONFIGURATOR_LOG = '/var/log/rebound/configurator.log';

export class ConfiguratorLog {
  private warned = false;

  constructor(
    /** What every line is about, e.g. "register agent 'web1' with 10.0.0.5:9443". */
    private readonly context: string,
    readonly path = CONFIGURATOR_LOG,
  ) {}

  private write(level: 'info' | 'error', message: string): void {
    const line = `${new Date().toISOString()} [${process.pid}] ${level.toUpperCase()} ${this.context}: ${message}\n`;
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
      appendFileSync(this.path, line, { mode: 0o640 });
    } catch (e) {
      if (!this.warned) {
        this.warned = true;
        process.stderr.write(
          `rebound: warning: cannot write the configurator log ${this.path}: ${(e as Error).message}\n`,
        );
      }
    }
  }

  step(message: string): void {
    this.write('info', message);
  }

  failed(message: string): void {
    this.write('error', `failed: ${message}`);
  }
}
