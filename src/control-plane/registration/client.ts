// The registering side of the handshake (protocol.ts): `rebound agent|process-server|
// master-target register`. Every check happens before anything is written: a wrong passphrase,
// a bad address, an unreachable or impostor server leave no file behind (only the configurator
// log says what happened).
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { loadState, newState, STATE_FILE } from '../../agent/agent-state.js';
import { CliError, EXIT } from '../../cli/exit-codes.js';
import { writeFilesAtomically } from '../../pki/files.js';
import { checkName, leafFileBase, peerIdentity } from '../../pki/roles.js';
import { ApiRequestError, ApiUnreachableError } from '../client/api-client.js';
import { parseServerAddress, type ServerAddress } from './address.js';
import type { ConfiguratorLog } from './configurator-log.js';
import { normalizePassphrase } from './passphrase.js';
import {
  type Challenge,
  checkKdf,
  clientTranscript,
  deriveKey,
  mac,
  OS_TYPES,
  type RegisteringRole,
  type RegistrationAnswer,
  type RegistrationRequest,
  type ReportedDisk,
  sameMac,
  serverTranscript,
} from './protocol.js';
import { REGISTRATION_FILE, type RegistrationFile } from './registration-file.js';

export interface RegisterOptions {
  role: RegisteringRole;
  /** The configuration server's address as typed. */
  server: string;
  passphraseFile: string;
  /** Default: this host's name. */
  name?: string;
  /** Agents: the data dir (registration.json, tls/, agent.json). */
  dataDir?: string;
  osType?: string;
  site?: string;
  /** Process servers and master targets: where their key and certificate go. */
  tlsDir?: string;
  /** host:port of the component's listener. */
  address?: string;
  log: ConfiguratorLog;
  timeoutMs?: number;
}

export interface RegisterResult {
  role: RegisteringRole;
  name: string;
  machineId?: string;
  server: string;
  reregistered: boolean;
  /** The directory holding registration.json. */
  dir: string;
  certFile: string;
  certNotAfter: string;
  files: string[];
}

interface Answer {
  status: number;
  body: unknown;
  peer: PeerCertificate;
}

/** One JSON POST on a fresh TLS connection, reporting the certificate the server showed. */
function post(addr: ServerAddress, path: string, body: unknown, timeoutMs: number): Promise<Answer> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: addr.host,
        port: addr.port,
        path,
        method: 'POST',
        agent: false,
        // Not yet verifiable: the CA comes in the answer, trusted only once the server proved
        // it knows the passphrase. The certificate's fingerprint is bound into the proof.
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
        timeout: timeoutMs,
        headers: { 'content-type': 'application/json', 'content-length': String(payload.length) },
      },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new ApiUnreachableError(`${addr.display}: ${e.message}`)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text), peer });
          } catch {
            reject(
              new ApiUnreachableError(
                `${addr.display} is not a configuration server (its answer is not JSON)`,
              ),
            );
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e) =>
      reject(
        new ApiUnreachableError(`cannot reach the configuration server at ${addr.display}: ${e.message}`),
      ),
    );
    req.end(payload);
  });
}

function refused(a: Answer): ApiRequestError {
  const err = (a.body as { error?: { code?: string; message?: string } } | undefined)?.error;
  return new ApiRequestError(a.status, err?.code ?? 'unknown', err?.message ?? `HTTP ${a.status}`);
}

async function readPassphrase(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new CliError(`cannot read the passphrase file ${file}: ${why}`, EXIT.usage);
  }
  const passphrase = normalizePassphrase(text);
  if (passphrase === '') throw new CliError(`the passphrase file ${file} is empty`, EXIT.usage);
  return passphrase;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Registers, verifies the server, then writes the component's files. */
