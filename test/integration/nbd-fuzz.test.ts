// Fuzzes the NBD server of a real capture agent with at least 10,000 random and
// mutated inputs: (a) random bytes as the start of a connection, (b) a valid
// handshake prefix followed by mutated options, (c) a completed handshake
// followed by mutated transmission requests. Every connection must end, every
// well-framed input must get exactly one reply, the server must close
// connections on malformed input (with a logged reason), and afterwards a clean
// connection opened before the fuzzing, a fresh client, nbdinfo and qemu-io must
// all still work. Alongside, four child-process clients flood requests without
// ever reading a reply; the server must apply back-pressure (process RSS stays
// below 512 MiB, other connections keep being served). The seed is printed;
// rerun with NBD_FUZZ_SEED=<seed> to reproduce a failure.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import {
  CMD,
  CMD_FLAG,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  IHAVEOPT,
  INFO,
  MAX_OPTION_LENGTH,
  MAX_PAYLOAD,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_MAGIC,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from '../../src/nbd/constants.js';
import { exportMap } from '../../src/nbd/export.js';
import { NbdServer } from '../../src/nbd/server.js';
import { TestNbdClient } from '../support/nbd-client.js';
import { scratchDir, sparseImage } from '../support/tmp.js';

const execFileP = promisify(execFile);

const MiB = 1024 * 1024;
const DISK_SIZE = 16 * MiB;
const SIZE = BigInt(DISK_SIZE);
/** Fuzzed writes, trims and zeroes stay below this; the rest belongs to the clean clients. */
const FUZZ_LIMIT = 12 * MiB;
const WITNESS_OFFSET = 14 * MiB;
const CLEAN_OFFSET = 13 * MiB;
const TARGET_INPUTS = 20_000;
const CONCURRENCY = 12;
/** Longest we wait for any single expected reply or close; longer means the server hangs. */
const IO_TIMEOUT = 10_000;
const MAX_WRITE_PAYLOAD = 256 * 1024;
const RSS_LIMIT = 512 * MiB;
const ERR_BIT = 2 ** 31;

// ---- seeded PRNG ------------------------------------------------------------

class Rng {
  constructor(private s: number) {}
  /** mulberry32 */
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

function connRng(seed: number, index: number): Rng {
  const r = new Rng((seed ^ Math.imul(index + 1, 0x9e3779b9)) | 0);
  r.u32();
  return r;
}

/** A pool of random bytes that write payloads are cut from (generating each one would be slow). */
let payloadPool: Buffer = Buffer.alloc(0);
function payload(rng: Rng, n: number): Buffer {
  if (n <= payloadPool.length / 2) {
    const at = rng.int(payloadPool.length - n);
    return Buffer.from(payloadPool.subarray(at, at + n));
  }
  return rng.bytes(n);
}

// ---- a raw client socket ----------------------------------------------------

class HangError extends Error {}

class RawConn {
  private readonly q = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer | undefined) => void } | undefined;
  closed = false;
  readonly whenClosed: Promise<void>;

  private constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.q.push(d);
      this.pump();
    });
    sock.on('error', () => undefined); // EPIPE / ECONNRESET are expected when the server closes first
    this.whenClosed = new Promise((resolve) =>
      sock.once('close', () => {
        this.closed = true;
        this.pump();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.off('error', reject);
        s.setNoDelay(true);
        resolve(new RawConn(s));
      });
      s.once('error', reject);
    });
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.q.length >= w.n) {
      this.waiter = undefined;
      w.resolve(this.q.take(w.n));
    } else if (this.closed) {
      this.waiter = undefined;
      w.resolve(undefined);
    }
  }

  /** Exactly n bytes, or undefined when the server closed first; throws HangError on a timeout. */
  take(n: number, what: string): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new HangError(`no ${what} within ${IO_TIMEOUT} ms`));
      }, IO_TIMEOUT);
      this.waiter = {
        n,
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
      };
      this.pump();
    });
  }

  /** Whether the connection closed within ms. */
  async closesWithin(ms: number): Promise<boolean> {
    if (this.closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<false>((r) => {
      timer = setTimeout(() => r(false), ms);
    });
    const ok = await Promise.race([this.whenClosed.then(() => true as const), t]);
    clearTimeout(timer);
    return ok;
  }

  write(b: Buffer): void {
    if (!this.closed && !this.sock.destroyed && b.length) this.sock.write(b);
  }

  /** Half-closes our side, then waits for the server to finish the connection. */
  async endAndWait(): Promise<boolean> {
    if (!this.sock.destroyed) this.sock.end();
    return this.closesWithin(IO_TIMEOUT);
  }

  destroy(): void {
    this.sock.destroy();
  }

  async greeting(): Promise<void> {
    const g = await this.take(18, 'greeting');
    if (!g) throw new Error('closed before the greeting');
    assert.equal(g.readBigUInt64BE(0), NBDMAGIC);
    assert.equal(g.readBigUInt64BE(8), IHAVEOPT);
  }
}

// ---- shared state of one fuzz run -------------------------------------------

interface Stats {
  inputs: number;
  byFamily: { a: number; b: number; c: number };
  connections: { a: number; b: number; c: number };
  /** Inputs after which the server was expected to close by itself, and did. */
  serverCloses: number;
  repliesChecked: number;
  enteredTransmissionByMutation: number;
  /** Bytes of requests sent by the flooding clients (not counted as fuzz inputs). */
  floodBytes: number;
  floodsStalled: number;
}

class Fuzz {
  readonly stats: Stats = {
    inputs: 0,
    byFamily: { a: 0, b: 0, c: 0 },
    connections: { a: 0, b: 0, c: 0 },
    serverCloses: 0,
    repliesChecked: 0,
    enteredTransmissionByMutation: 0,
    floodBytes: 0,
    floodsStalled: 0,
  };
  readonly failures: string[] = [];

  constructor(
    readonly port: number,
    readonly seed: number,
  ) {}

  fail(conn: number, msg: string): void {
    if (this.failures.length < 50) this.failures.push(`seed ${this.seed} connection ${conn}: ${msg}`);
  }

  count(family: 'a' | 'b' | 'c', n = 1): void {
    this.stats.inputs += n;
    this.stats.byFamily[family] += n;
  }

