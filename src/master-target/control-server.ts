// The master target's local control API: HTTP over a Unix socket in its data dir.
// Replication status, recovery points, point-in-time views served as read-only NBD
// exports on loopback, and sparse image exports. `rebound master-target
// status|points|view|export` call it.
import { existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { callUnixJson } from '../util/unix-http.js';
import { exportImage } from './export-image.js';
import type { MasterTarget } from './master-target.js';
import { resolvePoint } from './point-spec.js';
import { describeThinning, thinPoints } from './point-thinning.js';
import type { Replica } from './replica.js';
import { statusJson } from './replication-status.js';
import { openViewServer, ViewRefused, type ViewServer } from './view-server.js';

export function mtSocketPath(dataDir: string): string {
  return join(dataDir, 'mt.sock');
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startMtControlServer(
  mt: MasterTarget,
  dataDir: string,
  logger: Logger,
): Promise<Server> {
  const path = mtSocketPath(dataDir);
  if (existsSync(path)) unlinkSync(path);
  const views = new Map<number, ViewServer>();
  let nextView = 1;

  const machine = (id: string | null) => {
    if (!id) throw new HttpError(400, 'query parameter machine is required');
    const replica = mt.replica(id);
    const disks = mt.disks(id);
    if (!replica || !disks) throw new HttpError(404, `no machine '${id}' has streamed to this master target`);
    return { replica, disks };
  };
  const pointOf = (spec: string | null, replica: Parameters<typeof resolvePoint>[1]) => {
    try {
      return resolvePoint(spec ?? 'latest', replica);
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
  };
  // Damage in the journal refuses an export before anything is written (never wrong bytes).
  const checkPoint = async (replica: Replica, point: number) => {
    try {
      await replica.checkPoint(point);
    } catch (e) {
      throw new HttpError(422, (e as Error).message);
    }
  };

  const server = createServer(async (req, res) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    try {
      const url = new URL(req.url ?? '/', 'http://mt');
      const q = url.searchParams;
      if (req.method === 'GET' && url.pathname === '/status') {
        const id = q.get('machine');
        if (id !== null) machine(id);
        return send(200, { machines: mt.status(id ?? undefined).map(statusJson) });
      }
      if (req.method === 'GET' && url.pathname === '/points') {
        const machineId = q.get('machine');
        const { replica } = machine(machineId);
        const all = replica.recoveryPoints();
        const everything = q.get('all') === '1' || q.get('all') === 'true';
        const listed = everything ? all : thinPoints(all, Date.now());
        const oldestTime = replica.oldestPointTime;
        return send(200, {
          appliedThrough: replica.appliedThrough,
          oldestPoint: replica.oldestPoint,
          oldestTime: oldestTime === undefined ? null : new Date(oldestTime).toISOString(),
          retentionHours: mt.retentionWindowMs / 3_600_000,
          total: all.length,
          thinned: listed.length < all.length ? describeThinning() : null,
          problems: mt.replicaHealthProblems(machineId!),
          points: listed.map((p) => ({ ...p, time: new Date(p.time).toISOString() })),
        });
      }
      if (req.method === 'POST' && url.pathname === '/views') {
        const machineId = q.get('machine')!;
        const { replica } = machine(machineId);
        const point = pointOf(q.get('point'), replica);
        const writable = q.get('writable') === '1';
        const id = nextView++;
        const v = await openViewServer(mt, machineId, point, {
          writable,
          listen: { host: '127.0.0.1', port: 0 },
          scratchDir: join(dataDir, 'scratch'),
          logger,
          onClosedByRetention: (reason) => {
            views.delete(id);
            logger.warn({ view: id, machineId, point, reason }, `view ${id} closed`);
          },
        }).catch((e) => {
          throw e instanceof ViewRefused ? new HttpError(e.status, e.message) : e;
        });
        views.set(id, v);
        return send(201, { id, point, url: v.url, writable, exports: v.exports });
      }
      const closeMatch = /^\/views\/(\d+)$/.exec(url.pathname);
      if (req.method === 'DELETE' && closeMatch) {
        const v = views.get(Number(closeMatch[1]));
        if (!v) throw new HttpError(404, `no open view ${closeMatch[1]}`);
        views.delete(Number(closeMatch[1]));
        await v.close();
        return send(200, { closed: Number(closeMatch[1]) });
      }
      if (req.method === 'GET' && url.pathname === '/views') {
        return send(200, {
          views: [...views].map(([id, v]) => ({
            id,
            machine: v.machineId,
            point: v.point,
            url: v.url,
            writable: v.writable,
          })),
        });
      }
      // Failover, its commit (release) and adopt: what the configuration server's jobs ask of a remote master target.
      if (req.method === 'POST' && url.pathname === '/failover') {
        const machineId = q.get('machine');
        if (!machineId) throw new HttpError(400, 'query parameter machine is required');
        const done = mt.failoverResult(machineId);
        if (done) return send(200, done);
        const spec = q.get('point') ?? 'latest';
        let point: number | 'latest' = 'latest';
        if (spec !== 'latest') point = pointOf(spec, machine(machineId).replica);
        const r = await mt
          .failover(machineId, point, { moveTo: q.get('moveTo') ?? undefined })
          .catch((e: Error) => {
            throw new HttpError(409, e.message);
          });
        return send(200, r);
      }
      if (req.method === 'POST' && url.pathname === '/release') {
        const machineId = q.get('machine');
        if (!machineId) throw new HttpError(400, 'query parameter machine is required');
        const r = await mt.release(machineId).catch((e: Error) => {
          throw new HttpError(409, e.message);
        });
        return send(200, r);
      }
      if (req.method === 'POST' && url.pathname === '/adopt') {
        const machineId = q.get('machine');
        if (!machineId) throw new HttpError(400, 'query parameter machine is required');
        let disks: Parameters<MasterTarget['adopt']>[1];
        try {
          disks = JSON.parse(q.get('disks') ?? '');
        } catch {
          throw new HttpError(400, 'query parameter disks must be a JSON list of {id, name, size, path}');
        }
        await mt.adopt(machineId, disks).catch((e: Error) => {
          throw new HttpError(409, e.message);
        });
        return send(201, { machine: machineId, disks });
      }
      if (req.method === 'POST' && url.pathname === '/exports') {
        const machineId = q.get('machine')!;
        const { replica, disks } = machine(machineId);
        const point = pointOf(q.get('point'), replica);
        const name = q.get('disk') ?? disks[0]!.name;
        const disk = disks.find((d) => d.name === name);
        if (!disk)
          throw new HttpError(
            404,
            `machine '${machineId}' has no disk '${name}' (disks: ${disks.map((d) => d.name).join(', ')})`,
          );
        const out = q.get('out');
        if (!out) throw new HttpError(400, 'query parameter out is required');
        await checkPoint(replica, point);
        const view = replica.openView(point);
        try {
          const r = await exportImage(view, disk.id, disk.size, out);
          return send(201, { point, disk: name, out, ...r });
        } finally {
          view.close();
        }
      }
      throw new HttpError(404, `no such endpoint: ${req.method} ${url.pathname}`);
    } catch (e) {
      send(e instanceof HttpError ? e.status : 500, { error: (e as Error).message });
    }
  });
  server.on('close', () => {
    for (const v of views.values()) void v.close();
  });
  await new Promise<void>((r) => server.listen(path, r));
  return server;
}

export function callMasterTarget(dataDir: string, method: string, path: string) {
  return callUnixJson(mtSocketPath(dataDir), method, path, 'master target');
}
