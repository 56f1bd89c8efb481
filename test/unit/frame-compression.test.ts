// lz4 on the wire: the compressed payload form and the decoder's checks (flag, CRC before
// decompression, corrupt block, size bound), the per-stream policy, and the pipeline that
// compresses in parallel but sends in order.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { headroom } from '../../src/util/headroom.js';
import { CompressionPolicy, parseCompressMode } from '../../src/wire/compression-policy.js';
import { compressInWorker } from '../../src/wire/compression-pool.js';
import {
  type ChangePayload,
  decodeChange,
  encodeChange,
  encodeFrame,
  FRAME_FLAG_LZ4,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_FRAME_PAYLOAD,
} from '../../src/wire/frame.js';
import { FramePipeline } from '../../src/wire/frame-pipeline.js';
import { lz4DecompressPayload, lz4Encode } from '../../src/wire/lz4-payload.js';

/** Text-like data: lz4 takes it to well under half. */
function compressible(bytes: number, seed = 1): Buffer {
  const words = ['alpha ', 'bravo ', 'charlie ', 'delta ', 'echo ', 'foxtrot ', 'golf ', 'hotel '];
  const b = Buffer.alloc(bytes);
  let at = 0;
  let x = seed;
  while (at < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    at += b.write(words[x % words.length]!, at);
  }
  return b;
}

function change(seq: number, data: Buffer): Buffer {
  const c: ChangePayload = {
    seq,
    time: 1_700_000_000_000 + seq,
    offset: seq * 65536,
    length: data.length,
    disk: 1,
    kind: 'write',
    flags: 0,
    data,
  };
  return encodeChange(c);
}

/** A frame with this wire payload and flags, its CRC made valid (as a malicious sender would). */
function rawFrame(type: number, flags: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(16 + payload.length);
  b.writeUInt32BE(0x52425746, 0);
  b.writeUInt8(1, 4);
  b.writeUInt8(type, 5);
  b.writeUInt16BE(flags, 6);
  b.writeUInt32BE(payload.length, 8);
  payload.copy(b, 16);
  b.writeUInt32BE(crc32c(payload, crc32c(b.subarray(0, 12))), 12);
  return b;
}

function decodeAll(bytes: Buffer, decoder = new FrameDecoder()): Frame[] {
  const frames = decoder.push(bytes);
  decoder.end();
  return frames;
}