  /** Waits for a close the server must initiate on its own (we have not ended our side). */
  async expectServerClose(conn: number, c: RawConn, what: string): Promise<void> {
    if (await c.closesWithin(IO_TIMEOUT)) {
      this.stats.serverCloses++;
      return;
    }
    this.fail(conn, `server did not close the connection after ${what}`);
    c.destroy();
  }

  async expectEnd(conn: number, c: RawConn, what: string): Promise<void> {
    if (!(await c.endAndWait())) {
      this.fail(conn, `connection did not end after ${what} and our end()`);
      c.destroy();
    }
  }
}

// ---- family (a): random bytes as the first bytes of a connection -------------

async function fuzzRandomStart(f: Fuzz, i: number, rng: Rng): Promise<void> {
  const c = await RawConn.open(f.port);
  try {
    if (rng.chance(0.7)) await c.greeting();
    const n = rng.chance(0.05) ? rng.range(1, 3) : rng.chance(0.8) ? rng.range(4, 64) : rng.range(65, 4096);
    const data = rng.bytes(n);
    if (rng.chance(0.3)) {
      // in a few pieces
      let at = 0;
      while (at < n) {
        const m = rng.range(1, n - at);
        c.write(data.subarray(at, at + m));
        at += m;
      }
    } else c.write(data);
    f.count('a');
    // Client flags with unknown bits must close the connection; anything else may wait for more.
    if (n >= 4 && data.readUInt32BE(0) & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
      await f.expectServerClose(i, c, `random client flags 0x${data.readUInt32BE(0).toString(16)}`);
    } else await f.expectEnd(i, c, 'a short random start');
  } finally {
    c.destroy();
  }
}

// ---- family (b): valid handshake prefix + mutated options ---------------------

type OptExpect = 'error' | 'unsup' | 'any';

function optionHeader(option: number, length: number, magic = IHAVEOPT): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(magic, 0);
  h.writeUInt32BE(option >>> 0, 8);
  h.writeUInt32BE(length >>> 0, 12);
  return h;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

/** A random export name that does not exist ('' and 'disk0' do). */
function badName(rng: Rng): Buffer {
  const kind = rng.int(4);
  if (kind === 0) return Buffer.from(`no-such-${rng.u32()}`);
  if (kind === 1) return Buffer.concat([Buffer.from('disk0'), rng.bytes(rng.range(1, 8))]);
  if (kind === 2) return Buffer.from(`x${'\u00e9'.repeat(rng.range(0, 40))}\u0000y`); // NUL inside
  return Buffer.concat([Buffer.from('q'), rng.bytes(rng.range(0, 300))]);
}

function goData(name: Buffer, infos: number[], nameLen = name.length, count = infos.length): Buffer {
  return Buffer.concat([u32(nameLen), name, u16(count), ...infos.map((x) => u16(x))]);
}

function metaData(name: Buffer, queries: Buffer[], nameLen = name.length, count = queries.length): Buffer {
  return Buffer.concat([u32(nameLen), name, u32(count), ...queries.flatMap((q) => [u32(q.length), q])]);
}

function flipBytes(rng: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  if (out.length === 0) return out;
  const n = rng.range(1, 4);
  for (let k = 0; k < n; k++) {
    const at = rng.int(out.length);
    out[at] = rng.chance(0.5) ? out[at] ^ (1 << rng.int(8)) : rng.u32() & 0xff;
  }
  return out;
}

/** One option that the server must answer (and not close on): its bytes and the expected final reply. */
function mutatedOption(
  rng: Rng,
  st: { structured: boolean },
): { option: number; bytes: Buffer; expect: OptExpect } {
  const opt = (option: number, data: Buffer, expect: OptExpect) => ({
    option,
    bytes: Buffer.concat([optionHeader(option, data.length), data]),
    expect,
  });
  switch (rng.int(12)) {
    case 0: {
      // an unknown option code
      let code = rng.chance(0.5) ? rng.u32() : rng.range(12, 64);
      if (code <= 11) code = rng.pick([0, 4]);
      return opt(code, rng.bytes(rng.range(0, 200)), 'unsup');
    }
    case 1: {
      // any option code but EXPORT_NAME/ABORT, with random data
      const code = rng.pick([0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x80000000, 0xffffffff]);
      return opt(code, rng.bytes(rng.range(0, 64)), 'any');
    }
    case 2: {
      // NBD_OPT_GO / NBD_OPT_INFO whose name length exceeds the data
      const name = badName(rng);
      const len = rng.pick([name.length + rng.range(1, 100), 0xffffffff, rng.u32() | 0x10000, 4097]);
      return opt(rng.pick([OPT.GO, OPT.INFO]), goData(name, [], len), 'error');
    }
    case 3: {
      // GO / INFO whose information request count does not match the data
      const name = badName(rng);
      const infos = Array.from({ length: rng.range(0, 5) }, () => rng.range(0, 4));
      const count = rng.chance(0.5) ? infos.length + rng.range(1, 0xffff - infos.length) : 0;
      return opt(rng.pick([OPT.GO, OPT.INFO]), goData(name, infos, name.length, count), 'error');
    }
    case 4: {
      // GO / INFO, well formed, for an export that does not exist; random info requests
      const infos = Array.from({ length: rng.range(0, 20) }, () =>
        rng.chance(0.5) ? rng.range(0, 4) : rng.u32(),
      );
      return opt(rng.pick([OPT.GO, OPT.INFO]), goData(badName(rng), infos), 'error');
    }
    case 5: {
      // GO / INFO truncated inside its own structure (the header length matches the data)
      const full = goData(Buffer.from('disk0'), [INFO.NAME, INFO.BLOCK_SIZE]);
      const cut = rng.pick([0, 1, 3, 4, 8, 9, full.length - 1]);
      return opt(rng.pick([OPT.GO, OPT.INFO]), full.subarray(0, cut), 'error');
    }
    case 6: {
      // GO / INFO with trailing garbage after the info requests
      return opt(
        rng.pick([OPT.GO, OPT.INFO]),
        Buffer.concat([goData(Buffer.from(''), []), rng.bytes(rng.range(1, 9))]),
        'error',
      );
    }
    case 7: {
      // SET_META_CONTEXT / LIST_META_CONTEXT garbage
      return opt(
        rng.pick([OPT.SET_META_CONTEXT, OPT.LIST_META_CONTEXT]),
        rng.bytes(rng.range(0, 300)),
        'any',
      );
    }
    case 8: {
      // meta context requests with mismatched counts and lengths
      const name = rng.chance(0.5) ? Buffer.from('disk0') : Buffer.alloc(0);
      const queries = Array.from({ length: rng.range(0, 4) }, () =>
        rng.pick([Buffer.from('base:allocation'), Buffer.from('base:'), rng.bytes(rng.range(0, 40))]),
      );
      const mode = rng.int(3);
      const nameLen = mode === 0 ? name.length + rng.range(1, 5000) : name.length;
      const count =
        mode === 1
          ? queries.length + rng.range(1, 1_000_000)
          : mode === 2
            ? rng.u32() | 0x100
            : queries.length;
      return opt(
        rng.pick([OPT.SET_META_CONTEXT, OPT.LIST_META_CONTEXT]),
        metaData(name, queries, nameLen, count),
        'error',
      );
    }
    case 9: {
      // a valid meta context request with random mutations (may or may not be valid afterwards)
      const valid = metaData(Buffer.from(rng.pick(['disk0', ''])), [Buffer.from('base:allocation')]);
      return opt(rng.pick([OPT.SET_META_CONTEXT, OPT.LIST_META_CONTEXT]), flipBytes(rng, valid), 'any');
    }
    case 10: {
      // options that take no data, with data; or STRUCTURED_REPLY properly (enables meta contexts)
      if (rng.chance(0.4)) {
        st.structured = true;
        return opt(OPT.STRUCTURED_REPLY, Buffer.alloc(0), 'any');
      }
      return opt(rng.pick([OPT.LIST, OPT.STRUCTURED_REPLY]), rng.bytes(rng.range(1, 100)), 'error');
    }
    default: {
      // a GO for a non-existent export with random bytes flipped (could become valid: handled)
      const valid = goData(badName(rng), [INFO.NAME]);
      return opt(rng.pick([OPT.GO, OPT.INFO]), flipBytes(rng, valid), 'any');
    }
  }
}

