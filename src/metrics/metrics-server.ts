// The /metrics endpoint: Prometheus text format over plain HTTP on the address given with
// --metrics-listen. Anything else is a 404 naming the one path there is.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

export interface MetricsEndpoint {
  host: string;
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  logger: Logger;
  /** For log lines: 'agent', 'process server', 'master target'. */
  what: string;
}): Promise<MetricsEndpoint> {
  const { registry, logger } = opts;
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`no such endpoint: ${req.method} ${path} (metrics are at GET /metrics)\n`);
      return;
    }
    try {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    } catch (e) {
      logger.error({ err: (e as Error).message }, `${opts.what}: collecting metrics failed`);
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`collecting metrics failed: ${(e as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(new Error(`cannot listen for metrics on ${opts.host}:${opts.port}: ${e.message}`)),
    );
    server.listen(opts.port, opts.host, resolve);
  });
  const addr = server.address() as AddressInfo;
  logger.info({ listen: `${addr.address}:${addr.port}` }, `${opts.what}: metrics at /metrics`);
  return {
    host: addr.address,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
