// The configuration server's identity on disk, made on first start and kept forever after
// (a backup carries it, so a restored server is the same server to its agents):
//   DATA/ca/            the deployment CA (signs every component's certificate)
//   DATA/tls/           the server's own certificate, and those of its built-in components
//   DATA/admin.token    the first admin token (0600); only its SHA-256 is in the database
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initCa, issueCert, loadTlsMaterial, type TlsMaterial } from '../pki/ca.js';
import type { Role } from '../pki/roles.js';

export const SERVER_CERT_NAME = 'configuration-server';

export interface ServerPaths {
  dataDir: string;
  caDir: string;
  tlsDir: string;
  adminTokenFile: string;
  clientConfigFile: string;
  defaultDbUrl: string;
}

export function serverPaths(dataDir: string): ServerPaths {
  return {
    dataDir,
    caDir: join(dataDir, 'ca'),
    tlsDir: join(dataDir, 'tls'),
    adminTokenFile: join(dataDir, 'admin.token'),
    clientConfigFile: join(dataDir, 'cli.json'),
    defaultDbUrl: `sqlite:${join(dataDir, 'rebound.db')}`,
  };
}

/** Makes the CA on first start. */
export async function ensureCa(paths: ServerPaths): Promise<void> {
  await mkdir(paths.dataDir, { recursive: true, mode: 0o700 });
  if (!existsSync(join(paths.caDir, 'ca.crt'))) {
    await initCa(paths.caDir, { commonName: `Rebound deployment CA ${randomBytes(4).toString('hex')}` });
  }
}

/** A certificate of this server's CA for one of its own parts, issued on first use. */
export async function ownCertificate(paths: ServerPaths, role: Role, name: string): Promise<TlsMaterial> {
  if (!existsSync(join(paths.tlsDir, `${role}-${name}.crt`))) {
    await issueCert(paths.caDir, { role, name, outDir: paths.tlsDir });
  }
  return loadTlsMaterial(paths.tlsDir, { role, name });
}

/** The admin token, made on first start. */
export async function ensureAdminToken(paths: ServerPaths): Promise<string> {
  if (existsSync(paths.adminTokenFile)) return (await readFile(paths.adminTokenFile, 'utf8')).trim();
  const token = randomBytes(32).toString('base64url');
  await writeFile(paths.adminTokenFile, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}

/** What the CLI on this machine reads to reach the server as admin (see client/connection.ts). */
export interface ClientConfig {
  url: string;
  caFile: string;
  tokenFile: string;
}

export async function writeClientConfig(paths: ServerPaths, url: string): Promise<void> {
  const config: ClientConfig = {
    url,
    caFile: join(paths.caDir, 'ca.crt'),
    tokenFile: paths.adminTokenFile,
  };
  const tmp = `${paths.clientConfigFile}.tmp`;
  await writeFile(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, paths.clientConfigFile);
}