describe('lz4 frame payloads', () => {
  test('a compressed change round-trips: flag kept, payload decompressed after the CRC check', async () => {
    const payload = change(7, compressible(256 * 1024));
    const wire = lz4Encode(payload);
    assert.ok(wire.length < payload.length / 2, `compressed to ${wire.length} of ${payload.length}`);
    assert.equal(wire.readUInt32LE(0), payload.length, 'the uncompressed length leads, little-endian');
    const frame = encodeFrame(FrameType.Change, wire, FRAME_FLAG_LZ4);
    assert.equal(frame.readUInt16BE(6), 0x0001);
    assert.equal(frame.readUInt32BE(8), wire.length, 'the header length is the bytes on the wire');
    const [f] = decodeAll(frame);
    assert.equal(f!.flags, FRAME_FLAG_LZ4);
    assert.ok(f!.payload.equals(payload));
    assert.equal(decodeChange(f!.payload).seq, 7);
    // Byte by byte, mixed with an uncompressed frame, the same frames come out.
    const plain = encodeFrame(FrameType.Change, change(8, Buffer.alloc(100, 8)));
    const both = Buffer.concat([frame, plain]);
    const d = new FrameDecoder();
    const got: Frame[] = [];
    for (let i = 0; i < both.length; i++) got.push(...d.push(both.subarray(i, i + 1)));
    d.end();
    assert.deepEqual(
      got.map((g) => [g.flags, decodeChange(g.payload).seq]),
      [
        [1, 7],
        [0, 8],
      ],
    );
    assert.ok(got[0]!.payload.equals(payload));
  });

  test('an empty payload has an lz4 form too', () => {
    const wire = Buffer.from([0, 0, 0, 0, 0]); // length 0, then the empty block (one zero token)
    const [f] = decodeAll(encodeFrame(FrameType.Heartbeat, wire, FRAME_FLAG_LZ4));
    assert.equal(f!.payload.length, 0);
    assert.throws(() => decodeAll(encodeFrame(FrameType.Heartbeat, wire.subarray(0, 4), FRAME_FLAG_LZ4)), {
      message: 'lz4 payload is corrupt: the block is empty (type 6, length 4)',
    });
  });

  test('a flipped bit in a compressed frame is a CRC mismatch, found before any decompression', async () => {
    const wire = lz4Encode(change(1, compressible(8192)));
    const frame = encodeFrame(FrameType.Change, wire, FRAME_FLAG_LZ4);
    frame[16 + 2] ^= 0x10; // the length prefix: decompressing first would report something else
    assert.throws(() => decodeAll(frame), {
      name: 'FrameError',
      message: `frame CRC mismatch (type 2, length ${wire.length})`,
    });
  });

  test('a corrupt block with a valid CRC is named, and the decoder stays failed', async () => {
    const wire = Buffer.from(lz4Encode(change(1, compressible(8192))));
    wire.fill(0xff, 8, 24); // garbage inside the block
    const d = new FrameDecoder();
    assert.throws(() => d.push(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, wire)), {
      name: 'FrameError',
      message: new RegExp(`^lz4 payload is corrupt: .+ \\(type 2, length ${wire.length}\\)$`),
    });
    assert.throws(() => d.push(encodeFrame(FrameType.Ack, Buffer.alloc(8))), /lz4 payload is corrupt/);
    const cut = lz4Encode(compressible(8192)).subarray(0, 40);
    assert.throws(
      () => decodeAll(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, cut)),
      /^FrameError: lz4 payload/,
    );
  });

  test('a stated length over the maximum is refused before anything is allocated', () => {
    const bomb = Buffer.alloc(12);
    bomb.writeUInt32LE(0xffffffff, 0); // 4 GiB claimed by a 12-byte frame
    assert.throws(() => decodeAll(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, bomb)), {
      name: 'FrameError',
      message: `lz4 payload claims 4294967295 uncompressed bytes, more than the maximum ${MAX_FRAME_PAYLOAD} (type 2, length 12)`,
    });
    // The decoder's own maximum bounds the decompressed payload, as it bounds a plain one.
    const small = new FrameDecoder(1024);
    const wire = lz4Encode(Buffer.alloc(2048, 1));
    assert.throws(() => decodeAll(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, wire), small), {
      message: `lz4 payload claims 2048 uncompressed bytes, more than the maximum 1024 (type 2, length ${wire.length})`,
    });
  });

  test('a stated length that the block does not fill, or a prefix too short, is named', async () => {
    const wire = Buffer.from(lz4Encode(Buffer.alloc(5000, 3)));
    wire.writeUInt32LE(6000, 0);
    assert.throws(() => decodeAll(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, wire)), {
      message: `lz4 payload decompressed to 5000 bytes, not the 6000 it claims (type 2, length ${wire.length})`,
    });
    wire.writeUInt32LE(4000, 0);
    assert.throws(
      () => decodeAll(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, wire)),
      /lz4 payload is corrupt/,
    );
    assert.throws(() => decodeAll(rawFrame(FrameType.Change, FRAME_FLAG_LZ4, Buffer.alloc(3))), {
      message: 'lz4 payload is 3 bytes: too short for its uncompressed length (type 2, length 3)',
    });
    assert.throws(() => lz4DecompressPayload(Buffer.alloc(2), 10), /too short/);
  });

  test('flag bits other than bit 0 stay unknown', () => {
    assert.throws(() => decodeAll(rawFrame(FrameType.Change, 0x0003, Buffer.alloc(8))), {
      message: 'unknown frame flags 0x0003 (type 2)',
    });
    assert.throws(() => encodeFrame(FrameType.Change, Buffer.alloc(8), 0x0002), {
      message: 'unknown frame flags 0x0002',
    });
  });
});

