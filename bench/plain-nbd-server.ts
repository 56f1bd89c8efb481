// The bench's third server (`--plain`): Rebound's NBD server over a plain file, without
// change capture. It shows what the NBD layer alone costs on a workload, so that the
// agent's figures can be split into "NBD server in Node" and "capture".
//   node dist/bench/plain-nbd-server.js IMAGE   → prints "plain ready: nbd://127.0.0.1:PORT"
import { pino } from 'pino';
import { exportMap } from '../src/nbd/export.js';
import { NbdServer } from '../src/nbd/server.js';
import { BlockStore } from '../src/storage/block-store.js';
import { FileExport } from '../src/storage/file-export.js';

const image = process.argv[2];
if (!image) {
  console.error('usage: plain-nbd-server IMAGE');
  process.exit(2);
}
const store = await BlockStore.open(image);
const server = new NbdServer(exportMap([new FileExport('disk0', store, false)]), pino({ level: 'warn' }));
const { port } = await server.listenTcp('127.0.0.1', 0);
console.log(`plain ready: nbd://127.0.0.1:${port}`);
const stop = async () => {
  await store.sync();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