type Terminal = { kind: string; bytes: Buffer; serverCloses: boolean };

/** A final input after which the connection must end. */
function terminalOption(rng: Rng): Terminal {
  switch (rng.int(8)) {
    case 0: {
      const magic = rng.chance(0.5) ? rng.u64() : IHAVEOPT ^ (1n << BigInt(rng.int(64)));
      return {
        kind: 'bad option magic',
        bytes: optionHeader(rng.u32(), rng.range(0, 100), magic),
        serverCloses: true,
      };
    }
    case 1: {
      const len = rng.pick([MAX_OPTION_LENGTH + 1, 0xffffffff, rng.range(MAX_OPTION_LENGTH + 1, 0xffffffff)]);
      const code = rng.pick([OPT.GO, OPT.SET_META_CONTEXT, OPT.EXPORT_NAME, rng.u32()]);
      return { kind: 'huge option length', bytes: optionHeader(code, len), serverCloses: true };
    }
    case 2: {
      // option length bigger than the data, then we close
      const data = rng.bytes(rng.range(0, 500));
      const h = optionHeader(
        rng.pick([OPT.GO, OPT.INFO, OPT.SET_META_CONTEXT, rng.u32()]),
        data.length + rng.range(1, 1000),
      );
      return { kind: 'truncated option data', bytes: Buffer.concat([h, data]), serverCloses: false };
    }
    case 3:
      return {
        kind: 'truncated option header',
        bytes: optionHeader(OPT.GO, 0).subarray(0, rng.range(0, 15)),
        serverCloses: false,
      };
    case 4:
      return { kind: 'abort', bytes: optionHeader(OPT.ABORT, 0), serverCloses: true };
    case 5: {
      const name = badName(rng);
      return {
        kind: 'export name unknown',
        bytes: Buffer.concat([optionHeader(OPT.EXPORT_NAME, name.length), name]),
        serverCloses: true,
      };
    }
    case 6: {
      // the header's length is shorter than the data: the rest is parsed as the next header
      const data = goData(badName(rng), [INFO.NAME]);
      const garbage = Buffer.concat([u32(rng.u32() | 1), rng.bytes(20)]); // never IHAVEOPT
      return {
        kind: 'option length shorter than data',
        bytes: Buffer.concat([optionHeader(OPT.INFO, data.length), data, garbage]),
        serverCloses: true,
      };
    }
    default:
      return { kind: 'client close', bytes: Buffer.alloc(0), serverCloses: false };
  }
}

async function fuzzHandshake(f: Fuzz, i: number, rng: Rng): Promise<void> {
  const c = await RawConn.open(f.port);
  try {
    await c.greeting();
    const variant = rng.int(10);
    if (variant === 0) {
      // client flags with unknown bits
      c.write(u32((rng.u32() | 4) & ~(rng.chance(0.5) ? 3 : 0)));
      f.count('b');
      await f.expectServerClose(i, c, 'unknown client flags');
      return;
    }
    if (variant === 1) {
      // not fixed newstyle: any option but EXPORT_NAME must close the connection
      c.write(u32(rng.pick([0, FLAG_C_NO_ZEROES])));
      const code = rng.pick([OPT.GO, OPT.LIST, OPT.INFO, OPT.STRUCTURED_REPLY, rng.u32() | 2]);
      const data = rng.bytes(rng.range(0, 50));
      c.write(Buffer.concat([optionHeader(code, data.length), data]));
      f.count('b');
      await f.expectServerClose(i, c, 'an option from a non-fixed-newstyle client');
      return;
    }
    c.write(u32(FLAG_C_FIXED_NEWSTYLE | (rng.chance(0.5) ? FLAG_C_NO_ZEROES : 0)));
    const st = { structured: false };
    const n = rng.range(1, 60);
    const sent: { option: number; expect: OptExpect }[] = [];
    const bufs: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const o = mutatedOption(rng, st);
      sent.push(o);
      bufs.push(o.bytes);
    }
    // Pipelined in random pieces, so the server sees headers and data split anywhere.
    const all = Buffer.concat(bufs);
    for (let at = 0; at < all.length; ) {
      const m = rng.chance(0.7) ? all.length - at : rng.range(1, all.length - at);
      c.write(all.subarray(at, at + m));
      at += m;
    }
    f.count('b', n);
    // Every option gets exactly one final reply (ACK or error), in order.
    let k = 0;
    let transmission = false;
    while (k < n) {
      const h = await c.take(20, `reply to option #${k}`);
      if (!h) {
        f.fail(i, `server closed after ${k} of ${n} option replies (next: option ${sent[k].option})`);
        return;
      }
      if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) {
        f.fail(i, `bad option reply magic ${h.toString('hex')}`);
        return;
      }
      const option = h.readUInt32BE(8);
      const type = h.readUInt32BE(12);
      const len = h.readUInt32BE(16);
      if (option !== sent[k].option >>> 0) {
        f.fail(i, `reply for option ${option}, expected option ${sent[k].option}`);
        return;
      }
      if (len > MAX_OPTION_LENGTH) {
        f.fail(i, `option reply of ${len} bytes`);
        return;
      }
      if (len && !(await c.take(len, 'option reply data'))) {
        f.fail(i, 'server closed inside an option reply');
        return;
      }
      if (type !== REP.ACK && type < ERR_BIT) continue; // SERVER, INFO, META_CONTEXT come before the final reply
      const e = sent[k].expect;
      if (e === 'error' && type < ERR_BIT)
        f.fail(i, `option ${option} #${k} was accepted; expected an error`);
      if (e === 'unsup' && type !== REP.ERR_UNSUP)
        f.fail(i, `option ${option} #${k}: reply 0x${type.toString(16)}, expected ERR_UNSUP`);
      f.stats.repliesChecked++;
      k++;
      if (option === OPT.GO && type === REP.ACK) {
        // A mutation happened to produce a valid GO; the rest was sent as transmission garbage.
        transmission = true;
        f.stats.enteredTransmissionByMutation++;
        break;
      }
    }
    if (transmission) {
      if (k < n) await f.expectServerClose(i, c, 'option bytes sent in the transmission phase');
      else await f.expectEnd(i, c, 'a mutated GO');
      return;
    }
    const t = terminalOption(rng);
    c.write(t.bytes);
    f.count('b');
    if (t.serverCloses) await f.expectServerClose(i, c, t.kind);
    else await f.expectEnd(i, c, t.kind);
  } finally {
    c.destroy();
  }
}