describe('compression policy', () => {
  test('modes parse, naming a bad one', () => {
    assert.equal(parseCompressMode('auto'), 'auto');
    assert.equal(parseCompressMode('off'), 'off');
    assert.throws(() => parseCompressMode('fast'), { message: "--compress 'fast' is not one of auto, off" });
  });

  test('off never tries; tiny payloads are never tried', () => {
    assert.equal(new CompressionPolicy({ mode: 'off' }).decide(1 << 20), 'off');
    const p = new CompressionPolicy({ mode: 'auto' });
    assert.equal(p.decide(1023), 'small');
    assert.equal(p.decide(1024), 'try');
  });

  test('incompressible data is probed one time in 16; compressible data brings every try back', () => {
    const p = new CompressionPolicy({ mode: 'auto' });
    assert.equal(p.record(65536, 65800), false, 'a result that does not pay is sent uncompressed');
    assert.equal(p.pays, false);
    const decisions = Array.from({ length: 32 }, () => p.decide(65536));
    assert.equal(decisions.filter((d) => d === 'try').length, 2);
    assert.equal(decisions.filter((d) => d === 'poor').length, 30);
    assert.equal(p.record(65536, 9000), true);
    assert.equal(p.record(65536, 9000), true);
    assert.ok(p.pays, `ratio ${p.ratio}`);
    assert.equal(p.decide(65536), 'try');
  });
});

