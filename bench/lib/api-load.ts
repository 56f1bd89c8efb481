// The load generator of bench/config-server-api.ts, run as its own process so that it never
// shares an event loop with the configuration server it measures:
//
//   node dist/bench/lib/api-load.js CONFIG.json      (LoadConfig; prints LoadResult as JSON)
//
// Every simulated agent has its own certificate, hence its own keep-alive TLS connection (a
// client certificate belongs to a connection, so agents cannot share one), as real agents do.
// Each agent heartbeats every `intervalSeconds` (if the server has the route) and reads its own
// machine half an interval later; the admin lists resources at a fixed rate over a few
// keep-alive connections. The schedule is open-loop: a request is timed from the moment it was
// due, so a slow server cannot slow the load down and hide its own latency.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { PeerCertificate } from 'node:tls';
import { checkServerIdentity } from '../../src/control-plane/client/api-client.js';

export interface LoadAgent {
  name: string;
  machine: string;
  keyFile: string;
  certFile: string;
  disks: { id: string; name: string; sizeBytes: number }[];
}

export interface LoadConfig {
  url: string;
  caFile: string;
  adminToken: string;
  agents: LoadAgent[];
  intervalSeconds: number;
  warmupSeconds: number;
  measureSeconds: number;
  /** POST /api/v1/heartbeats from every agent (off when the server has no such route). */
  heartbeats: boolean;
  /** What each agent reads: its own machine, or the sites list where there is no machine route. */
  agentRead: 'machine' | 'sites';
  adminReads: string[];
  adminReadsPerSecond: number;
}

export interface Stats {
  count: number;
  errors: Record<string, number>;
  p50: number;
  p99: number;
  max: number;
  mean: number;
  /** Requests per second over the measured window. */
  rate: number;
}

export interface LoadResult {
  kinds: Record<string, Stats>;
  all: Stats;
  /** The generator's own event-loop delay, p99 in ms: large values would make latencies suspect. */
  generatorLoopDelayP99: number;
  connections: number;
  /** Errors during the warm-up (connection set-up included), by kind and status. */
  warmupErrors: Record<string, number>;
  /** The first answer of each path and error status. */
  errorSamples: Record<string, string>;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function stats(latencies: number[], errors: Record<string, number>, seconds: number): Stats {
  const sorted = [...latencies].sort((a, b) => a - b);
  const sum = sorted.reduce((s, v) => s + v, 0);
  return {
    count: sorted.length,
    errors,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? 0,
    mean: sorted.length ? sum / sorted.length : 0,
    rate: sorted.length / seconds,
  };
}

/** The first error answer of each path and status, for the report. */
const errorSamples = new Map<string, string>();

interface Outcome {
  status: number | string;
  ms: number;
}

function send(
  url: URL,
  agent: Agent,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
) {
  const due = performance.now();
  return new Promise<Outcome>((resolve) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method,
        agent,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        timeout: 30_000,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        let body = '';
        res.on('data', (d: Buffer) => {
          if (status >= 300 && body.length < 300) body += d.toString();
        });
        res.on('end', () => {
          if (status >= 300 && !errorSamples.has(`${path} ${status}`))
            errorSamples.set(`${path} ${status}`, body.slice(0, 300));
          resolve({ status, ms: performance.now() - due });
        });
        res.on('error', (e) => resolve({ status: e.message, ms: performance.now() - due }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) =>
      resolve({ status: (e as NodeJS.ErrnoException).code ?? e.message, ms: performance.now() - due }),
    );
    req.end(body);
  });
}

