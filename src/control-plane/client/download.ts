// A GET whose answer is a file, streamed to disk (ApiClient holds JSON answers in memory).

import type { FileHandle } from 'node:fs/promises';
import { request } from 'node:https';
import {
  type ApiClientOptions,
  ApiRequestError,
  ApiUnreachableError,
  checkServerIdentity,
} from './api-client.js';

/** Streams the body of GET `path` into `fh`; returns the bytes written. Non-2xx: ApiRequestError. */
export function downloadTo(opts: ApiClientOptions, path: string, fh: FileHandle): Promise<number> {
  const base = new URL(opts.url);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise<number>((resolve, reject) => {
    const req = request(
      new URL(path, base),
      {
        method: 'GET',
        headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
        ca: opts.ca,
        key: opts.key,
        cert: opts.cert,
        minVersion: 'TLSv1.3',
        checkServerIdentity,
        timeout: timeoutMs,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let err: { code?: string; message?: string } | undefined;
            try {
              err = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: typeof err }).error;
            } catch {
              // not our error shape
            }
            reject(new ApiRequestError(status, err?.code ?? 'unknown', err?.message ?? `HTTP ${status}`));
          });
          return;
        }
        let bytes = 0;
        let writing = Promise.resolve();
        res.on('data', (c: Buffer) => {
          res.pause();
          writing = writing.then(async () => {
            await fh.write(c);
            bytes += c.length;
            res.resume();
          });
          writing.catch((e) => {
            res.destroy();
            reject(e);
          });
        });
        res.on('error', (e) => reject(new ApiUnreachableError(`${base.host}: ${e.message}`)));
        res.on('end', () => {
          writing.then(() => resolve(bytes), reject);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e) =>
      reject(new ApiUnreachableError(`cannot reach the configuration server at ${base.host}: ${e.message}`)),
    );
    req.end();
  });
}
