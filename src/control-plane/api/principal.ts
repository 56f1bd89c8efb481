// Who is calling: a person with the admin token, a component with a certificate from the
// deployment's CA (mutual TLS), or nobody (only registration and the OpenAPI document).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { type Identity, peerIdentity, type Role } from '../../pki/roles.js';

export type Principal =
  | { kind: 'admin' }
  | { kind: 'component'; identity: Identity }
  | { kind: 'anonymous'; reason: string };

/** Who may call a route: 'admin', a component role, or 'anyone' (registration, OpenAPI). */
export type Access = 'admin' | Role | 'anyone';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** What a connection's certificate makes its caller; undefined when it sent none. */
type CertificatePrincipal = Principal | undefined;

// A connection's client certificate cannot change (TLS 1.3 has no renegotiation), and reading
// and parsing it costs more than most requests: once per connection.
const byConnection = new WeakMap<TLSSocket, CertificatePrincipal>();

function certificatePrincipal(socket: TLSSocket): CertificatePrincipal {
  if (byConnection.has(socket)) return byConnection.get(socket);
  const peer = socket.getPeerCertificate();
  const sentCertificate = Boolean(peer && 'raw' in peer && peer.raw);
  let p: CertificatePrincipal;
  // A resumed TLS 1.3 session without a client certificate is `authorized` to Node (it looks
  // like PSK): only a certificate that is really there makes the caller a component.
  if (socket.authorized && sentCertificate) {
    try {
      p = { kind: 'component', identity: peerIdentity(peer) };
    } catch (e) {
      p = { kind: 'anonymous', reason: (e as Error).message };
    }
  } else if (sentCertificate && socket.authorizationError) {
    p = { kind: 'anonymous', reason: `client certificate refused: ${socket.authorizationError}` };
  }
  byConnection.set(socket, p);
  return p;
}

/**
 * The caller of a request. A verified client certificate wins; otherwise a bearer token that
 * hashes to one of adminTokenHashes makes the caller the admin.
 */
export function principalOf(req: FastifyRequest, adminTokenHashes: readonly string[]): Principal {
  const fromCertificate = certificatePrincipal(req.raw.socket as TLSSocket);
  if (fromCertificate?.kind === 'component') return fromCertificate;
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) {
    const hash = sha256Hex(auth.slice('Bearer '.length).trim());
    if (adminTokenHashes.some((h) => sameHex(h, hash))) return { kind: 'admin' };
    return { kind: 'anonymous', reason: 'the bearer token is not valid' };
  }
  return fromCertificate ?? { kind: 'anonymous', reason: 'no client certificate and no bearer token' };
}

export function describePrincipal(p: Principal): string {
  if (p.kind === 'admin') return 'admin';
  if (p.kind === 'component') return `${p.identity.role}:${p.identity.name}`;
  return 'anonymous';
}

export function allowed(p: Principal, access: readonly Access[]): boolean {
  if (access.includes('anyone')) return true;
  if (p.kind === 'admin') return access.includes('admin');
  if (p.kind === 'component') return access.includes(p.identity.role);
  return false;
}
