// The deployment's certificate authority: one ECDSA P-256 key pair per deployment that signs a
// certificate for every component (agent, process server, master target). Files, in a CA dir:
//   ca.key (0600, PKCS#8 PEM)   ca.crt (PEM)
// and, for each issued certificate, <role>-<name>.key (0600) / <role>-<name>.crt plus a copy of ca.crt.
import { X509Certificate as NodeX509, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FileExistsError, writeFilesAtomically } from './files.js';
import { checkName, type Identity, leafFileBase, parseRole, type Role, roleUri } from './roles.js';
import { CA_CERT } from './tls-material.js';
import { subtle, x509 } from './x509.js';

export { CA_CERT, loadTlsMaterial, type TlsMaterial } from './tls-material.js';
export const CA_KEY = 'ca.key';
export const DEFAULT_CA_DAYS = 3650;
export const DEFAULT_LEAF_DAYS = 825;
const ORGANIZATION = 'Rebound';
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Certificates are valid from a little before they are made, for peers whose clock is behind. */
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 3600 * 1000;

export interface CaInfo {
  dir: string;
  keyPath: string;
  certPath: string;
  subject: string;
  notAfter: Date;
  /** SHA-256 fingerprint of ca.crt, as colon-separated hex. */
  fingerprint: string;
}

export interface IssuedCert {
  role: Role;
  name: string;
  keyPath: string;
  certPath: string;
  caPath: string;
  serialNumber: string;
  notAfter: Date;
}

function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40; // positive, and always 16 bytes long
  return b.toString('hex');
}

function checkDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 36500) {
    throw new Error(`validity of ${days} days is out of range (1-36500)`);
  }
  return days;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function fingerprint(pem: string): string {
  return new NodeX509(pem).fingerprint256;
}

/** Creates a new CA in dir (made if missing). Refuses if dir already holds a CA or part of one. */
export async function initCa(
  dir: string,
  opts: { commonName?: string; days?: number; now?: Date } = {},
): Promise<CaInfo> {
  dir = resolve(dir);
  const keyPath = join(dir, CA_KEY);
  const certPath = join(dir, CA_CERT);
  for (const p of [keyPath, certPath]) {
    if (await exists(p)) {
      throw new Error(`${dir} already holds a CA (${p} exists); refusing to overwrite it`);
    }
  }
  const days = checkDays(opts.days ?? DEFAULT_CA_DAYS);
  const now = opts.now ?? new Date();
  const commonName = opts.commonName ?? `Rebound deployment CA ${randomBytes(4).toString('hex')}`;
  if (commonName.length === 0 || commonName.length > 64) {
    throw new Error(`CA name '${commonName}' must be 1-64 characters`);
  }
  const keys = (await subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [commonName] }, { O: [ORGANIZATION] }],
    keys,
    signingAlgorithm: SIGNING,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + days * DAY_MS),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString('pem');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    await writeFilesAtomically([
      { path: keyPath, data: await privateKeyPem(keys.privateKey), mode: 0o600 },
      { path: certPath, data: `${certPem}\n`, mode: 0o644 },
    ]);
  } catch (e) {
    if (e instanceof FileExistsError) {
      throw new Error(`${dir} already holds a CA (${e.message}); refusing to overwrite it`);
    }
    throw e;
  }
  return {
    dir,
    keyPath,
    certPath,
    subject: cert.subject,
    notAfter: cert.notAfter,
    fingerprint: fingerprint(certPem),
  };
}

interface LoadedCa {
  cert: InstanceType<typeof x509.X509Certificate>;
  certPem: string;
  key: CryptoKey;
}

async function loadCa(dir: string): Promise<LoadedCa> {
  const certPath = join(dir, CA_CERT);
  const keyPath = join(dir, CA_KEY);
  let certPem: string;
  let keyPem: string;
  try {
    certPem = await readFile(certPath, 'utf8');
    keyPem = await readFile(keyPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        `${dir} is not a CA dir (no ${(e as NodeJS.ErrnoException).path}); create one with 'rebound ca init'`,
      );
    }
    throw e;
  }
  let cert: InstanceType<typeof x509.X509Certificate>;
  let key: CryptoKey;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e) {
    throw new Error(`${certPath} is not a PEM certificate: ${(e as Error).message}`);
  }
  try {
    key = await subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), EC, false, ['sign']);
  } catch (e) {
    throw new Error(`${keyPath} is not a PKCS#8 ECDSA P-256 private key: ${(e as Error).message}`);
  }
  return { cert, certPem: cert.toString('pem'), key };
}

/**
 * Issues a certificate for one component, signed by the CA in caDir, and writes its key,
 * certificate and a copy of ca.crt to outDir (default caDir). Refuses to replace an existing
 * key or certificate unless `force`.
 */
