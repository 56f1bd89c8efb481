// Where the CLI finds the configuration server and its admin credentials:
//   --cs-config FILE, or $REBOUND_CS_CONFIG, or /var/lib/rebound/server/cli.json (written by
//   `rebound server start` on this machine): { url, caFile, tokenFile }.
import { readFile } from 'node:fs/promises';
import type { ClientConfig } from '../server-identity.js';
import { ApiClient, type ApiClientOptions } from './api-client.js';

export const DEFAULT_SERVER_DIR = '/var/lib/rebound/server';
export const DEFAULT_CLIENT_CONFIG = `${DEFAULT_SERVER_DIR}/cli.json`;

export function clientConfigPath(option?: string): string {
  return option ?? process.env.REBOUND_CS_CONFIG ?? DEFAULT_CLIENT_CONFIG;
}

export async function adminClient(configOption?: string): Promise<ApiClient> {
  return new ApiClient(await adminConnection(configOption));
}

/** The URL, CA and admin token the connection file names (for requests ApiClient does not make). */
export async function adminConnection(configOption?: string): Promise<ApiClientOptions> {
  const path = clientConfigPath(configOption);
  let config: ClientConfig;
  try {
    config = JSON.parse(await readFile(path, 'utf8')) as ClientConfig;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new Error(
        `no configuration server connection at ${path}: start one with 'rebound server start' or give --cs-config`,
      );
    }
    throw new Error(`${path} is not a configuration server connection file: ${(e as Error).message}`);
  }
  const read = async (file: string, what: string) => {
    try {
      return await readFile(file);
    } catch (e) {
      throw new Error(`cannot read the ${what} ${file} named in ${path}: ${(e as Error).message}`);
    }
  };
  return {
    url: config.url,
    ca: await read(config.caFile, 'CA certificate'),
    token: (await read(config.tokenFile, 'admin token')).toString('utf8').trim(),
  };
}
