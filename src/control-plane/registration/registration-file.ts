// What a registered component keeps (docs/control-plane.md, "Registration file"):
//   registration.json       who it is, which configuration server, where its TLS files are
//   <role>-<name>.key/.crt  its key (0600, made locally) and certificate, and ca.crt
// An agent keeps them in its data dir (registration.json, tls/...); a process server or
// master target in its --tls-dir. registration.json is written last: its presence means the
// registration finished, and it names the certificate's fingerprint so that a mix of old and
// new files (a crash during a re-registration) is detected instead of used.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TlsMaterial } from '../../pki/ca.js';
import { ApiClient } from '../client/api-client.js';
import type { RegisteringRole } from './protocol.js';

export const REGISTRATION_FILE = 'registration.json';

export interface RegistrationFile {
  version: 1;
  role: RegisteringRole;
  name: string;
  /** Agents: the machine id (also in agent.json). */
  machineId?: string;
  server: {
    /** As the operator gave it (HOST:PORT). */
    address: string;
    /** https://HOST:PORT */
    url: string;
    /** SHA-256 fingerprint of the deployment CA's certificate. */
    caFingerprint: string;
  };
  /** Paths relative to the directory of registration.json. */
  keyFile: string;
  certFile: string;
  caFile: string;
  /** SHA-256 fingerprint of certFile. */
  certFingerprint: string;
  certNotAfter: string;
  registeredAt: string;
}

export interface Registration {
  dir: string;
  file: RegistrationFile;
}

/** The registration in dir, or undefined when dir holds none. */
export async function loadRegistration(dir: string): Promise<Registration | undefined> {
  const path = join(dir, REGISTRATION_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  let file: RegistrationFile;
  try {
    file = JSON.parse(text) as RegistrationFile;
  } catch (e) {
    throw new Error(`${path} is not JSON: ${(e as Error).message}`);
  }
  if (file.version !== 1 || !file.role || !file.name || !file.server?.url) {
    throw new Error(`${path} is not a Rebound registration (version 1)`);
  }
  return { dir, file };
}

/** The component's key, certificate and CA, checked to be the set registration.json names. */
export async function registrationMaterial(reg: Registration): Promise<TlsMaterial> {
  const read = async (rel: string) => {
    try {
      return await readFile(join(reg.dir, rel));
    } catch (e) {
      throw new Error(`registration in ${reg.dir}: cannot read ${rel}: ${(e as Error).message}`);
    }
  };
  const material = {
    key: await read(reg.file.keyFile),
    cert: await read(reg.file.certFile),
    ca: await read(reg.file.caFile),
  };
  if (new X509Certificate(material.cert).fingerprint256 !== reg.file.certFingerprint) {
    throw new Error(
      `registration in ${reg.dir} is incomplete (${reg.file.certFile} is not the certificate ` +
        `${REGISTRATION_FILE} names): register again`,
    );
  }
  return material;
}

/** The API as this component (mutual TLS with its certificate). */
export async function registrationClient(reg: Registration, timeoutMs = 10_000): Promise<ApiClient> {
  const m = await registrationMaterial(reg);
  return new ApiClient({ url: reg.file.server.url, ca: m.ca, key: m.key, cert: m.cert, timeoutMs });
}