// ---- family (c): completed handshake + mutated transmission requests ---------

interface Negotiated {
  structured: boolean;
  meta: boolean;
}

async function negotiate(f: Fuzz, i: number, c: RawConn, rng: Rng): Promise<Negotiated | undefined> {
  await c.greeting();
  const noZeroes = rng.chance(0.5);
  c.write(u32(FLAG_C_FIXED_NEWSTYLE | (noZeroes ? FLAG_C_NO_ZEROES : 0)));
  if (rng.chance(0.15)) {
    // the old way in: NBD_OPT_EXPORT_NAME, no structured replies
    const name = Buffer.from(rng.pick(['', 'disk0']));
    c.write(Buffer.concat([optionHeader(OPT.EXPORT_NAME, name.length), name]));
    const r = await c.take(noZeroes ? 10 : 134, 'EXPORT_NAME reply');
    if (!r || r.readBigUInt64BE(0) !== SIZE) {
      f.fail(i, 'NBD_OPT_EXPORT_NAME failed');
      return undefined;
    }
    return { structured: false, meta: false };
  }
  const structured = rng.chance(0.6);
  const meta = structured && rng.chance(0.8);
  const opts: Buffer[] = [];
  let finals = 1;
  if (structured) {
    opts.push(optionHeader(OPT.STRUCTURED_REPLY, 0));
    finals++;
  }
  if (meta) {
    const d = metaData(Buffer.from(rng.pick(['', 'disk0'])), [Buffer.from('base:allocation')]);
    opts.push(optionHeader(OPT.SET_META_CONTEXT, d.length), d);
    finals++;
  }
  const infos = Array.from({ length: rng.range(0, 3) }, () => rng.range(0, 3));
  const go = goData(Buffer.from(rng.pick(['', 'disk0'])), infos);
  opts.push(optionHeader(OPT.GO, go.length), go);
  c.write(Buffer.concat(opts));
  for (let k = 0; k < finals; ) {
    const h = await c.take(20, 'handshake reply');
    if (!h) {
      f.fail(i, 'server closed during a valid handshake');
      return undefined;
    }
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    const body = len ? await c.take(len, 'handshake reply data') : Buffer.alloc(0);
    if (type >= ERR_BIT) {
      f.fail(i, `valid option ${h.readUInt32BE(8)} refused: 0x${type.toString(16)} ${body?.toString()}`);
      return undefined;
    }
    if (type === REP.ACK) k++;
  }
  return { structured, meta };
}

type Expect = 'ok' | 'error' | 'any';

interface Sent {
  type: number;
  offset: bigint;
  length: number;
  flags: number;
  expect: Expect;
  index: number;
}

