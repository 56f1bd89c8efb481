// Component roles and the identity a certificate carries. Pure: no I/O.
import type { PeerCertificate } from 'node:tls';

export const ROLES = ['agent', 'process-server', 'master-target', 'configuration-server'] as const;
export type Role = (typeof ROLES)[number];

/** A component's name: what goes in the certificate's CN and DNS SAN and in file names. */
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/;

/** URI in a leaf certificate's subjectAltName that names its role and name. */
export const ROLE_URI_SCHEME = 'rebound:';

export interface Identity {
  role: Role;
  name: string;
}

export function isRole(text: string): text is Role {
  return (ROLES as readonly string[]).includes(text);
}

export function parseRole(text: string): Role {
  if (!isRole(text)) throw new Error(`role '${text}' is not valid: use one of ${ROLES.join(', ')}`);
  return text;
}

export function checkName(name: string): string {
  if (!NAME.test(name) || name.includes('..')) {
    throw new Error(
      `name '${name}' is not valid: use 1-64 letters, digits, '.' or '-', starting and ending with a letter or digit`,
    );
  }
  return name;
}

export function roleUri(id: Identity): string {
  return `rebound://${id.role}/${id.name}`;
}

/** File names of an issued certificate and its key. */
export function leafFileBase(id: Identity): string {
  return `${id.role}-${id.name}`;
}

/** Splits Node's `subjectaltname` string ("DNS:a, IP Address:127.0.0.1, URI:rebound://agent/a"). */
export function parseSubjectAltName(text: string | undefined): { type: string; value: string }[] {
  if (!text) return [];
  return text
    .split(/,\s*/)
    .map((entry) => {
      const colon = entry.indexOf(':');
      return colon < 0
        ? { type: entry, value: '' }
        : { type: entry.slice(0, colon), value: entry.slice(colon + 1) };
    })
    .filter((e) => e.type !== '');
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The role and name of a peer, from `tls.TLSSocket.getPeerCertificate()`. The rebound:// URI
 * in the subjectAltName is authoritative; the subject's OU and CN must agree with it.
 * Throws an error naming what is missing or inconsistent. Checks nothing about the signature:
 * TLS has verified the chain before this is called.
 */
export function peerIdentity(cert: PeerCertificate | Record<string, never> | null | undefined): Identity {
  if (!cert || !('raw' in cert) || !cert.raw) throw new Error('peer sent no certificate');
  const uris = parseSubjectAltName(cert.subjectaltname)
    .filter((e) => e.type === 'URI' && e.value.startsWith(`${ROLE_URI_SCHEME}//`))
    .map((e) => e.value);
  const cn = first(cert.subject?.CN);
  if (uris.length === 0) throw new Error(`peer certificate '${cn ?? '?'}' carries no rebound:// role URI`);
  if (uris.length > 1) throw new Error(`peer certificate '${cn ?? '?'}' carries ${uris.length} role URIs`);
  const m = /^rebound:\/\/([^/]+)\/([^/]+)$/.exec(uris[0]);
  if (!m) throw new Error(`peer certificate role URI '${uris[0]}' is not rebound://ROLE/NAME`);
  const [, role, name] = m;
  if (!isRole(role)) throw new Error(`peer certificate has unknown role '${role}'`);
  const ou = first(cert.subject?.OU);
  if (ou !== role) throw new Error(`peer certificate role URI says '${role}' but its OU says '${ou ?? ''}'`);
  if (cn !== name) throw new Error(`peer certificate role URI names '${name}' but its CN is '${cn ?? ''}'`);
  return { role, name };
}
