// The registration handshake, shared by the server and the registering component. Pure: no I/O.
//
//   1. POST /api/v1/registration/challenge          -> { challengeId, nonce, salt, kdf }
//   2. the component derives K = scrypt(passphrase, salt, kdf) and sends its role, name, public
//      key, ... with proof = HMAC-SHA256(K, transcript) where the transcript also covers the
//      challenge and the SHA-256 fingerprint of the TLS certificate the component saw
//   3. the server (which stores only K) checks the proof, issues a certificate and answers with
//      serverProof = HMAC-SHA256(K, answer transcript): the component trusts the CA it receives
//      only once that proof checks, i.e. once the server showed it knows the passphrase too.
// The passphrase never crosses the wire; a relay with its own TLS certificate changes the
// fingerprint and so fails the proof.
import { createHash, createHmac, scrypt, timingSafeEqual } from 'node:crypto';

export const PROTOCOL = 'rebound-registration-v1';

export interface KdfParams {
  name: 'scrypt';
  N: number;
  r: number;
  p: number;
  keyLength: number;
}

/** ~100 ms and 32 MiB on a small machine: the server stores only the derived key. */
export const DEFAULT_KDF: KdfParams = { name: 'scrypt', N: 32768, r: 8, p: 1, keyLength: 32 };

/** What a component accepts from a server before spending memory on it. */
export function checkKdf(k: KdfParams): void {
  const pow2 = Number.isInteger(Math.log2(k.N));
  if (k.name !== 'scrypt' || !pow2 || k.N < 1024 || k.N > 1 << 20 || k.r < 1 || k.r > 16) {
    throw new Error(
      `the server asks for key-derivation parameters this client refuses: ${JSON.stringify(k)}`,
    );
  }
  if (k.p < 1 || k.p > 4 || k.keyLength < 16 || k.keyLength > 64) {
    throw new Error(
      `the server asks for key-derivation parameters this client refuses: ${JSON.stringify(k)}`,
    );
  }
}

export function deriveKey(passphrase: string, saltB64: string, k: KdfParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      passphrase,
      Buffer.from(saltB64, 'base64'),
      k.keyLength,
      { N: k.N, r: k.r, p: k.p, maxmem: 256 * k.N * k.r },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

export const ROLES_THAT_REGISTER = ['agent', 'process-server', 'master-target'] as const;
export type RegisteringRole = (typeof ROLES_THAT_REGISTER)[number];
export const OS_TYPES = ['linux', 'windows'] as const;

/** A disk as an agent reports it (registration and heartbeats). */
export interface ReportedDisk {
  /** The disk's own id, a UUID made once by the agent (unique across the deployment, S23). */
  id: string;
  name: string;
  sizeBytes: number;
  path?: string;
}

export interface Challenge {
  challengeId: string;
  /** base64, 32 random bytes. */
  nonce: string;
  /** base64 salt of the passphrase's derived key. */
  salt: string;
  kdf: KdfParams;
}

export interface RegistrationRequest {
  challengeId: string;
  role: RegisteringRole;
  name: string;
  /** Agents: 'linux' or 'windows'. */
  osType?: string;
  /** Agents: the machine id from the agent's data dir (agent.json). */
  machineId?: string;
  /** Agents: the site the machine belongs to (optional). */
  site?: string;
  /** host:port of the component's listener, if it has one. */
  address?: string;
  /** Agents: the disks it knows already. */
  disks?: ReportedDisk[];
  /** The component's ECDSA P-256 public key, SPKI PEM. */
  publicKey: string;
  /** base64, 32 random bytes chosen by the component: the answer's proof covers it. */
  clientNonce: string;
  /** hex HMAC-SHA256(K, clientTranscript). */
  proof: string;
}

export interface RegistrationAnswer {
  role: RegisteringRole;
  name: string;
  machineId?: string;
  /** The component's certificate (PEM) and the deployment CA's (PEM). */
  certificate: string;
  ca: string;
  /** True when the name was registered before (a new certificate; the same rows). */
  reregistered: boolean;
  /** How often to heartbeat. */
  heartbeatSeconds: number;
  /** hex HMAC-SHA256(K, serverTranscript). */
  serverProof: string;
}

/** Length-prefixed fields: no field can be shifted into another. */
function encode(fields: readonly string[]): Buffer {
  return Buffer.from(fields.map((f) => `${Buffer.byteLength(f)}:${f}\n`).join(''), 'utf8');
}

function disksText(disks: readonly ReportedDisk[] | undefined): string {
  return JSON.stringify((disks ?? []).map((d) => [d.id, d.name, d.sizeBytes, d.path ?? '']));
}

export function clientTranscript(
  challenge: Pick<Challenge, 'challengeId' | 'nonce' | 'salt'>,
  serverCertFingerprint: string,
  r: Omit<RegistrationRequest, 'proof'>,
): Buffer {
  return encode([
    PROTOCOL,
    'client',
    challenge.challengeId,
    challenge.nonce,
    challenge.salt,
    serverCertFingerprint.toUpperCase(),
    r.role,
    r.name,
    r.osType ?? '',
    r.machineId ?? '',
    r.site ?? '',
    r.address ?? '',
    disksText(r.disks),
    r.publicKey.trim(),
    r.clientNonce,
  ]);
}

export function serverTranscript(
  clientProof: string,
  a: Omit<RegistrationAnswer, 'serverProof' | 'heartbeatSeconds'>,
): Buffer {
  const sha = (t: string) => createHash('sha256').update(t.trim()).digest('hex');
  return encode([
    PROTOCOL,
    'server',
    clientProof,
    a.role,
    a.name,
    a.machineId ?? '',
    sha(a.certificate),
    sha(a.ca),
    a.reregistered ? '1' : '0',
  ]);
}

export function mac(key: Buffer, transcript: Buffer): string {
  return createHmac('sha256', key).update(transcript).digest('hex');
}

/** Constant-time comparison of two hex MACs. */
export function sameMac(a: string, b: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(a) || !/^[0-9a-f]{64}$/.test(b)) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}
