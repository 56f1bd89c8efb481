// The three components for a replication test on loopback: a CA and certificates for
// a1, ps1 and mt1; a master target and a process server in this process (so a test can
// read their state) or as real processes (startRecoverySite); an agent as a real child.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { callAgent } from '../../src/agent/control-server.js';
import { MasterTarget } from '../../src/master-target/master-target.js';
import { initCa, issueCert, loadTlsMaterial } from '../../src/pki/ca.js';
import { ProcessServer } from '../../src/process-server/process-server.js';
import { type RunningAgent, runCli, startAgent } from './agent-process.js';
import { type RunningComponent, startComponent } from './component-process.js';

/** A CA and certificates for agent a1, process server ps1 and master target mt1, in dir/tls. */
export async function issueTrioCerts(dir: string): Promise<string> {
  const tls = join(dir, 'tls');
  await initCa(join(dir, 'ca'));
  await issueCert(join(dir, 'ca'), { role: 'agent', name: 'a1', outDir: tls });
  await issueCert(join(dir, 'ca'), { role: 'process-server', name: 'ps1', outDir: tls });
  await issueCert(join(dir, 'ca'), { role: 'master-target', name: 'mt1', outDir: tls });
  return tls;
}

export async function startMasterTarget(
  tls: string,
  opts: { dataDir: string; retentionDir: string; logger: Logger; retentionHours?: number },
): Promise<MasterTarget> {
  return MasterTarget.start({
    ...opts,
    host: '127.0.0.1',
    port: 0,
    material: await loadTlsMaterial(tls, { role: 'master-target', name: 'mt1' }),
    name: 'mt1',
  });
}

export async function startProcessServer(
  tls: string,
  opts: { dataDir: string; logger: Logger; masterTargetPort?: number; port?: number },
): Promise<ProcessServer> {
  return ProcessServer.start({
    dataDir: opts.dataDir,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    material: await loadTlsMaterial(tls, { role: 'process-server', name: 'ps1' }),
    name: 'ps1',
    logger: opts.logger,
    masterTarget:
      opts.masterTargetPort === undefined ? undefined : { host: '127.0.0.1', port: opts.masterTargetPort },
  });
}

/** An agent protecting one disk `d`, shipping to the process server; and its machine id. */
export async function startShippingAgent(
  tls: string,
  dataDir: string,
  disk: string,
  psPort: number,
): Promise<{ agent: RunningAgent; machineId: string }> {
  const agent = await startAgent([
    ...['--data-dir', dataDir, '--disk', `d=${disk}`, '--checkpoint-interval', '0.2'],
    ...['--process-server', `127.0.0.1:${psPort}`, '--tls-dir', tls, '--name', 'a1'],
  ]);
  const machineId = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')).machineId as string;
  return { agent, machineId };
}

/** Waits until the agent's initial copy has ended: bookmarks after it are recovery points. */
export async function waitProtected(dataDir: string, timeoutMs = 60_000): Promise<void> {
  await until(
    'the initial copy to end',
    async () => {
      const s = (await callAgent(dataDir, 'GET', '/status')).body as {
        replication?: { resync: { state: string; passes: number } };
      };
      const r = s.replication?.resync;
      return r && r.state === 'idle' && r.passes > 0;
    },
    timeoutMs,
  );
}

/** Takes a bookmark through the running agent; its seq. */
export async function bookmark(dataDir: string, tag: string): Promise<number> {
  const b = await runCli(['agent', 'bookmark', '--json', '--data-dir', dataDir, '--tag', tag]);
  if (b.code !== 0) throw new Error(`bookmark failed: ${b.stderr}`);
  return JSON.parse(b.stdout).seq as number;
}

/** Polls until fn returns a truthy value; fails with `what` after timeoutMs. */
export async function until<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 60_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface RecoverySite {
  mt: RunningComponent;
  ps: RunningComponent;
  /** The master target's data dir (DIR/mt); its retention dir is DIR/retention. */
  mtData: string;
}

/** Starts mt1 then ps1 (forwarding to it) on free loopback ports. */
export async function startRecoverySite(
  dir: string,
  tls: string,
  extra: { mt?: string[]; ps?: string[] } = {},
): Promise<RecoverySite> {
  const mtData = join(dir, 'mt');
  const mt = await startComponent('master-target', [
    ...['--data-dir', mtData, '--retention-dir', join(dir, 'retention')],
    ...['--tls-dir', tls, '--name', 'mt1', ...(extra.mt ?? [])],
  ]);
  const ps = await startComponent('process-server', [
    ...['--data-dir', join(dir, 'ps'), '--tls-dir', tls, '--name', 'ps1'],
    ...['--master-target', `127.0.0.1:${mt.port}`, ...(extra.ps ?? [])],
  ]);
  return { mt, ps, mtData };
}
