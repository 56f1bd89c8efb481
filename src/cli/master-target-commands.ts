// `rebound master-target start`.
import type { Command } from 'commander';
import { MasterTarget } from '../master-target/master-target.js';
import { loadTlsMaterial } from '../pki/ca.js';
import { createLogger } from '../util/logger.js';
import { parseHostPort } from './parse.js';
import { stopOnSignals } from './signals.js';

export function registerMasterTargetCommands(program: Command): void {
  const mt = program
    .command('master-target')
    .description('applies replication streams to replica disks, keeping an undo journal of before-images');

  mt.command('start')
    .description('run a master target')
    .requiredOption('--data-dir <dir>', 'replica disks and their state, one directory per machine')
    .requiredOption('--retention-dir <dir>', 'the retention volume: undo journals, one directory per machine')
    .requiredOption(
      '--tls-dir <dir>',
      'its key and certificate (rebound ca issue --role master-target) and ca.crt',
    )
    .requiredOption('--name <name>', 'its component name (the certificate’s)')
    .option('--listen <host:port>', 'where process servers connect', '127.0.0.1:9860')
    .action(async (o) => {
      const listen = parseHostPort(o.listen);
      const logger = createLogger();
      const material = await loadTlsMaterial(o.tlsDir, { role: 'master-target', name: o.name });
      const server = await MasterTarget.start({
        dataDir: o.dataDir,
        retentionDir: o.retentionDir,
        host: listen.host,
        port: listen.port,
        material,
        name: o.name,
        logger,
      });
      console.log(`master target ready: ${listen.host}:${server.port}`);
      stopOnSignals('master target', logger, () => server.close());
    });
}
