// The bench's fourth server (`--floor`): the least a Node.js NBD server can do per request.
// Handshake (fixed newstyle, GO / INFO / EXPORT_NAME), then simple replies only: a
// synchronous pread or pwrite on the event loop and one socket write per request; no
// capture, no locks, no buffer pools, no structured replies, and no checks of what the
// client sends (bench use only, on loopback). What it reaches on a workload is about the
// most a server whose data path runs on a JavaScript event loop can reach on this machine:
// every real server does at least this much per request (see bench/RESULTS.md).
//   node dist/bench/minimal-nbd-server.js IMAGE   → prints "floor ready: nbd://127.0.0.1:PORT"
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import {
  CMD,
  CMD_FLAG,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  NBD_ERR,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_MAGIC,
  REP,
  REQUEST_HEADER_SIZE,
  SIMPLE_REPLY_MAGIC,
  TF,
} from '../src/nbd/constants.js';

const image = process.argv[2];
if (!image) {
  console.error('usage: minimal-nbd-server IMAGE');
  process.exit(2);
}
const fd = openSync(image, 'r+');
const size = BigInt(fstatSync(fd).size);
const FLAGS =
  TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_FUA | TF.SEND_TRIM | TF.SEND_WRITE_ZEROES | TF.CAN_MULTI_CONN;

function optionReply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(opt, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  return Buffer.concat([b, data]);
}

function exportInfo(): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(size, 2);
  b.writeUInt16BE(FLAGS, 10);
  return b;
}

function reply(sock: Socket, handle: Buffer, error: number, data?: Buffer): void {
  const h = Buffer.allocUnsafe(16);
  h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(error, 4);
  handle.copy(h, 8);
  sock.write(data ? Buffer.concat([h, data]) : h);
}

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  const hello = Buffer.alloc(18);
  hello.writeBigUInt64BE(NBDMAGIC, 0);
  hello.writeBigUInt64BE(IHAVEOPT, 8);
  hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  sock.write(hello);
  // Unparsed bytes: `buf`, then chunks not yet joined to it (a 1 MiB write arrives in
  // many chunks; joining each time would copy it over and over).
  let buf: Buffer = Buffer.alloc(0);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let want = 4;
  let stage: 'flags' | 'options' | 'transmission' = 'flags';
  sock.on('data', (chunk: Buffer) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (buf.length + pendingBytes < want) return;
    buf = buf.length === 0 && pending.length === 1 ? chunk : Buffer.concat([buf, ...pending]);
    pending = [];
    pendingBytes = 0;
    for (;;) {
      if (stage === 'flags') {
        buf = buf.subarray(4);
        stage = 'options';
      } else if (stage === 'options') {
        if (buf.length < 16) {
          want = 16;
          return;
        }
        const opt = buf.readUInt32BE(8);
        const len = buf.readUInt32BE(12);
        if (buf.length < 16 + len) {
          want = 16 + len;
          return;
        }
        buf = buf.subarray(16 + len);
        if (opt === OPT.EXPORT_NAME) {
          const b = Buffer.alloc(10);
          b.writeBigUInt64BE(size, 0);
          b.writeUInt16BE(FLAGS, 8);
          sock.write(b);
          stage = 'transmission';
        } else if (opt === OPT.GO || opt === OPT.INFO) {
          sock.write(Buffer.concat([optionReply(opt, REP.INFO, exportInfo()), optionReply(opt, REP.ACK)]));
          if (opt === OPT.GO) stage = 'transmission';
        } else if (opt === OPT.ABORT) {
          sock.end(optionReply(opt, REP.ACK));
          return;
        } else {
          sock.write(optionReply(opt, REP.ERR_UNSUP));
        }
      } else {
        if (buf.length < REQUEST_HEADER_SIZE) {
          want = REQUEST_HEADER_SIZE;
          return;
        }
        const flags = buf.readUInt16BE(4);
        const type = buf.readUInt16BE(6);
        const handle = buf.subarray(8, 16);
        const offset = Number(buf.readBigUInt64BE(16));
        const length = buf.readUInt32BE(24);
        const need = REQUEST_HEADER_SIZE + (type === CMD.WRITE ? length : 0);
        if (buf.length < need) {
          want = need;
          return;
        }
        const payload = buf.subarray(REQUEST_HEADER_SIZE, need);
        buf = buf.subarray(need);
        if (type === CMD.WRITE) {
          writeSync(fd, payload, 0, length, offset);
          if (flags & CMD_FLAG.FUA) fdatasyncSync(fd);
          reply(sock, handle, 0);
        } else if (type === CMD.READ) {
          const data = Buffer.allocUnsafe(length);
          readSync(fd, data, 0, length, offset);
          reply(sock, handle, 0, data);
        } else if (type === CMD.FLUSH) {
          fdatasyncSync(fd);
          reply(sock, handle, 0);
        } else if (type === CMD.WRITE_ZEROES) {
          writeSync(fd, Buffer.alloc(length), 0, length, offset);
          reply(sock, handle, 0);
        } else if (type === CMD.TRIM) {
          reply(sock, handle, 0); // advisory: the data may stay
        } else if (type === CMD.DISC) {
          sock.end();
          return;
        } else {
          reply(sock, handle, NBD_ERR.EINVAL);
        }
      }
    }
  });
  sock.on('error', () => sock.destroy());
}

const server = createServer(serve);
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  if (addr && typeof addr === 'object') console.log(`floor ready: nbd://127.0.0.1:${addr.port}`);
});
const stop = () => {
  fdatasyncSync(fd);
  closeSync(fd);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
