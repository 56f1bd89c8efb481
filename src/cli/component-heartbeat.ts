// Heartbeats of a process server or master target registered with `register --tls-dir DIR`:
// started when DIR holds its registration (and the name matches), otherwise nothing.
import type { Logger } from 'pino';
import { Heartbeater } from '../control-plane/client/heartbeater.js';
import { loadRegistration, registrationClient } from '../control-plane/registration/registration-file.js';

export async function startComponentHeartbeat(
  tlsDir: string,
  role: 'process-server' | 'master-target',
  name: string,
  address: string,
  logger: Logger,
): Promise<Heartbeater | undefined> {
  const reg = await loadRegistration(tlsDir);
  if (!reg) return undefined;
  if (reg.file.role !== role || reg.file.name !== name) {
    logger.warn(
      { registration: `${reg.file.role} '${reg.file.name}'` },
      `${tlsDir} holds another component's registration: no heartbeats`,
    );
    return undefined;
  }
  const hb = new Heartbeater({ client: await registrationClient(reg), logger, payload: () => ({ address }) });
  hb.start();
  return hb;
}