export async function registerWithServer(o: RegisterOptions): Promise<RegisterResult> {
  const log = o.log;
  const timeoutMs = o.timeoutMs ?? 15_000;
  let addr: ServerAddress;
  try {
    addr = parseServerAddress(o.server);
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.usage);
  }
  const name = o.name ?? hostname().split('.')[0];
  try {
    checkName(name);
  } catch (e) {
    throw new CliError(`--name: ${(e as Error).message}`, EXIT.usage);
  }
  if (o.role === 'agent') {
    if (!o.dataDir) throw new CliError('--data-dir is required', EXIT.usage);
    if (!o.osType || !(OS_TYPES as readonly string[]).includes(o.osType)) {
      throw new CliError(
        `--os-type '${o.osType}' is not known: use one of ${OS_TYPES.join(', ')}`,
        EXIT.usage,
      );
    }
  } else if (!o.tlsDir) throw new CliError('--tls-dir is required', EXIT.usage);
  const passphrase = await readPassphrase(o.passphraseFile);
  log.step(`passphrase read from ${o.passphraseFile}`);

  // The agent's identity: the machine id (and disk ids) from its data dir, or a new one.
  const dir = resolve(o.role === 'agent' ? o.dataDir! : o.tlsDir!);
  let machineId: string | undefined;
  let disks: ReportedDisk[] | undefined;
  let newAgentState: ReturnType<typeof newState> | undefined;
  if (o.role === 'agent') {
    const state = await loadState(dir);
    if (state) {
      machineId = state.machineId;
      disks = state.disks
        .filter((d) => d.uuid)
        .map((d) => ({ id: d.uuid!, name: d.name, sizeBytes: d.size, path: d.path }));
      log.step(`machine id ${machineId} and ${disks.length} disk(s) from ${join(dir, STATE_FILE)}`);
    } else {
      newAgentState = newState();
      machineId = newAgentState.machineId;
      disks = [];
      log.step(`new machine id ${machineId} (no ${STATE_FILE} in ${dir} yet)`);
    }
  }

  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKey = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const privateKey = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  log.step('ECDSA P-256 key pair made (the private key stays here)');

  const c = await post(addr, '/api/v1/registration/challenge', {}, timeoutMs);
  let serverId: ReturnType<typeof peerIdentity>;
  try {
    serverId = peerIdentity(c.peer);
  } catch (e) {
    throw new CliError(
      `${addr.display} is not a Rebound configuration server: ${(e as Error).message}`,
      EXIT.error,
    );
  }
  if (serverId.role !== 'configuration-server') {
    throw new CliError(`${addr.display} is a ${serverId.role}, not a configuration server`, EXIT.error);
  }
  if (c.status !== 200) throw refused(c);
  const challenge = c.body as Challenge;
  const fingerprint = c.peer.fingerprint256;
  log.step(`challenge received; server certificate SHA-256 ${fingerprint}`);
  try {
    checkKdf(challenge.kdf);
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.error);
  }
  const key = await deriveKey(passphrase, challenge.salt, challenge.kdf);

  const signed: Omit<RegistrationRequest, 'proof'> = {
    challengeId: challenge.challengeId,
    role: o.role,
    name,
    ...(o.role === 'agent' ? { osType: o.osType, machineId, disks } : {}),
    ...(o.site ? { site: o.site } : {}),
    ...(o.address ? { address: o.address } : {}),
    publicKey,
    clientNonce: randomBytes(32).toString('base64'),
  };
  const proof = mac(key, clientTranscript(challenge, fingerprint, signed));
  const r = await post(addr, '/api/v1/registration', { ...signed, proof }, timeoutMs);
  if (r.peer.fingerprint256 !== fingerprint) {
    throw new CliError(
      `${addr.display} changed its certificate during the registration: try again`,
      EXIT.error,
    );
  }
  if (r.status !== 200) throw refused(r);
  const answer = r.body as RegistrationAnswer;

  // Trust nothing in the answer before the server proved it knows the passphrase.
  const { serverProof, heartbeatSeconds: _h, ...covered } = answer;
  if (typeof serverProof !== 'string' || !sameMac(serverProof, mac(key, serverTranscript(proof, covered)))) {
    throw new CliError(
      `the server at ${addr.display} could not prove it knows the passphrase: it is not the ` +
        'configuration server that passphrase belongs to (or someone is in between); nothing was written',
      EXIT.denied,
    );
  }
  const ca = new X509Certificate(answer.ca);
  const cert = new X509Certificate(answer.certificate);
  const tlsCert = new X509Certificate(c.peer.raw);
  if (!ca.ca || !cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new CliError(`the certificate from ${addr.display} is not signed by the CA it sent`, EXIT.error);
  }
  if (cert.publicKey.export({ type: 'spki', format: 'pem' }).toString() !== publicKey) {
    throw new CliError(`the certificate from ${addr.display} is not for this component's key`, EXIT.error);
  }
  if (!tlsCert.checkIssued(ca) || !tlsCert.verify(ca.publicKey)) {
    throw new CliError(`the TLS certificate of ${addr.display} is not signed by the CA it sent`, EXIT.error);
  }
  log.step(
    `server proof verified; certificate serial ${cert.serialNumber} valid until ${new Date(cert.validTo).toISOString()}`,
  );

  // Write: TLS files, then (agents) a new agent.json, then registration.json last.
  const tlsRel = o.role === 'agent' ? 'tls' : '.';
  const tlsDir = join(dir, tlsRel);
  const base = leafFileBase({ role: o.role, name });
  const rel = (f: string) => (tlsRel === '.' ? f : `${tlsRel}/${f}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await mkdir(tlsDir, { recursive: true, mode: 0o700 });
  const tlsFiles = [
    { path: join(tlsDir, `${base}.key`), data: privateKey, mode: 0o600 },
    { path: join(tlsDir, `${base}.crt`), data: answer.certificate, mode: 0o644 },
    { path: join(tlsDir, 'ca.crt'), data: answer.ca, mode: 0o644 },
  ];
  const overwrite = (await Promise.all(tlsFiles.map((f) => exists(f.path)))).some(Boolean);
  await writeFilesAtomically(tlsFiles, overwrite);
  const written = tlsFiles.map((f) => f.path);
  if (newAgentState) {
    const path = join(dir, STATE_FILE);
    await writeFilesAtomically([{ path, data: `${JSON.stringify(newAgentState, null, 2)}\n`, mode: 0o644 }]);
    written.push(path);
  }
  const file: RegistrationFile = {
    version: 1,
    role: o.role,
    name,
    ...(machineId ? { machineId } : {}),
    server: { address: addr.display, url: addr.url, caFingerprint: ca.fingerprint256 },
    keyFile: rel(`${base}.key`),
    certFile: rel(`${base}.crt`),
    caFile: rel('ca.crt'),
    certFingerprint: cert.fingerprint256,
    certNotAfter: new Date(cert.validTo).toISOString(),
    registeredAt: new Date().toISOString(),
  };
  const regPath = join(dir, REGISTRATION_FILE);
  await writeFilesAtomically(
    [{ path: regPath, data: `${JSON.stringify(file, null, 2)}\n`, mode: 0o644 }],
    true,
  );
  written.push(regPath);
  log.step(`files written: ${written.join(', ')}`);
  return {
    role: o.role,
    name,
    machineId,
    server: addr.display,
    reregistered: answer.reregistered,
    dir,
    certFile: join(tlsDir, `${base}.crt`),
    certNotAfter: file.certNotAfter,
    files: written,
  };
}
