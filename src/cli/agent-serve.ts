// `rebound agent serve`: the agent's disks over NBD, its change log, and (when registered or
// given --process-server) its shipper, heartbeats, app-consistent points and metrics. Loaded by
// agent-commands.ts only when serve runs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AckGate } from '../agent/ack-gate.js';
import { Agent } from '../agent/agent.js';
import { AppPoints } from '../agent/app-points.js';
import { Congestion } from '../agent/congestion.js';
import { startControlServer } from '../agent/control-server.js';
import { ManagedReplication } from '../agent/managed-replication.js';
import { resetAgentDataDir } from '../agent/reset.js';
import { Shipper } from '../agent/shipper.js';
import { Heartbeater } from '../control-plane/client/heartbeater.js';
import {
  loadRegistration,
  registrationClient,
  registrationMaterial,
} from '../control-plane/registration/registration-file.js';
import { startAgentObservability } from '../metrics/observability.js';
import { exportMap } from '../nbd/export.js';
import { NbdServer } from '../nbd/server.js';
import { loadTlsMaterial } from '../pki/tls-material.js';
import { createLogger } from '../util/logger.js';
import { parseSize } from '../util/size.js';
import { parseDiskSpec, parseHostPort, parseSeconds } from './parse.js';
import { parseAckMode, parseAppConsistentMinutes, parseCongestionPolicy } from './parse-policy.js';
import { tuneServiceMemory } from './service-memory.js';

/** `agent serve`'s options as commander parses them (agent-commands.ts declares them). */
export interface ServeOptions {
  dataDir: string;
  disk: string[];
  diskRo: string[];
  listen?: string;
  socket?: string;
  logLimit: string;
  segmentSize: string;
  checkpointInterval: string;
  processServer?: string;
  tlsDir?: string;
  name?: string;
  metricsListen?: string;
  ackMode: string;
  ackTimeout: string;
  onCongestion: string;
  appConsistentMinutes: string;
  freezeScript?: string;
  thawScript?: string;
  hookTimeout: string;
  resetLog?: boolean;
}

