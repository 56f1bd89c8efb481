// `rebound server ...`: the configuration server.
import type { Command } from 'commander';
import { DEFAULT_SERVER_DIR } from '../control-plane/client/connection.js';
import { ConfigurationServer } from '../control-plane/configuration-server.js';
import { createLogger } from '../util/logger.js';
import { registerBackupCommands } from './backup-commands.js';
import { parseHostPort } from './parse.js';
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
    .action(async (o) => {
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
      });
      if (cs.processServer) console.log(`built-in process server: port ${cs.processServer.port}`);
      if (cs.masterTarget) console.log(`built-in master target: port ${cs.masterTarget.port}`);
      console.log(`configuration server ready: ${cs.url}`);
      stopOnSignals('configuration server', logger, () => cs.close());
    });

  registerBackupCommands(server);
}
