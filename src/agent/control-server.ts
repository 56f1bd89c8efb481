// The agent's local control API: HTTP over a Unix socket in the data dir: live status
// (with the shipper's state and backlog), bookmarks, app-consistent points, resync requests,
// and a replication group's write barrier (hold, release).
import { existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { callUnixJson } from '../util/unix-http.js';
import type { Agent } from './agent.js';
import { AppPointRefused, type AppPoints } from './app-points.js';
import { agentLiveStatus } from './live-status.js';
import type { Shipper } from './shipper.js';
import { MAX_HOLD_MS } from './write-barrier.js';

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, 'agent.sock');
}

export async function startControlServer(
  agent: Agent,
  /** shipper: the one running, or how to find it (the configuration server may start one later). */
  extras: { appPoints?: AppPoints; shipper?: Shipper | (() => Shipper | undefined) } = {},
): Promise<Server> {
  const shipper = () => (typeof extras.shipper === 'function' ? extras.shipper() : extras.shipper);
  const path = controlSocketPath(agent.dataDir);
  if (existsSync(path)) unlinkSync(path);
  const server = createServer(async (req, res) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    try {
      const url = new URL(req.url ?? '/', 'http://agent');
      if (req.method === 'GET' && url.pathname === '/status')
        return send(200, {
          ...agent.status(),
          ...agentLiveStatus(agent, shipper()),
          appConsistent: extras.appPoints?.status(),
        });
      if (req.method === 'POST' && url.pathname === '/app-points') {
        if (!extras.appPoints) return send(409, { error: 'this agent takes no app-consistent points' });
        const r = await extras.appPoints
          .take(url.searchParams.get('tag') || undefined)
          .catch((e: Error) => e);
        if (r instanceof AppPointRefused) return send(r.status, { error: r.message });
        if (r instanceof Error) throw r;
        if (r.kind === 'app') return send(201, r);
        const instead =
          r.seq === undefined
            ? 'a crash-consistent flush was attempted instead'
            : `a crash-consistent flush was taken instead at seq ${r.seq}`;
        return send(502, { ...r, error: `no app-consistent point: ${r.reason}; ${instead}` });
      }
      if (req.method === 'POST' && url.pathname === '/bookmarks') {
        const tag = url.searchParams.get('tag');
        if (!tag) return send(400, { error: 'query parameter tag is required' });
        const seq = await agent.bookmark(tag);
        if (seq === undefined)
          return send(507, { error: 'change log is full or failing: bookmark not recorded' });
        return send(201, { seq, tag });
      }
      if (req.method === 'POST' && url.pathname === '/flush') {
        // A crash-consistent point on request (a replication group's point, taken under its barrier).
        const seq = await agent.flush();
        if (seq === undefined)
          return send(507, { error: 'change log is full or failing: no point recorded' });
        return send(201, { seq });
      }
      if (req.method === 'POST' && url.pathname === '/barrier/hold') {
        const t = url.searchParams.get('timeoutMs');
        const timeoutMs = t === null ? undefined : /^\d+$/.test(t) ? Number(t) : Number.NaN;
        if (timeoutMs !== undefined && !(timeoutMs >= 1 && timeoutMs <= MAX_HOLD_MS))
          return send(400, { error: `timeoutMs must be an integer from 1 to ${MAX_HOLD_MS}, not '${t}'` });
        return send(200, await agent.holdWrites(timeoutMs));
      }
      if (req.method === 'POST' && url.pathname === '/barrier/release') {
        const released = agent.releaseWrites();
        return send(200, { released, lastSeq: agent.log.nextSeq - 1 });
      }
      if (req.method === 'POST' && url.pathname === '/resync') {
        const disks = await agent.requestResync(url.searchParams.get('disk') ?? undefined);
        return send(202, { disks });
      }
      send(404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
    } catch (e) {
      send(500, { error: (e as Error).message });
    }
  });
  await new Promise<void>((r) => server.listen(path, r));
  return server;
}

export type { ControlReply } from '../util/unix-http.js';

/** Calls a running agent's control API. */
export function callAgent(dataDir: string, method: string, path: string) {
  return callUnixJson(controlSocketPath(dataDir), method, path, 'agent');
}
