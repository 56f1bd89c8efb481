// Test failovers' copy-on-write views, open in this server's built-in master target: the test
// machine boots from them while replication goes on underneath. They live as long as this
// process; a server restart closes them (the test machine loses its disks: clean it up).

import { join } from 'node:path';
import type { Logger } from 'pino';
import type { MasterTarget } from '../../master-target/master-target.js';
import { openViewServer } from '../../master-target/view-server.js';

interface OpenTestView {
  id: number;
  urls: string[];
  close(): Promise<void>;
}

const open = new Map<string, OpenTestView>();
let nextId = 1;

export async function openTestView(
  itemId: string,
  mt: MasterTarget,
  machineId: string,
  point: number,
  scratchRoot: string,
  logger: Logger,
): Promise<OpenTestView> {
  const existing = open.get(itemId);
  if (existing) return existing;
  const server = await openViewServer(mt, machineId, point, {
    writable: true,
    listen: { host: '127.0.0.1', port: 0 },
    scratchDir: join(scratchRoot, itemId),
    logger,
    onClosedByRetention: () => open.delete(itemId),
  });
  const v = {
    id: nextId++,
    urls: server.exports.map((e) => `${server.url}/${e}`),
    close: () => server.close(),
  };
  open.set(itemId, v);
  return v;
}

export async function closeTestView(itemId: string): Promise<boolean> {
  const v = open.get(itemId);
  if (!v) return false;
  open.delete(itemId);
  await v.close();
  return true;
}
