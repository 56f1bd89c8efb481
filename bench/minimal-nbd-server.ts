// The bench's fourth server (`--floor`): the least a Node.js NBD server can do per request.
// Handshake (fixed newstyle, GO / INFO / EXPORT_NAME), then simple replies only: a
// synchronous pread or pwrite on the event loop and one socket write per request; no
// capture, no locks, no buffer pools, no structured replies. It parses and encodes with
// Rebound's own NBD codecs (src/nbd/option-codec.ts, transmission-codec.ts); a malformed
// header closes the connection, and nothing else is checked (bench use only, on loopback). What it reaches on a workload is about the
// most a server whose data path runs on a JavaScript event loop can reach on this machine:
// every real server does at least this much per request (see bench/RESULTS.md).
//   node dist/bench/minimal-nbd-server.js IMAGE   → prints "floor ready: nbd://127.0.0.1:PORT"
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { CMD, CMD_FLAG, NBD_ERR, OPT, REP, REQUEST_HEADER_SIZE, TF } from '../src/nbd/constants.js';
import {
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoExport,
  encodeOptionReply,
  parseOptionHeader,
} from '../src/nbd/option-codec.js';
import { encodeSimpleReply, parseRequest } from '../src/nbd/transmission-codec.js';

const image = process.argv[2];
if (!image) {
  console.error('usage: minimal-nbd-server IMAGE');
  process.exit(2);
}
const fd = openSync(image, 'r+');
const size = fstatSync(fd).size;
const FLAGS =
  TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_FUA | TF.SEND_TRIM | TF.SEND_WRITE_ZEROES | TF.CAN_MULTI_CONN;

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  sock.write(encodeGreeting());
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
        const hdr = parseOptionHeader(buf);
        if (typeof hdr === 'string') {
          sock.destroy();
          return;
        }
        const { option: opt, length: len } = hdr;
        if (buf.length < 16 + len) {
          want = 16 + len;
          return;
        }
        buf = buf.subarray(16 + len);
        if (opt === OPT.EXPORT_NAME) {
          sock.write(encodeExportNameReply(size, FLAGS, true));
          stage = 'transmission';
        } else if (opt === OPT.GO || opt === OPT.INFO) {
          sock.write(encodeOptionReply(opt, REP.INFO, encodeInfoExport(size, FLAGS)));
          sock.write(encodeOptionReply(opt, REP.ACK));
          if (opt === OPT.GO) stage = 'transmission';
        } else if (opt === OPT.ABORT) {
          sock.end(encodeOptionReply(opt, REP.ACK));
          return;
        } else {
          sock.write(encodeOptionReply(opt, REP.ERR_UNSUP));
        }
      } else {
        if (buf.length < REQUEST_HEADER_SIZE) {
          want = REQUEST_HEADER_SIZE;
          return;
        }
        const req = parseRequest(buf);
        if (typeof req === 'string') {
          sock.destroy();
          return;
        }
        const { flags, type, cookie, offset, length } = req;
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
          sock.write(encodeSimpleReply(cookie, 0));
        } else if (type === CMD.READ) {
          const data = Buffer.allocUnsafe(length);
          readSync(fd, data, 0, length, offset);
          sock.write(Buffer.concat([encodeSimpleReply(cookie, 0), data]));
        } else if (type === CMD.FLUSH) {
          fdatasyncSync(fd);
          sock.write(encodeSimpleReply(cookie, 0));
        } else if (type === CMD.WRITE_ZEROES) {
          writeSync(fd, Buffer.alloc(length), 0, length, offset);
          sock.write(encodeSimpleReply(cookie, 0));
        } else if (type === CMD.TRIM) {
          sock.write(encodeSimpleReply(cookie, 0)); // advisory: the data may stay
        } else if (type === CMD.DISC) {
          sock.end();
          return;
        } else {
          sock.write(encodeSimpleReply(cookie, NBD_ERR.EINVAL));
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
