// A small HTTPS client for the configuration server's API, used by the CLI (as admin, with the
// token) and by components (with their certificates). The server is verified against the
// deployment CA only: components reach it by whatever address the operator gave, so its
// certificate's role URI is checked instead of a host name.
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { peerIdentity } from '../../pki/roles.js';

export interface ApiClientOptions {
  /** https://HOST:PORT */
  url: string;
  /** The deployment CA certificate (PEM). */
  ca: Buffer | string;
  /** Admin bearer token. */
  token?: string;
  /** A component's key and certificate (mutual TLS). */
  key?: Buffer;
  cert?: Buffer;
  timeoutMs?: number;
}

/** A non-2xx answer: the server's code and message, the HTTP status. */
export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** The server could not be reached or did not answer like a configuration server. */
export class ApiUnreachableError extends Error {}

export function checkServerIdentity(_host: string, cert: PeerCertificate): Error | undefined {
  try {
    const id = peerIdentity(cert);
    if (id.role !== 'configuration-server') {
      return new Error(`the server's certificate is a ${id.role}'s, not a configuration server's`);
    }
    return undefined;
  } catch (e) {
    return e as Error;
  }
}

export class ApiClient {
  private readonly base: URL;

  constructor(private readonly opts: ApiClientOptions) {
    this.base = new URL(opts.url);
    if (this.base.protocol !== 'https:')
      throw new Error(`configuration server URL '${opts.url}' is not https://`);
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {});
  }
  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }
  delete<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, body);
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    return new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          headers,
          ca: this.opts.ca,
          key: this.opts.key,
          cert: this.opts.cert,
          minVersion: 'TLSv1.3',
          checkServerIdentity,
          timeout: this.opts.timeoutMs ?? 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => reject(new ApiUnreachableError(`${this.base.host}: ${e.message}`)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let parsed: unknown;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch {
              reject(
                new ApiUnreachableError(`${this.base.host} answered ${status} with a body that is not JSON`),
              );
              return;
            }
            if (status >= 200 && status < 300) {
              resolve(parsed as T);
              return;
            }
            const err = (
              parsed as { error?: { code?: string; message?: string; details?: Record<string, unknown> } }
            )?.error;
            reject(
              new ApiRequestError(
                status,
                err?.code ?? 'unknown',
                err?.message ?? `HTTP ${status}`,
                err?.details,
              ),
            );
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(new Error(`no answer within ${(this.opts.timeoutMs ?? 30_000) / 1000} s`)),
      );
      req.on('error', (e) =>
        reject(
          new ApiUnreachableError(`cannot reach the configuration server at ${this.base.host}: ${e.message}`),
        ),
      );
      req.end(payload);
    });
  }
}