describe('frame pipeline', () => {
  const payloads = () => [
    change(1, compressible(64 * 1024, 1)),
    change(2, randomBytes(64 * 1024)),
    change(3, Buffer.alloc(200, 3)), // small
    change(4, compressible(1024 * 1024, 4)),
    change(5, compressible(4096, 5)),
  ];

  async function run(
    mode: 'auto' | 'off',
    send: (f: Buffer) => Promise<void>,
    o: ConstructorParameters<typeof FramePipeline>[3] = {},
  ) {
    // Pushed payloads may move to a worker thread (detached here): compare with copies.
    const ps = payloads();
    const copies = ps.map((b) => Buffer.from(b));
    const p = new FramePipeline(send, new CompressionPolicy({ mode }), undefined, o);
    const sent: number[] = [];
    for (const [i, payload] of ps.entries()) await p.push(FrameType.Change, payload, () => sent.push(i + 1));
    await p.idle();
    return { p, ps: copies, sent };
  }

  test('frames leave in push order, compressible ones compressed; stats count the wire bytes', async () => {
    const wire: Buffer[] = [];
    // A slow socket: compression of later frames finishes while earlier ones are still sending.
    const { p, ps, sent } = await run('auto', async (f) => {
      wire.push(f);
      await new Promise((r) => setTimeout(r, 5));
    });
    assert.deepEqual(sent, [1, 2, 3, 4, 5]);
    const frames = decodeAll(Buffer.concat(wire));
    assert.deepEqual(
      frames.map((f) => decodeChange(f.payload).seq),
      [1, 2, 3, 4, 5],
    );
    for (const [i, f] of frames.entries()) assert.ok(f.payload.equals(ps[i]!), `frame ${i + 1} round-trips`);
    assert.deepEqual(
      frames.map((f) => f.flags),
      [1, 0, 0, 1, 1],
    );
    const s = p.stats;
    assert.equal(s.frames, 5);
    assert.equal(s.compressed, 3);
    assert.equal(s.skippedSmall, 1);
    assert.equal(s.notPaid, 1, 'the random payload was tried (first after a good one) and sent as it was');
    assert.equal(
      s.payloadBytes,
      ps.reduce((a, b) => a + b.length, 0),
    );
    assert.equal(
      s.wireBytes,
      wire.reduce((a, b) => a + b.length - 16, 0),
    );
    assert.ok(s.wireBytes < s.payloadBytes / 2);
  });

  test('a change payload goes to a worker and back without a copy, and is still framed in place', async () => {
    const data = randomBytes(256 * 1024);
    const payload = change(7, data);
    const copy = Buffer.from(payload);
    assert.equal(headroom(payload), 16);
    const r = await compressInWorker([payload], 0.9);
    assert.equal(payload.length, 0, 'moved to the worker, not copied');
    assert.equal(r.wire[0], null, 'random data does not pay');
    const back = r.payloads[0]!;
    assert.ok(back.equals(copy));
    assert.equal(headroom(back), 16);
    const frame = encodeFrame(FrameType.Change, back);
    assert.equal(frame.buffer, back.buffer, 'framed in its own header room');
    assert.ok(decodeAll(frame)[0]!.payload.equals(copy));
  });

  test('off sends every payload as it is', async () => {
    const wire: Buffer[] = [];
    const { p } = await run('off', async (f) => {
      wire.push(f);
    });
    assert.ok(decodeAll(Buffer.concat(wire)).every((f) => f.flags === 0));
    assert.equal(p.stats.compressed, 0);
  });

  test('when compression is behind, payloads go uncompressed rather than wait for it', async () => {
    const wire: Buffer[] = [];
    const { p } = await run('auto', async (f) => void wire.push(f), { maxBacklogBytes: 1 });
    // The first compressible payload is tried; while it compresses, the others skip the queue for lz4.
    assert.equal(p.stats.compressed, 1);
    assert.ok(p.stats.skippedBusy >= 2, `skippedBusy ${p.stats.skippedBusy}`);
    assert.deepEqual(
      decodeAll(Buffer.concat(wire)).map((f) => decodeChange(f.payload).seq),
      [1, 2, 3, 4, 5],
    );
  });

  test('a failed send stops the pipeline and the next push throws it', async () => {
    const p = new FramePipeline(
      async () => {
        throw new Error('wire connection 1 is closed');
      },
      new CompressionPolicy({ mode: 'auto' }),
    );
    await p.push(FrameType.Change, change(1, Buffer.alloc(100)));
    await p.idle();
    await assert.rejects(p.push(FrameType.Change, change(2, Buffer.alloc(100))), {
      message: 'wire connection 1 is closed',
    });
  });

  test('a frame counts as sent when it is in the socket, before the socket drains', async () => {
    // The receiver may acknowledge a frame before the drain event: the sender must know it sent it.
    let sent = 0;
    const p = new FramePipeline(
      () => new Promise<void>(() => undefined),
      new CompressionPolicy({ mode: 'off' }),
    );
    await p.push(FrameType.Change, change(1, Buffer.alloc(10)), () => sent++);
    await new Promise((r) => setImmediate(r));
    assert.equal(sent, 1);
    p.close();
  });

  test('push waits while the pipeline holds its maximum', async () => {
    let release: (() => void) | undefined;
    const sent: number[] = [];
    const p = new FramePipeline(
      async (f) => {
        sent.push(decodeChange(decodeAll(f)[0]!.payload).seq);
        await new Promise<void>((r) => (release = r));
      },
      new CompressionPolicy({ mode: 'off' }),
      undefined,
      { maxFrames: 2 },
    );
    await p.push(FrameType.Change, change(1, Buffer.alloc(10)));
    await p.push(FrameType.Change, change(2, Buffer.alloc(10)));
    let third = false;
    const pushing = p.push(FrameType.Change, change(3, Buffer.alloc(10))).then(() => (third = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(third, false, 'the third push waits for room');
    release!();
    await pushing;
    assert.equal(third, true);
    p.close();
    release!();
  });
});
