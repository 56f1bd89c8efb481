// `rebound master-target start|status|points|view|export`.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { callMasterTarget, startMtControlServer } from '../master-target/control-server.js';
import { MasterTarget } from '../master-target/master-target.js';
import type { MachineStatusJson } from '../master-target/replication-status.js';
import { DEFAULT_RETENTION_HOURS, parseRetentionHours } from '../master-target/retention.js';
import { formatMachineStatus } from '../master-target/status-text.js';
import { startMasterTargetObservability } from '../metrics/observability.js';
import { loadTlsMaterial } from '../pki/tls-material.js';
import { createLogger } from '../util/logger.js';
import { startComponentHeartbeat } from './component-heartbeat.js';
import { parseHostPort, parseSeconds } from './parse.js';
import { addRegisterCommand } from './register-command.js';
import { tuneServiceMemory } from './service-memory.js';
import { stopOnSignals } from './signals.js';

export function registerMasterTargetCommands(program: Command): void {
  const mt = program
    .command('master-target')
    .description('applies replication streams to replica disks, keeping an undo journal of before-images');

  addRegisterCommand(mt, 'master-target');

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
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--rpo-alert <seconds>', 'a machine whose RPO is above this has a health problem', '900')
    .option(
      '--retention-hours <hours>',
      'keep recovery points this long; older undo-journal segments are pruned',
      String(DEFAULT_RETENTION_HOURS),
    )
    .action(async (o) => {
      tuneServiceMemory();
      const listen = parseHostPort(o.listen);
      const metricsListen = o.metricsListen ? parseHostPort(o.metricsListen) : undefined;
      const rpoAlertSeconds = parseSeconds(o.rpoAlert, '--rpo-alert');
      const retentionHours = parseRetentionHours(o.retentionHours);
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
        statusRules: { rpoAlertSeconds },
        retentionHours,
      });
      const control = await startMtControlServer(server, o.dataDir, logger);
      const observability = await startMasterTargetObservability(server, logger, metricsListen);
      const m = observability.metrics;
      if (m) console.log(`metrics at http://${m.host}:${m.port}/metrics`);
      const heartbeat = await startComponentHeartbeat(
        o.tlsDir,
        'master-target',
        o.name,
        `${listen.host}:${server.port}`,
        logger,
      );
      console.log(`master target ready: ${listen.host}:${server.port}`);
      stopOnSignals('master target', logger, async () => {
        await heartbeat?.stop();
        await observability.close();
        control.close();
        await server.close();
      });
    });

  mt.command('status')
    .description('replication status per machine: RPO, applied seq, latest points, health problems')
    .requiredOption('--data-dir <dir>', 'the running master target’s data dir')
    .option('--machine <id>', 'only this machine')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const q = o.machine ? `?machine=${encodeURIComponent(o.machine)}` : '';
      const r = await call(o.dataDir, 'GET', `/status${q}`, 200);
      const machines = r.machines as MachineStatusJson[];
      if (o.json) return console.log(JSON.stringify(r, null, 2));
      if (machines.length === 0) return console.log('no machine has streamed to this master target yet');
      console.log(machines.map(formatMachineStatus).join('\n\n'));
    });

  mt.command('points')
    .description('recovery points of a machine (crash-consistent flushes, app-consistent bookmarks)')
    .requiredOption('--data-dir <dir>', 'the running master target’s data dir')
    .requiredOption('--machine <id>', 'the protected machine’s id')
    .option('--all', 'list every point (by default older points are thinned out)')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const q = `machine=${encodeURIComponent(o.machine)}${o.all ? '&all=1' : ''}`;
      const r = await call(o.dataDir, 'GET', `/points?${q}`, 200);
      if (o.json) return console.log(JSON.stringify(r, null, 2));
      const points = r.points as { seq: number; time: string; kind: string; tag: string }[];
      console.log(
        `applied through seq ${r.appliedThrough}; points from seq ${r.oldestPoint} on are viewable`,
      );
      if (r.oldestTime) {
        console.log(
          `any time from ${r.oldestTime} on can be chosen with --point <ISO time> (retention ${r.retentionHours} h)`,
        );
      }
      for (const p of r.problems as { code: string; message: string }[])
        console.log(`problem ${p.code}: ${p.message}`);
      if (r.thinned) {
        console.log(`${points.length} of ${r.total} points shown (${r.thinned}); --all lists every point`);
      }
      for (const p of points)
        console.log(`${String(p.seq).padStart(10)}  ${p.time}  ${p.kind.padEnd(5)}  ${p.tag}`);
    });

  mt.command('view')
    .description('serve a machine’s disks at a point as NBD exports on loopback (or close a view)')
    .requiredOption('--data-dir <dir>', 'the running master target’s data dir')
    .option('--machine <id>', 'the protected machine’s id')
    .option('--point <point>', 'latest | latest-app | a recovery point id | an ISO time', 'latest')
    .option('--writable', 'copy-on-write (for a test): writes go to a scratch file, discarded on close')
    .option('--close <id>', 'close this view instead')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      if (o.close) {
        await call(o.dataDir, 'DELETE', `/views/${encodeURIComponent(o.close)}`, 200);
        return console.log(`view ${o.close} closed`);
      }
      if (!o.machine) throw new Error('--machine is required to open a view');
      const q =
        `machine=${encodeURIComponent(o.machine)}&point=${encodeURIComponent(o.point)}` +
        (o.writable ? '&writable=1' : '');
      const r = await call(o.dataDir, 'POST', `/views?${q}`, 201);
      if (o.json) return console.log(JSON.stringify(r));
      console.log(
        `view ${r.id} of point ${r.point}${r.writable ? ' (copy-on-write)' : ''}: ` +
          (r.exports as string[]).map((e) => `${r.url}/${e}`).join(' '),
      );
    });

  mt.command('export')
    .description('write one disk of a machine at a point to a new sparse image')
    .requiredOption('--data-dir <dir>', 'the running master target’s data dir')
    .requiredOption('--machine <id>', 'the protected machine’s id')
    .requiredOption('--out <file>', 'the image to create (never overwritten)')
    .option('--point <point>', 'latest | latest-app | a recovery point id | an ISO time', 'latest')
    .option('--disk <name>', 'the disk (default: the first)')
    .option('--json', 'machine-readable output')
    .action(async (o) => {
      const q = new URLSearchParams({ machine: o.machine, point: o.point, out: resolve(o.out) });
      if (o.disk) q.set('disk', o.disk);
      const r = await call(o.dataDir, 'POST', `/exports?${q}`, 201);
      if (o.json) return console.log(JSON.stringify(r));
      console.log(
        `wrote ${r.out}: disk ${r.disk} at point ${r.point}, ${r.bytes} bytes (${r.dataBytes} of data)`,
      );
    });
}

async function call(dataDir: string, method: string, path: string, ok: number) {
  const r = await callMasterTarget(dataDir, method, path);
  if (r.status !== ok) throw new Error(r.body.error ?? `the master target answered ${r.status}`);
  return r.body;
}
