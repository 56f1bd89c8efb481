// A component's TLS key, certificate and CA certificate, as the services load them at start.
// Kept apart from ca.ts: issuing certificates needs @peculiar/x509, which costs a service
// about 20 MiB of RSS it would never use.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkName, leafFileBase, parseRole } from './roles.js';

export const CA_CERT = 'ca.crt';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  ca: Buffer;
}

/** Reads the key, certificate and CA certificate of one component from a dir written by issueCert. */
export async function loadTlsMaterial(dir: string, id: { role: string; name: string }): Promise<TlsMaterial> {
  const role = parseRole(id.role);
  const base = leafFileBase({ role, name: checkName(id.name) });
  const read = async (file: string) => {
    try {
      return await readFile(join(dir, file));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(
          `no certificate for ${role} '${id.name}' in ${dir} (missing ${file}); issue one with ` +
            `'rebound ca issue --role ${role} --name ${id.name}'`,
        );
      }
      throw e;
    }
  };
  return { key: await read(`${base}.key`), cert: await read(`${base}.crt`), ca: await read(CA_CERT) };
}
