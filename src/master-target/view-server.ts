// A recovery point served over NBD: one export per disk of the machine, read-only, or
// copy-on-write for a test failover (writes go to scratch files deleted at close; the
// replica, its journal and replication are untouched). Used by the master target's
// control socket and by the configuration server's built-in master target.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { NbdServer } from '../nbd/server.js';
import { CowExport } from './cow-export.js';
import type { MasterTarget } from './master-target.js';
import type { PointView } from './point-view.js';
import { ViewExport } from './view-export.js';

/** A refusal with the HTTP status that fits it (404 unknown machine, 422 unusable point). */
export class ViewRefused extends Error {
  constructor(
    readonly status: 404 | 422,
    message: string,
  ) {
    super(message);
  }
}

export interface ViewServerOptions {
  /** Copy-on-write exports (a test failover can boot and write). */
  writable: boolean;
  /** Loopback TCP (port 0 = any) or a Unix socket. */
  listen: { host: '127.0.0.1'; port: number } | { socket: string };
  /** Where writable views keep their scratch files (one per disk, deleted at close). */
  scratchDir: string;
  logger: Logger;
  /** Retention closed the view (held too long): the server is already closed. */
  onClosedByRetention?: (reason: string) => void;
}

export interface ViewServer {
  machineId: string;
  point: number;
  writable: boolean;
  /** nbd://127.0.0.1:PORT or nbd+unix:///?socket=PATH; add /NAME for one export. */
  url: string;
  /** Export names: the machine's disk names. */
  exports: string[];
  close(): Promise<void>;
}

let nextScratch = 1;

export async function openViewServer(
  mt: MasterTarget,
  machineId: string,
  point: number,
  opts: ViewServerOptions,
): Promise<ViewServer> {
  const replica = mt.replica(machineId);
  const disks = mt.disks(machineId);
  if (!replica || !disks)
    throw new ViewRefused(404, `no machine '${machineId}' has streamed to this master target`);
  // Damage in the journal refuses the view before anything is served (never wrong bytes).
  try {
    await replica.checkPoint(point);
  } catch (e) {
    throw new ViewRefused(422, (e as Error).message);
  }
  const scratchId = nextScratch++;
  const exports: (ViewExport | CowExport)[] = [];
  const pointViews: PointView[] = [];
  try {
    for (const d of disks) {
      const view = replica.openView(point);
      pointViews.push(view);
      const ro = await ViewExport.open({
        name: d.name,
        replica,
        view,
        disk: d.id,
        replicaPath: mt.diskPath(machineId, d.id),
        description: `${machineId} disk ${d.name} at point ${point}`,
      });
      if (!opts.writable) exports.push(ro);
      else {
        mkdirSync(opts.scratchDir, { recursive: true });
        const scratch = join(opts.scratchDir, `view-${process.pid}-${scratchId}-disk-${d.id}.img`);
        exports.push(
          await CowExport.open(ro, scratch).catch(async (e) => {
            await ro.close();
            throw e;
          }),
        );
      }
    }
  } catch (e) {
    for (const x of exports) await x.close();
    for (const pv of pointViews) pv.close();
    throw e;
  }
  const nbd = new NbdServer(
    {
      get: (n) => exports.find((x) => x.name === n) ?? (n === '' ? exports[0] : undefined),
      list: () => exports,
    },
    opts.logger,
  );
  let url: string;
  try {
    if ('socket' in opts.listen) {
      await nbd.listenUnix(opts.listen.socket);
      url = `nbd+unix:///?socket=${opts.listen.socket}`;
    } else {
      if (opts.listen.host !== '127.0.0.1') throw new Error('views are served on 127.0.0.1 only');
      const addr = await nbd.listenTcp('127.0.0.1', opts.listen.port);
      url = `nbd://127.0.0.1:${addr.port}`;
    }
  } catch (e) {
    await nbd.close();
    for (const x of exports) await x.close();
    throw e;
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await nbd.close();
    for (const x of exports) await x.close();
  };
  // Retention may close a view held too long: its NBD server goes with it.
  for (const pv of pointViews) {
    pv.onClose((reason) => {
      if (reason === undefined || closed) return;
      void close();
      opts.onClosedByRetention?.(reason);
    });
  }
  return {
    machineId,
    point,
    writable: opts.writable,
    url,
    exports: exports.map((x) => x.name),
    close,
  };
}
