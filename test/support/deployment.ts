// A deployment on loopback for tests: a CA with certificates for one agent (a1), one
// process server (ps1) and one master target (mt1), and the recovery site's two
// components started as real processes over mutual TLS.
import { join } from 'node:path';
import { initCa, issueCert } from '../../src/pki/ca.js';
import { type RunningComponent, startComponent } from './component-process.js';

/** Makes DIR/ca and the three certificates in DIR/tls; returns DIR/tls. */
export async function deploymentTls(dir: string): Promise<string> {
  const tls = join(dir, 'tls');
  await initCa(join(dir, 'ca'));
  for (const [role, name] of [
    ['agent', 'a1'],
    ['process-server', 'ps1'],
    ['master-target', 'mt1'],
  ] as const) {
    await issueCert(join(dir, 'ca'), { role, name, outDir: tls });
  }
  return tls;
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