function encodeReq(
  type: number,
  flags: number,
  cookie: bigint,
  offset: bigint,
  length: number,
  magic = REQUEST_MAGIC,
) {
  const b = Buffer.alloc(REQUEST_HEADER_SIZE);
  b.writeUInt32BE(magic >>> 0, 0);
  b.writeUInt16BE(flags & 0xffff, 4);
  b.writeUInt16BE(type & 0xffff, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(offset & 0xffffffffffffffffn, 16);
  b.writeUInt32BE(length >>> 0, 24);
  return b;
}

function decodeReq(b: Buffer) {
  return {
    magic: b.readUInt32BE(0),
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: b.readBigUInt64BE(8),
    offset: b.readBigUInt64BE(16),
    length: b.readUInt32BE(24),
  };
}

/** Flags a server must accept for each command (the negotiated ones); others may be refused. */
function allowedFlags(type: number, n: Negotiated): number {
  switch (type) {
    case CMD.READ:
      return n.structured ? CMD_FLAG.DF : 0;
    case CMD.WRITE:
    case CMD.TRIM:
      return CMD_FLAG.FUA;
    case CMD.WRITE_ZEROES:
      return CMD_FLAG.FUA | CMD_FLAG.NO_HOLE;
    case CMD.BLOCK_STATUS:
      return CMD_FLAG.REQ_ONE;
    default:
      return 0;
  }
}

function expectation(type: number, flags: number, offset: bigint, length: number, n: Negotiated): Expect {
  if (flags & ~allowedFlags(type, n)) return 'any';
  const inRange = offset + BigInt(length) <= SIZE;
  switch (type) {
    case CMD.READ:
    case CMD.WRITE:
    case CMD.TRIM:
    case CMD.WRITE_ZEROES:
      return inRange ? 'ok' : 'error';
    case CMD.CACHE:
      return 'any'; // NBD_FLAG_SEND_CACHE is not advertised
    case CMD.FLUSH:
      return offset === 0n && length === 0 ? 'ok' : 'any';
    case CMD.BLOCK_STATUS:
      if (!inRange || length === 0 || !n.meta) return 'error';
      return 'ok';
    default:
      return 'error'; // unknown commands
  }
}

/** A request header that leaves the stream in sync (non-terminal), possibly mutated. */
function mutatedRequest(rng: Rng, cookie: bigint): Buffer {
  const type = rng.pick([
    CMD.READ,
    CMD.READ,
    CMD.READ,
    CMD.WRITE,
    CMD.WRITE,
    CMD.FLUSH,
    CMD.TRIM,
    CMD.CACHE,
    CMD.WRITE_ZEROES,
    CMD.WRITE_ZEROES,
    CMD.BLOCK_STATUS,
    CMD.BLOCK_STATUS,
    -1,
  ]);
  let t = type;
  let flags = 0;
  let length: number;
  if (type === CMD.WRITE)
    length = rng.chance(0.8) ? rng.range(0, 16 * 1024) : rng.range(0, MAX_WRITE_PAYLOAD);
  else if (type === CMD.READ || type === CMD.CACHE)
    length = rng.chance(0.7) ? rng.range(0, 64 * 1024) : rng.range(0, 1 * MiB);
  else if (type === CMD.FLUSH) length = 0;
  else length = rng.range(0, rng.chance(0.5) ? 64 * 1024 : FUZZ_LIMIT);
  if (rng.chance(0.3)) length = Math.floor(length / 4096) * 4096;
  let offset = type === CMD.FLUSH ? 0n : BigInt(rng.range(0, Math.max(0, FUZZ_LIMIT - length)));
  if (rng.chance(0.3)) offset &= ~4095n;
  if (type === -1) t = rng.chance(0.5) ? rng.range(8, 64) : rng.range(8, 0xffff);
  // mutations
  if (rng.chance(0.12)) flags = rng.u32() & 0xffff;
  else if (rng.chance(0.2))
    flags = rng.pick([CMD_FLAG.FUA, CMD_FLAG.NO_HOLE, CMD_FLAG.DF, CMD_FLAG.REQ_ONE, CMD_FLAG.FAST_ZERO]);
  if (rng.chance(0.15)) {
    offset = rng.pick([
      SIZE,
      SIZE + BigInt(rng.range(0, 1 << 30)),
      SIZE - BigInt(rng.range(0, Math.max(0, length - 1))),
      rng.u64(),
      0xffffffffffffffffn,
      1n << 63n,
      (1n << 53n) + BigInt(rng.range(0, 10)),
      BigInt(Number.MAX_SAFE_INTEGER),
    ]);
  }
  if (t !== CMD.WRITE && rng.chance(0.15)) {
    length = rng.pick([0xffffffff, rng.u32(), DISK_SIZE + 1, 0x80000000, MAX_PAYLOAD + 1, DISK_SIZE, 0]);
  }
  if (t === CMD.WRITE && rng.chance(0.05)) length = 0;
  const h = encodeReq(t, flags, cookie, offset, length);
  if (rng.chance(0.05)) {
    // a bit flipped anywhere after the magic and the cookie
    const at = rng.pick([4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27]);
    h[at] ^= 1 << rng.int(8);
  }
  let d = decodeReq(h);
  if (d.type === CMD.DISC) {
    h.writeUInt16BE(CMD.READ, 6); // DISC ends the connection: only as a terminal input
    d = decodeReq(h);
  }
  if (d.type === CMD.WRITE && d.length > MAX_WRITE_PAYLOAD) {
    h.writeUInt32BE(d.length & (MAX_WRITE_PAYLOAD - 1), 24); // must send the payload; keep it small
    d = decodeReq(h);
  }
  // Keep fuzzed changes out of the region the clean clients check.
  const changes = d.type === CMD.WRITE || d.type === CMD.TRIM || d.type === CMD.WRITE_ZEROES;
  const end = d.offset + BigInt(d.length);
  if (changes && d.length > 0 && end <= SIZE && end > BigInt(FUZZ_LIMIT)) {
    const off = d.length <= FUZZ_LIMIT ? BigInt(rng.range(0, FUZZ_LIMIT - d.length)) : SIZE;
    h.writeBigUInt64BE(off, 16);
  }
  return h;
}

function terminalRequest(rng: Rng, cookie: bigint): Terminal & { thenEnd?: boolean } {
  switch (rng.int(8)) {
    case 0: {
      const magic = rng.pick([
        rng.u32(),
        REQUEST_MAGIC ^ (1 << rng.int(32)),
        SIMPLE_REPLY_MAGIC,
        STRUCTURED_REPLY_MAGIC,
        0,
        0x49484156, // "IHAV": an option sent in the transmission phase
      ]);
      const h = encodeReq(rng.int(8), 0, cookie, BigInt(rng.range(0, DISK_SIZE)), rng.range(0, 4096), magic);
      return { kind: 'bad request magic', bytes: h, serverCloses: true };
    }
    case 1: {
      const len = rng.pick([MAX_PAYLOAD + 1, 0xffffffff, rng.range(MAX_PAYLOAD + 1, 0xffffffff)]);
      const h = encodeReq(CMD.WRITE, 0, cookie, BigInt(rng.range(0, DISK_SIZE)), len);
      return {
        kind: 'huge write',
        bytes: Buffer.concat([h, rng.bytes(rng.range(0, 1000))]),
        serverCloses: true,
      };
    }
    case 2: {
      // a write with less payload than declared, then close
      const len = rng.range(1, 2 * MiB);
      const h = encodeReq(
        CMD.WRITE,
        rng.chance(0.5) ? CMD_FLAG.FUA : 0,
        cookie,
        BigInt(rng.range(0, FUZZ_LIMIT - len)),
        len,
      );
      const have = payloadPool.subarray(0, rng.range(0, Math.min(len - 1, 64 * 1024)));
      return { kind: 'short write payload', bytes: Buffer.concat([h, have]), serverCloses: false };
    }
    case 3: {
      const h = encodeReq(CMD.DISC, rng.chance(0.5) ? rng.u32() : 0, cookie, rng.u64(), rng.u32());
      return { kind: 'NBD_CMD_DISC', bytes: h, serverCloses: true };
    }
    case 4: {
      // A whole header's worth is needed before the server can judge the magic; shorter ones we close.
      const g = rng.bytes(
        rng.chance(0.8) ? rng.range(REQUEST_HEADER_SIZE, 300) : rng.range(1, REQUEST_HEADER_SIZE - 1),
      );
      if (g.length >= 4 && g.readUInt32BE(0) === REQUEST_MAGIC) g[0] ^= 1;
      return { kind: 'random bytes', bytes: g, serverCloses: g.length >= REQUEST_HEADER_SIZE };
    }
    case 5: {
      const h = encodeReq(CMD.READ, 0, cookie, 0n, 512);
      return {
        kind: 'truncated request header',
        bytes: h.subarray(0, rng.range(1, 27)),
        serverCloses: false,
      };
    }
    case 6:
      return { kind: 'abrupt reset', bytes: Buffer.alloc(0), serverCloses: false };
    default:
      return { kind: 'client close', bytes: Buffer.alloc(0), serverCloses: false };
  }
}

async function fuzzTransmission(f: Fuzz, i: number, rng: Rng): Promise<void> {
  const c = await RawConn.open(f.port);
  try {
    const neg = await negotiate(f, i, c, rng);
    if (!neg) return;
    const pending = new Map<bigint, Sent>();
    const cookies = new Set<bigint>();
    const n = rng.range(10, 200);
    const window = rng.range(1, 48);
    let done = 0;
    let broken = false;
    let wake: (() => void) | undefined;

    // The reply reader: every request must be answered exactly once with its cookie.
    const reader = (async () => {
      const bad = (msg: string) => {
        f.fail(i, msg);
        broken = true;
        c.destroy();
      };
      while (!broken) {
        const m = await c.take(4, 'reply magic');
        if (!m) return;
        const magic = m.readUInt32BE(0);
        let cookie: bigint;
        let error = 0;
        let final = true;
        if (magic === SIMPLE_REPLY_MAGIC) {
          const r = await c.take(12, 'simple reply');
          if (!r) return;
          error = r.readUInt32BE(0);
          cookie = r.readBigUInt64BE(4);
          const s = pending.get(cookie);
          if (!s) return bad(`simple reply for unknown cookie ${cookie}`);
          // With structured replies a read must not get a simple reply (a zero-length read is unspecified).
          if (s.type === CMD.READ && neg.structured && s.length)
            return bad('simple reply to a structured read');
          if (s.type === CMD.READ && error === 0 && s.length) {
            if (!(await c.take(s.length, 'read data'))) return;
          }
        } else if (magic === STRUCTURED_REPLY_MAGIC) {
          if (!neg.structured) return bad('structured reply without NBD_OPT_STRUCTURED_REPLY');
          const r = await c.take(16, 'structured reply header');
          if (!r) return;
          const flags = r.readUInt16BE(0);
          const type = r.readUInt16BE(2);
          cookie = r.readBigUInt64BE(4);
          const len = r.readUInt32BE(12);
          const s = pending.get(cookie);
          if (!s) return bad(`structured reply for unknown cookie ${cookie}`);
          if (len > MAX_PAYLOAD + 64) return bad(`structured chunk of ${len} bytes`);
          const body = len ? await c.take(len, 'structured chunk') : Buffer.alloc(0);
          if (!body) return;
          final = (flags & REPLY_FLAG_DONE) !== 0;
          if (type & 0x8000) {
            error = body.length >= 4 ? body.readUInt32BE(0) : -1;
            if (error <= 0) return bad(`error chunk without an error value (type ${type})`);
          } else if (type === REPLY_TYPE.OFFSET_DATA) {
            if (s.type !== CMD.READ) return bad(`OFFSET_DATA for command ${s.type}`);
            const off = body.readBigUInt64BE(0);
            if (off < s.offset || off + BigInt(body.length - 8) > s.offset + BigInt(s.length)) {
              return bad(
                `OFFSET_DATA [${off}, +${body.length - 8}) outside the read [${s.offset}, +${s.length})`,
              );
            }
          } else if (type === REPLY_TYPE.OFFSET_HOLE) {
            if (s.type !== CMD.READ) return bad(`OFFSET_HOLE for command ${s.type}`);
          } else if (type === REPLY_TYPE.BLOCK_STATUS) {
            if (s.type !== CMD.BLOCK_STATUS) return bad(`BLOCK_STATUS chunk for command ${s.type}`);
            const count = (body.length - 4) / 8;
            if (body.length < 12 || !Number.isInteger(count))
              return bad(`BLOCK_STATUS chunk of ${body.length} bytes`);
            let sum = 0;
            for (let k = 0; k < count; k++) {
              const l = body.readUInt32BE(4 + 8 * k);
              if (l === 0) return bad('zero-length block status extent');
              sum += l;
            }
            if (s.offset + BigInt(sum) > SIZE)
              return bad(`block status extents (${sum} bytes) run past the end`);
            if (s.flags === CMD_FLAG.REQ_ONE && count !== 1)
              return bad(`REQ_ONE answered with ${count} extents`);
          } else if (type !== REPLY_TYPE.NONE) return bad(`unknown structured reply type ${type}`);
        } else return bad(`bad reply magic 0x${magic.toString(16)}`);
        if (!final) continue;
        const s = pending.get(cookie)!;
        pending.delete(cookie);
        f.stats.repliesChecked++;
        if (s.expect === 'ok' && error !== 0) {
          f.fail(
            i,
            `request #${s.index} (cmd ${s.type} flags ${s.flags} ${s.offset}+${s.length}) failed: ${error}`,
          );
        }
        if (s.expect === 'error' && error === 0) {
          f.fail(i, `request #${s.index} (cmd ${s.type} flags ${s.flags} ${s.offset}+${s.length}) succeeded`);
        }
        done++;
        wake?.();
      }
    })().catch((e) => {
      if (e instanceof HangError) f.fail(i, `hang: ${e.message} (${pending.size} requests unanswered)`);
      else f.fail(i, `reader: ${(e as Error).stack}`);
      broken = true;
      c.destroy();
    });

    const waitFor = async (cond: () => boolean) => {
      while (!cond() && !broken && !c.closed) await new Promise<void>((r) => (wake = r));
    };
    const closedWake = c.whenClosed.then(() => wake?.());

    const newCookie = () => {
      let k = rng.u64();
      while (cookies.has(k)) k = rng.u64();
      cookies.add(k);
      return k;
    };

    let sentCount = 0;
    for (let k = 0; k < n && !broken && !c.closed; k++) {
      await waitFor(() => sentCount - done < window);
      if (broken || c.closed) break;
      const cookie = newCookie();
      const h = mutatedRequest(rng, cookie);
      const d = decodeReq(h);
      pending.set(cookie, {
        type: d.type,
        offset: d.offset,
        length: d.length,
        flags: d.flags,
        expect: expectation(d.type, d.flags, d.offset, d.length, neg),
        index: k,
      });
      c.write(d.type === CMD.WRITE ? Buffer.concat([h, payload(rng, d.length)]) : h);
      sentCount++;
      f.count('c');
    }
    const t = terminalRequest(rng, newCookie());
    if (t.kind === 'abrupt reset') {
      // with requests still in flight
      f.count('c');
      c.destroy();
      await reader;
      return;
    }
    await waitFor(() => done === sentCount);
    if (!broken && done !== sentCount) {
      f.fail(i, `connection closed with ${sentCount - done} of ${sentCount} requests unanswered`);
      return;
    }
    if (broken) return;
    c.write(t.bytes);
    f.count('c');
    if (t.serverCloses) await f.expectServerClose(i, c, t.kind);
    else await f.expectEnd(i, c, t.kind);
    await reader;
    await closedWake;
  } finally {
    c.destroy();
  }
}

// ---- floods from clients that never read their replies -------------------------

const FLOOD_BYTES = 48 * MiB;

/**
 * A client, run as a child process so that its own buffers and CPU do not mix with
 * the server's, that sends up to FLOOD_BYTES of cheap requests without ever reading
 * a reply (respecting TCP back-pressure). The server must stop reading rather than
 * queue replies or in-flight requests without bound: the memory check catches it.
 * Prints {sent, stalled}: stalled means the server stopped reading for 3 s.
 */
const FLOOD_CLIENT = `
const { connect } = await import('node:net');
const [port, kind, limit] = process.argv.slice(1);
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
const opt = (code, data) => { const h = Buffer.alloc(16); h.writeBigUInt64BE(${IHAVEOPT}n); h.writeUInt32BE(code, 8); h.writeUInt32BE(data.length, 12); return Buffer.concat([h, data]); };
const goData = (name) => Buffer.concat([u32(name.length), name, Buffer.alloc(2)]);
const s = connect(Number(port), '127.0.0.1');
s.on('error', () => {});
await new Promise((r) => s.once('connect', r));
s.pause();
let unit;
if (kind === 'options') {
  // NBD_OPT_INFO for a long unknown name (the error echoes it) and NBD_OPT_LIST: replies outweigh requests.
  s.write(u32(3));
  unit = Buffer.concat([...Array(8).fill(opt(${OPT.INFO}, goData(Buffer.alloc(4000, 0x61)))), ...Array(2048).fill(opt(${OPT.LIST}, Buffer.alloc(0)))]);
} else {
  s.write(Buffer.concat([u32(3), opt(${OPT.GO}, goData(Buffer.alloc(0)))]));
  const req = Buffer.alloc(28);
  req.writeUInt32BE(${REQUEST_MAGIC});
  req.writeUInt16BE(kind === 'read0' ? ${CMD.READ} : kind === 'flush' ? ${CMD.FLUSH} : 0x1234, 6);
  unit = Buffer.concat(Array(4096).fill(req));
}
let sent = 0;
let stalled = false;
while (sent < Number(limit) && !s.destroyed) {
  sent += unit.length;
  if (s.write(unit)) continue;
  const drained = await Promise.race([
    new Promise((r) => s.once('drain', () => r(true))),
    new Promise((r) => setTimeout(() => r(false), 3000)),
  ]);
  if (!drained) { stalled = true; break; }
}
console.log(JSON.stringify({ sent, stalled }));
s.destroy();
`;

async function flood(f: Fuzz, i: number, kind: 'options' | 'read0' | 'flush' | 'unknown'): Promise<void> {
  try {
    const { stdout } = await execFileP(
      process.execPath,
      ['--input-type=module', '-e', FLOOD_CLIENT, String(f.port), kind, String(FLOOD_BYTES)],
      { timeout: 60_000 },
    );
    const r = JSON.parse(stdout) as { sent: number; stalled: boolean };
    f.stats.floodBytes += r.sent;
    if (r.stalled) f.stats.floodsStalled++;
  } catch (e) {
    f.fail(i, `flood ${kind}: ${(e as Error).message}`);
  }
}

// ---- the test ----------------------------------------------------------------

test('NBD server survives 10,000+ random and mutated inputs and still serves clean clients', {
  timeout: 120_000,
}, async (t) => {
  const seed = process.env.NBD_FUZZ_SEED
    ? Number(process.env.NBD_FUZZ_SEED)
    : (Math.random() * 2 ** 32) >>> 0;
  const banner = `NBD fuzz seed ${seed} (rerun with NBD_FUZZ_SEED=${seed})`;
  console.log(banner);
  t.diagnostic(banner);
  payloadPool = new Rng(seed).bytes(1 * MiB);

  // Capture what the server logs: close reasons (warn) and errors.
  const reasons = new Map<string, number>();
  const nbdErrors: string[] = [];
  const sink = {
    write(line: string) {
      const o = JSON.parse(line) as { level: number; msg: string; reason?: string };
      if (o.msg === 'closing NBD connection') {
        const k = String(o.reason)
          .replace(/'[\s\S]*'/g, "'…'")
          .replace(/0x[0-9a-f]+|\d+/g, 'N');
        reasons.set(k, (reasons.get(k) ?? 0) + 1);
        if (/internal error/.test(String(o.reason))) nbdErrors.push(line);
      } else if (o.level >= 50) {
        // Any error-level log fails the test: bad input must never reach the storage as an error.
        const list = nbdErrors;
        if (list.length < 20) list.push(line);
      }
    },
  };
  const logger = pino({ level: 'warn' }, sink);

  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);

  const scratch = scratchDir('nbd-fuzz');
  const disk = sparseImage(join(scratch.dir, 'disk0.img'), DISK_SIZE);
  const agent = await Agent.open({
    dataDir: join(scratch.dir, 'agent'),
    disks: [{ name: 'disk0', path: disk }],
    logger,
    segmentBytes: 8 * MiB,
    logLimitBytes: 512 * MiB,
  });
  const server = new NbdServer(exportMap(agent.exports()), logger);
  const clients: TestNbdClient[] = [];
  let maxRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => {
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
  }, 100);
  try {
    const { port } = await server.listenTcp('127.0.0.1', 0);
    const target = { host: '127.0.0.1', port };

    // A clean connection opened before the fuzzing, idle while it runs.
    const witness = await TestNbdClient.connect(target);
    clients.push(witness);
    const witnessData = new Rng(seed ^ 0x5a5a).bytes(256 * 1024);
    await witness.write(WITNESS_OFFSET, witnessData);
    await witness.flush();

    const fuzz = new Fuzz(port, seed);
    const started = Date.now();
    let next = 0;
    const worker = async () => {
      while (fuzz.stats.inputs < TARGET_INPUTS && fuzz.failures.length < 50) {
        const i = next++;
        const rng = connRng(seed, i);
        const family = rng.chance(0.65) ? 'a' : rng.chance(0.6) ? 'b' : 'c';
        fuzz.stats.connections[family]++;
        try {
          if (family === 'a') await fuzzRandomStart(fuzz, i, rng);
          else if (family === 'b') await fuzzHandshake(fuzz, i, rng);
          else await fuzzTransmission(fuzz, i, rng);
        } catch (e) {
          fuzz.fail(i, `family ${family}: ${e instanceof HangError ? 'hang: ' : ''}${(e as Error).stack}`);
        }
      }
    };
    const floods = (['options', 'read0', 'flush', 'unknown'] as const).map((k, n) => flood(fuzz, -1 - n, k));
    await Promise.all([...Array.from({ length: CONCURRENCY }, worker), ...floods]);
    const elapsed = Date.now() - started;
    const summary = `${fuzz.stats.inputs} inputs in ${elapsed} ms over ${next} connections ${JSON.stringify(fuzz.stats)}`;
    console.log(summary);
    t.diagnostic(summary);
    t.diagnostic(`close reasons logged: ${JSON.stringify(Object.fromEntries(reasons))}`);
    t.diagnostic(`max rss during the fuzzing ${(maxRss / MiB).toFixed(0)} MiB`);

    assert.deepEqual(fuzz.failures, [], 'fuzz failures');
    assert.deepEqual(uncaught, [], 'uncaught exceptions or unhandled rejections');
    assert.deepEqual(nbdErrors, [], 'the NBD server logged errors');
    assert.ok(fuzz.stats.inputs >= 10_000, `only ${fuzz.stats.inputs} inputs`);
    for (const [fam, min] of [
      ['a', 150],
      ['b', 1000],
      ['c', 1000],
    ] as const) {
      assert.ok(fuzz.stats.byFamily[fam] >= min, `family ${fam}: only ${fuzz.stats.byFamily[fam]} inputs`);
    }
    assert.ok(fuzz.stats.serverCloses >= 100, `only ${fuzz.stats.serverCloses} server-side closes`);

    // The server logged why it closed connections on malformed input.
    const logged = [...reasons.keys()].join('\n');
    for (const re of [
      /unknown client flags/,
      /bad option magic/,
      /exceeds the limit/,
      /bad request magic/,
      /without fixed newstyle/,
    ]) {
      assert.match(logged, re, `no close reason matching ${re} was logged`);
    }

    // Every fuzz connection is gone on the server side too; only the witness remains.
    for (let k = 0; k < 100 && server.connectionCount > 1; k++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(server.connectionCount, 1, 'connections left open on the server');

    // The witness, connected throughout, still works.
    assert.equal(witness.closed, false, 'the witness connection was closed');
    assert.deepEqual(await witness.read(WITNESS_OFFSET, witnessData.length), witnessData);
    const witness2 = Buffer.alloc(64 * 1024, 0xa7);
    await witness.write(WITNESS_OFFSET + 4096, witness2, true);
    await witness.flush();
    assert.deepEqual(await witness.read(WITNESS_OFFSET + 4096, witness2.length), witness2);

    // A fresh clean client.
    const clean = await TestNbdClient.connect(target);
    clients.push(clean);
    assert.equal(clean.size, DISK_SIZE);
    const pattern = Buffer.alloc(1 * MiB);
    for (let k = 0; k < pattern.length; k += 4) pattern.writeUInt32BE((k * 2654435761) >>> 0, k);
    await clean.write(CLEAN_OFFSET, pattern);
    await clean.flush();
    assert.deepEqual(await clean.read(CLEAN_OFFSET, pattern.length), pattern);
    await clean.writeZeroes(CLEAN_OFFSET, 64 * 1024);
    await clean.trim(CLEAN_OFFSET + 64 * 1024, 64 * 1024);
    assert.deepEqual(await clean.read(CLEAN_OFFSET, 128 * 1024), Buffer.alloc(128 * 1024));
    assert.deepEqual(
      await clean.read(CLEAN_OFFSET + 128 * 1024, 4096),
      pattern.subarray(128 * 1024, 132 * 1024),
    );
    // The witness region survived the fuzzing untouched.
    assert.deepEqual(await clean.read(WITNESS_OFFSET, 4096), witnessData.subarray(0, 4096));

    // Real clients.
    const url = `nbd://127.0.0.1:${port}`;
    const info = await execFileP('nbdinfo', [url], { timeout: 30_000 });
    assert.match(info.stdout, /export-size:\s+16777216/);
    const qemu = await execFileP(
      'qemu-io',
      ['-f', 'raw', url, '-c', 'write -P 0x5a 0 64k', '-c', 'read -P 0x5a 0 64k'],
      { timeout: 30_000 },
    );
    assert.match(qemu.stdout, /wrote 65536\/65536 bytes/);
    assert.match(qemu.stdout, /read 65536\/65536 bytes/);
    assert.doesNotMatch(qemu.stdout + qemu.stderr, /Pattern verification failed|error/i);
    assert.deepEqual(await clean.read(0, 64 * 1024), Buffer.alloc(64 * 1024, 0x5a));

    await clean.disconnect();
    await witness.disconnect();

    maxRss = Math.max(maxRss, process.memoryUsage().rss);
    t.diagnostic(`max rss ${(maxRss / MiB).toFixed(0)} MiB`);
    assert.ok(maxRss < RSS_LIMIT, `rss reached ${(maxRss / MiB).toFixed(0)} MiB`);
  } finally {
    clearInterval(rssTimer);
    for (const c of clients) c.destroy();
    await server.close();
    await agent.close();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    scratch.cleanup();
  }
});