export async function issueCert(
  caDir: string,
  opts: { role: string; name: string; outDir?: string; days?: number; force?: boolean; now?: Date },
): Promise<IssuedCert> {
  const role = parseRole(opts.role);
  const name = checkName(opts.name);
  const days = checkDays(opts.days ?? DEFAULT_LEAF_DAYS);
  caDir = resolve(caDir);
  const outDir = resolve(opts.outDir ?? caDir);
  const ca = await loadCa(caDir);
  const now = opts.now ?? new Date();
  const notAfter = new Date(Math.min(now.getTime() + days * DAY_MS, ca.cert.notAfter.getTime()));
  const id: Identity = { role, name };
  const base = leafFileBase(id);
  const keyPath = join(outDir, `${base}.key`);
  const certPath = join(outDir, `${base}.crt`);
  const caPath = join(outDir, CA_CERT);
  if (!opts.force) {
    for (const p of [keyPath, certPath]) {
      if (await exists(p)) throw new Error(`${p} already exists; give --force to replace it`);
    }
  }
  // The copy of ca.crt beside the leaf: written unless the same certificate is already there.
  let copyCa = outDir !== caDir;
  if (copyCa && (await exists(caPath))) {
    const there = await readFile(caPath, 'utf8');
    let same = false;
    try {
      same = fingerprint(there) === fingerprint(ca.certPem);
    } catch {
      // not a certificate: treated as different
    }
    if (!same) throw new Error(`${caPath} is not this CA's certificate; use another --out dir`);
    copyCa = false;
  }

  const keys = (await subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await signLeaf(ca, id, keys.publicKey, now, notAfter);
  await mkdir(outDir, { recursive: true, mode: 0o700 });
  const files = [
    { path: keyPath, data: await privateKeyPem(keys.privateKey), mode: 0o600 },
    { path: certPath, data: `${cert.toString('pem')}\n`, mode: 0o644 },
  ];
  if (copyCa) files.push({ path: caPath, data: `${ca.certPem}\n`, mode: 0o644 });
  try {
    await writeFilesAtomically(files, opts.force ?? false);
  } catch (e) {
    if (e instanceof FileExistsError) throw new Error(`${e.message}; give --force to replace it`);
    throw e;
  }
  return { role, name, keyPath, certPath, caPath, serialNumber: cert.serialNumber, notAfter };
}

/** A leaf certificate for id's public key, signed by the CA. */
async function signLeaf(
  ca: LoadedCa,
  id: Identity,
  publicKey: CryptoKey,
  now: Date,
  notAfter: Date,
): Promise<InstanceType<typeof x509.X509Certificate>> {
  const { role, name } = id;
  return x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [name] }, { OU: [role] }, { O: [ORGANIZATION] }],
    issuer: ca.cert.subjectName,
    publicKey,
    signingKey: ca.key,
    signingAlgorithm: SIGNING,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: name },
        ...(name === 'localhost' ? [] : [{ type: 'dns' as const, value: 'localhost' }]),
        { type: 'ip', value: '127.0.0.1' },
        { type: 'url', value: roleUri(id) },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
}

export interface IssuedForKey {
  /** The leaf certificate (PEM). */
  certPem: string;
  /** The CA certificate (PEM). */
  caPem: string;
  serialNumber: string;
  notAfter: Date;
}

/**
 * Issues a certificate for a public key the component made itself (registration: its private
 * key never leaves it). Writes nothing. The key must be ECDSA P-256 in SPKI PEM.
 */
export async function issueCertForKey(
  caDir: string,
  opts: { role: string; name: string; publicKeyPem: string; days?: number; now?: Date },
): Promise<IssuedForKey> {
  const id: Identity = { role: parseRole(opts.role), name: checkName(opts.name) };
  const days = checkDays(opts.days ?? DEFAULT_LEAF_DAYS);
  let publicKey: CryptoKey;
  try {
    publicKey = await subtle.importKey('spki', x509.PemConverter.decodeFirst(opts.publicKeyPem), EC, true, [
      'verify',
    ]);
  } catch (e) {
    throw new Error(`the public key is not an ECDSA P-256 key in SPKI PEM: ${(e as Error).message}`);
  }
  const ca = await loadCa(resolve(caDir));
  const now = opts.now ?? new Date();
  const notAfter = new Date(Math.min(now.getTime() + days * DAY_MS, ca.cert.notAfter.getTime()));
  const cert = await signLeaf(ca, id, publicKey, now, notAfter);
  return {
    certPem: `${cert.toString('pem')}\n`,
    caPem: `${ca.certPem}\n`,
    serialNumber: cert.serialNumber,
    notAfter,
  };
}