async function main(): Promise<void> {
  const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8')) as LoadConfig;
  const url = new URL(cfg.url);
  const ca = readFileSync(cfg.caFile);
  const tls = {
    ca,
    minVersion: 'TLSv1.3' as const,
    checkServerIdentity: (h: string, c: PeerCertificate) => checkServerIdentity(h, c),
  };
  const agents = cfg.agents.map((a) => ({
    ...a,
    http: new Agent({
      keepAlive: true,
      maxSockets: 1,
      ...tls,
      key: readFileSync(a.keyFile),
      cert: readFileSync(a.certFile),
    }),
  }));
  const admin = new Agent({ keepAlive: true, maxSockets: 8, ...tls });
  const adminHeaders = { authorization: `Bearer ${cfg.adminToken}`, accept: 'application/json' };

  const latencies = new Map<string, number[]>();
  const errors = new Map<string, Record<string, number>>();
  const warmupErrors: Record<string, number> = {};
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const start = performance.now();
  const measureFrom = start + cfg.warmupSeconds * 1000;
  const measureTo = measureFrom + cfg.measureSeconds * 1000;
  let measuring = false;
  const inflight = new Set<Promise<void>>();
  const timers: NodeJS.Timeout[] = [];

  const fire = (kind: string, p: Promise<Outcome>) => {
    const due = performance.now();
    const counted = due >= measureFrom && due < measureTo;
    const done = p.then((o) => {
      const ok = typeof o.status === 'number' && o.status >= 200 && o.status < 300;
      if (!counted) {
        if (!ok) warmupErrors[`${kind} ${o.status}`] = (warmupErrors[`${kind} ${o.status}`] ?? 0) + 1;
        return;
      }
      if (!latencies.has(kind)) latencies.set(kind, []);
      if (!errors.has(kind)) errors.set(kind, {});
      if (ok) latencies.get(kind)!.push(o.ms);
      else errors.get(kind)![String(o.status)] = (errors.get(kind)![String(o.status)] ?? 0) + 1;
    });
    inflight.add(done);
    void done.finally(() => inflight.delete(done));
  };

  /** Runs fn every interval ms from offset ms, until the measured window ends. */
  const every = (offsetMs: number, intervalMs: number, fn: () => void) => {
    const tick = (at: number) => {
      if (at >= measureTo) return;
      timers.push(
        setTimeout(
          () => {
            fn();
            tick(at + intervalMs);
          },
          Math.max(0, at - performance.now()),
        ),
      );
    };
    tick(start + offsetMs);
  };

  const interval = cfg.intervalSeconds * 1000;
  agents.forEach((a, i) => {
    // Spread over the interval, as agents started at different times are.
    const offset = (i / agents.length) * interval;
    const headers = { accept: 'application/json' };
    if (cfg.heartbeats) {
      const body = JSON.stringify({
        address: `10.0.${i >> 8}.${i & 255}:10809`,
        status: { bench: true },
        disks: a.disks,
      });
      every(offset, interval, () =>
        fire('agent: POST heartbeat', send(url, a.http, 'POST', '/api/v1/heartbeats', headers, body)),
      );
    }
    const path = cfg.agentRead === 'machine' ? `/api/v1/machines/${a.machine}` : '/api/v1/sites';
    every(offset + interval / 2, interval, () =>
      fire(
        `agent: GET ${cfg.agentRead === 'machine' ? 'own machine' : 'sites'}`,
        send(url, a.http, 'GET', path, headers),
      ),
    );
  });
  if (cfg.adminReads.length > 0 && cfg.adminReadsPerSecond > 0) {
    let n = 0;
    every(0, 1000 / cfg.adminReadsPerSecond, () => {
      const path = cfg.adminReads[n++ % cfg.adminReads.length];
      fire(`admin: GET ${path.replace('/api/v1/', '')}`, send(url, admin, 'GET', path, adminHeaders));
    });
  }

  const startMeasuring = setTimeout(() => {
    measuring = true;
    loop.enable();
    process.stderr.write('api-load: measuring\n');
  }, measureFrom - performance.now());
  await new Promise((r) => setTimeout(r, measureTo - performance.now()));
  clearTimeout(startMeasuring);
  loop.disable();
  process.stderr.write(`api-load: measured${measuring ? '' : ' (window never started)'}\n`);
  for (const t of timers) clearTimeout(t);
  await Promise.race([Promise.all([...inflight]), new Promise((r) => setTimeout(r, 35_000))]);
  const connections = agents.reduce(
    (n, a) =>
      n + Object.values(a.http.sockets).flat().length + Object.values(a.http.freeSockets).flat().length,
    0,
  );
  for (const a of agents) a.http.destroy();
  admin.destroy();

  const all: number[] = [];
  const allErrors: Record<string, number> = {};
  const kinds: Record<string, Stats> = {};
  for (const [kind, l] of [...latencies.entries()].sort()) {
    kinds[kind] = stats(l, errors.get(kind) ?? {}, cfg.measureSeconds);
    all.push(...l);
    for (const [k, v] of Object.entries(errors.get(kind) ?? {})) allErrors[`${kind} ${k}`] = v;
  }
  const result: LoadResult = {
    kinds,
    all: stats(all, allErrors, cfg.measureSeconds),
    generatorLoopDelayP99: loop.percentile(99) / 1e6,
    connections,
    warmupErrors,
    errorSamples: Object.fromEntries(errorSamples),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`api-load: ${(e as Error).stack}\n`);
    process.exit(2);
  },
);
