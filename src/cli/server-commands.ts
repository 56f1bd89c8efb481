// `rebound server ...`: the configuration server.

import type { Command } from 'commander';
import { adminClient, DEFAULT_SERVER_DIR } from '../control-plane/client/connection.js';
import { ConfigurationServer } from '../control-plane/configuration-server.js';
import { DEFAULT_HEARTBEAT_ALERT_MINUTES } from '../control-plane/heartbeat-contract.js';
import type { ShownPassphrase } from '../control-plane/registration/passphrase.js';
import { createLogger } from '../util/logger.js';
import { registerBackupCommands } from './backup-commands.js';
import { printJson } from './output.js';
import { parseHostPort } from './parse.js';
import { readyLine } from './server-ready.js';
import { tuneServiceMemory } from './service-memory.js';
import { stopOnSignals } from './signals.js';

export function registerServerCommands(program: Command): void {
  const server = program.command('server').description('the configuration server (control plane)');

  server
    .command('start')
    .description('run the configuration server with a built-in process server and master target')
    .option('--data-dir <dir>', 'CA, certificates, admin token, SQLite database', DEFAULT_SERVER_DIR)
    .option('--listen <host:port>', 'HTTPS API listener', '0.0.0.0:9443')
    .option('--db <url>', 'sqlite:PATH or postgres://USER@HOST/DB (default sqlite:DATA_DIR/rebound.db)')
    .option('--process-server-listen <host:port>', 'the built-in process server’s listener', '0.0.0.0:9850')
    .option('--no-process-server', 'run without the built-in process server')
    .option('--master-target-listen <host:port>', 'the built-in master target’s listener', '0.0.0.0:9860')
    .option('--no-master-target', 'run without the built-in master target')
    .option('--retention-dir <dir>', 'the built-in master target’s retention volume (undo journals)')
    .option(
      '--heartbeat-alert-minutes <minutes>',
      'raise a critical alert for a component silent this long',
      String(DEFAULT_HEARTBEAT_ALERT_MINUTES),
    )
    .action(async (o) => {
      tuneServiceMemory();
      const heartbeatAlertMinutes = parseMinutes(o.heartbeatAlertMinutes, '--heartbeat-alert-minutes');
      const logger = createLogger();
      const cs = await ConfigurationServer.start({
        dataDir: o.dataDir,
        listen: parseHostPort(o.listen),
        dbUrl: o.db,
        logger,
        processServer: o.processServer ? parseHostPort(o.processServerListen) : undefined,
        masterTarget: o.masterTarget
          ? { ...parseHostPort(o.masterTargetListen), retentionDir: o.retentionDir }
          : undefined,
        heartbeatAlertMinutes,
      });
      if (cs.processServer) console.log(`built-in process server: port ${cs.processServer.port}`);
      if (cs.masterTarget) console.log(`built-in master target: port ${cs.masterTarget.port}`);
      console.log(readyLine(cs.url));
      stopOnSignals('configuration server', logger, () => cs.close());
    });

  server
    .command('passphrase')
    .description('print the registration passphrase components register with (--rotate: make a new one)')
    .option('--rotate', 'replace it: the old one stops working, registered components keep working')
    .option('--json', 'print JSON')
    .option(
      '--cs-config <file>',
      'configuration server connection (default /var/lib/rebound/server/cli.json)',
    )
    .action(async (o) => {
      const client = await adminClient(o.csConfig);
      const p = o.rotate
        ? await client.post<ShownPassphrase>('/api/v1/server/passphrase/rotate')
        : await client.get<ShownPassphrase>('/api/v1/server/passphrase');
      if (o.json) return printJson(p);
      // Only the passphrase on stdout, so `rebound server passphrase > FILE` gives a passphrase file.
      console.log(p.passphrase);
      if (o.rotate) {
        console.error(
          'passphrase rotated: the old one no longer registers anything; components registered before keep working',
        );
      }
    });

  registerBackupCommands(server);
}

/** A positive number of minutes (fractions allowed), at most a day. */
function parseMinutes(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || n <= 0 || n > 1440) {
    throw new Error(`${flag} '${text}' is not a number of minutes between 0 and 1440`);
  }
  return n;
}