export async function runAgentServe(o: ServeOptions): Promise<void> {
  tuneServiceMemory();
  const disks = [
    ...o.disk.map((d: string) => parseDiskSpec(d)),
    ...o.diskRo.map((d: string) => parseDiskSpec(d, true)),
  ];
  if (disks.length === 0) throw new Error('give at least one --disk NAME=PATH');
  const listen = o.listen || !o.socket ? parseHostPort(o.listen ?? '127.0.0.1:10809') : undefined;
  const ps = o.processServer ? parseHostPort(o.processServer) : undefined;
  const metricsListen = o.metricsListen ? parseHostPort(o.metricsListen) : undefined;
  // A registered agent (rebound agent register) knows its name, certificate and server.
  const registration = await loadRegistration(o.dataDir);
  if (registration && registration.file.role !== 'agent') {
    throw new Error(`${o.dataDir} holds the registration of a ${registration.file.role}, not of an agent`);
  }
  const name: string | undefined = o.name ?? registration?.file.name;
  if (ps && !(o.tlsDir || registration)) {
    throw new Error(
      '--process-server needs --tls-dir and --name, or a registered data dir (rebound agent register)',
    );
  }
  if (ps && !name) throw new Error('--process-server needs --name');
  const ackMode = parseAckMode(o.ackMode);
  if (ackMode !== 'async' && !ps)
    throw new Error(`--ack-mode ${ackMode} needs --process-server: acknowledgements come from there`);
  const ackTimeoutMs = parseSeconds(o.ackTimeout, '--ack-timeout') * 1000;
  const congestion = parseCongestionPolicy(o.onCongestion);
  const appMinutes = parseAppConsistentMinutes(o.appConsistentMinutes);
  if (!o.freezeScript !== !o.thawScript)
    throw new Error('--freeze-script and --thaw-script go together: a freeze must always be undone');
  const hookTimeoutMs = parseSeconds(o.hookTimeout, '--hook-timeout') * 1000;
  const logger = createLogger();
  const material = !ps
    ? undefined
    : o.tlsDir
      ? await loadTlsMaterial(o.tlsDir, { role: 'agent', name: name! })
      : await registrationMaterial(registration!);
  const csClient = registration ? await registrationClient(registration) : undefined;
  // A data dir that never held an agent has nothing to reset.
  if (o.resetLog && existsSync(join(o.dataDir, 'agent.json'))) await resetAgentDataDir(o.dataDir, logger);
  const a = await Agent.open({
    dataDir: o.dataDir,
    disks,
    logger,
    logLimitBytes: parseSize(o.logLimit),
    segmentBytes: parseSize(o.segmentSize),
    checkpointIntervalMs: parseSeconds(o.checkpointInterval, '--checkpoint-interval') * 1000,
  });
  const ackGate = new AckGate({ mode: ackMode, timeoutMs: ackTimeoutMs, logger });
  a.setAckGate(ackGate);
  a.setCongestion(new Congestion(congestion, ackTimeoutMs, logger));
  const appPoints = new AppPoints(a, {
    hooks:
      o.freezeScript && o.thawScript
        ? { freeze: o.freezeScript, thaw: o.thawScript, timeoutMs: hookTimeoutMs }
        : undefined,
    intervalMs: appMinutes * 60_000,
    logger,
  });
  const server = new NbdServer(exportMap(a.exports()), logger);
  const urls: string[] = [];
  let listenAddress: string | undefined;
  if (listen) {
    const addr = await server.listenTcp(listen.host, listen.port);
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    urls.push(`nbd://${host}:${addr.port}`);
    listenAddress = `${host}:${addr.port}`;
  }
  if (o.socket) {
    await server.listenUnix(o.socket);
    urls.push(`nbd+unix:///?socket=${o.socket}`);
  }
  const shipper =
    ps && material
      ? new Shipper({ agent: a, host: ps.host, port: ps.port, material, name: name!, logger, ackGate })
      : undefined;
  shipper?.start();
  // Registered and not told where to ship: the configuration server says, in heartbeat answers.
  const managed =
    !ps && registration
      ? new ManagedReplication({
          agent: a,
          material: await registrationMaterial(registration),
          name: name!,
          logger,
          ackTimeoutMs,
        })
      : undefined;
  const control = await startControlServer(a, {
    appPoints,
    shipper: managed ? () => managed.shipper : shipper,
  });
  const observability = await startAgentObservability(a, shipper, logger, metricsListen);
  await appPoints.start();
  const heartbeater = csClient
    ? new Heartbeater({
        client: csClient,
        logger,
        payload: () => {
          const st = a.status();
          return {
            ...(listenAddress ? { address: listenAddress } : {}),
            status: {
              nextSeq: st.nextSeq,
              appliedThrough: st.appliedThrough,
              logBytes: st.logBytes,
              logLimitBytes: st.logLimitBytes,
              // Shipping and initial-copy progress (the server shows an item's N %).
              ...(st.replication ? { replication: st.replication } : {}),
            },
            disks: a.diskRecords
              .filter((d) => d.uuid)
              .map((d) => ({ id: d.uuid!, name: d.name, sizeBytes: d.size, path: d.path })),
          };
        },
        onAnswer: (answer) => void managed?.apply(answer.replication),
      })
    : undefined;
  heartbeater?.start();
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping agent');
    // A point in progress thaws first (the workload's file system is on our exports).
    await appPoints.stop();
    control.close();
    await heartbeater?.stop();
    await observability.close();
    await server.close();
    await shipper?.stop();
    await managed?.stop();
    await a.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  const m = observability.metrics;
  if (m) console.log(`metrics at http://${m.host}:${m.port}/metrics`);
  console.log(
    `agent ready: ${urls.join(' ')} exports ${disks.map((d) => d.name).join(',')} machine ${a.machineId}`,
  );
}
