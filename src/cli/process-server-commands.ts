// `rebound process-server start`.
import type { Command } from 'commander';
import { startProcessServerObservability } from '../metrics/observability.js';
import { loadTlsMaterial } from '../pki/tls-material.js';
import { ProcessServer } from '../process-server/process-server.js';
import { createLogger } from '../util/logger.js';
import { parseSize } from '../util/size.js';
import { parseCompressMode } from '../wire/compression-policy.js';
import { startComponentHeartbeat } from './component-heartbeat.js';
import { parseHostPort } from './parse.js';
import { addRegisterCommand } from './register-command.js';
import { tuneServiceMemory } from './service-memory.js';
import { stopOnSignals } from './signals.js';

export function registerProcessServerCommands(program: Command): void {
  const ps = program
    .command('process-server')
    .description('receives agent streams, caches them durably, acknowledges what is fsynced');

  addRegisterCommand(ps, 'process-server');

  ps.command('start')
    .description('run a process server')
    .requiredOption('--data-dir <dir>', 'the durable cache, one change log per machine')
    .requiredOption(
      '--tls-dir <dir>',
      'its key and certificate (rebound ca issue --role process-server) and ca.crt',
    )
    .requiredOption('--name <name>', 'its component name (the certificate’s)')
    .option('--listen <host:port>', 'where agents connect', '127.0.0.1:9850')
    .option('--cache-limit <size>', 'cache size per machine; beyond it agent streams wait', '8G')
    .option('--master-target <host:port>', 'forward every machine to this master target (mutual TLS)')
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--compress <mode>', 'lz4 towards the master target: auto (when it pays) or off', 'auto')
    .action(async (o) => {
      tuneServiceMemory();
      const listen = parseHostPort(o.listen);
      const metricsListen = o.metricsListen ? parseHostPort(o.metricsListen) : undefined;
      const compress = parseCompressMode(o.compress);
      const logger = createLogger();
      const material = await loadTlsMaterial(o.tlsDir, { role: 'process-server', name: o.name });
      const server = await ProcessServer.start({
        dataDir: o.dataDir,
        host: listen.host,
        port: listen.port,
        material,
        name: o.name,
        logger,
        cacheLimitBytes: parseSize(o.cacheLimit),
        masterTarget: o.masterTarget ? parseHostPort(o.masterTarget) : undefined,
        compress,
      });
      const observability = await startProcessServerObservability(
        server,
        logger,
        metricsListen,
        Boolean(o.masterTarget),
      );
      const m = observability.metrics;
      if (m) console.log(`metrics at http://${m.host}:${m.port}/metrics`);
      const heartbeat = await startComponentHeartbeat(
        o.tlsDir,
        'process-server',
        o.name,
        `${listen.host}:${server.port}`,
        logger,
      );
      console.log(`process server ready: ${listen.host}:${server.port}`);
      stopOnSignals('process server', logger, async () => {
        await heartbeat?.stop();
        await observability.close();
        await server.close();
      });
    });
}
