// The replication wire frame codec: round trips, every named error, chunked decoding, and
// detection of a flipped bit anywhere in a frame.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import {
  type ChangePayload,
  decodeAck,
  decodeBlockHashes,
  decodeChange,
  decodeDisks as decodeDiskList,
  decodeError,
  decodeHashRequest,
  decodeHeartbeat,
  decodeHello,
  decodeMarker,
  encodeAck,
  encodeBlockHashes,
  encodeChange,
  encodeDisks as encodeDiskList,
  encodeError,
  encodeFrame,
  encodeHashRequest,
  encodeHeartbeat,
  encodeHello,
  encodeMarker,
  errorFrame,
  FRAME_HEADER_SIZE,
  FRAME_MAGIC,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  MAX_FRAME_PAYLOAD,
  WireErrorCode,
} from '../../src/wire/frame.js';

function decodeAll(bytes: Buffer, decoder = new FrameDecoder()): Frame[] {
  const frames = decoder.push(bytes);
  decoder.end();
  return frames;
}

/** A copy of a valid frame with its bytes edited (the CRC is not recomputed). */
function tampered(frame: Buffer, edit: (b: Buffer) => void): Buffer {
  const b = Buffer.from(frame);
  edit(b);
  return b;
}

const sampleChange: ChangePayload = {
  seq: 42,
  disk: 3,
  kind: 'write',
  flags: 0,
  time: 1_700_000_000_123,
  offset: 2 ** 40 + 512,
  length: 7,
  data: Buffer.from('payload'),
};

function sampleFrames(): Buffer[] {
  return [
    encodeFrame(
      FrameType.Hello,
      encodeHello({ role: 'agent', name: 'a1', machineId: 'm-1', resumeFrom: 17 }),
    ),
    encodeFrame(FrameType.Change, encodeChange(sampleChange)),
    encodeFrame(
      FrameType.Marker,
      encodeMarker({ seq: 43, kind: 'bookmark', time: 5, tag: 'before-upgrade' }),
    ),
    encodeFrame(FrameType.Ack, encodeAck({ seq: 43 })),
    encodeFrame(FrameType.Heartbeat, encodeHeartbeat({ time: 99 })),
    encodeFrame(FrameType.Error, encodeError({ code: WireErrorCode.Protocol, message: 'nope' })),
  ];
}

describe('frame codec', () => {
  test('header layout: big-endian magic, version, type, flags, length, CRC', () => {
    const f = encodeFrame(FrameType.Ack, encodeAck({ seq: 1 }));
    assert.equal(f.length, FRAME_HEADER_SIZE + 8);
    assert.equal(f.subarray(0, 4).toString('latin1'), 'RBWF');
    assert.equal(f.readUInt32BE(0), FRAME_MAGIC);
    assert.equal(f[4], 1);
    assert.equal(f[5], FrameType.Ack);
    assert.equal(f.readUInt16BE(6), 0);
    assert.equal(f.readUInt32BE(8), 8);
  });

  test('every frame type round-trips, also concatenated', () => {
    const frames = sampleFrames();
    const decoded = decodeAll(Buffer.concat(frames));
    assert.deepEqual(
      decoded.map((f) => f.type),
      [
        FrameType.Hello,
        FrameType.Change,
        FrameType.Marker,
        FrameType.Ack,
        FrameType.Heartbeat,
        FrameType.Error,
      ],
    );
    assert.deepEqual(decodeHello(decoded[0].payload), {
      role: 'agent',
      name: 'a1',
      machineId: 'm-1',
      resumeFrom: 17,
    });
    assert.deepEqual(decodeChange(decoded[1].payload), sampleChange);
    assert.deepEqual(decodeMarker(decoded[2].payload), {
      seq: 43,
      kind: 'bookmark',
      time: 5,
      tag: 'before-upgrade',
    });
    assert.deepEqual(decodeAck(decoded[3].payload), { seq: 43 });
    assert.deepEqual(decodeHeartbeat(decoded[4].payload), { time: 99 });
    assert.deepEqual(decodeError(decoded[5].payload), { code: WireErrorCode.Protocol, message: 'nope' });
  });

  test('an empty payload and a payload of exactly the maximum are accepted', () => {
    const empty = decodeAll(encodeFrame(FrameType.Heartbeat));
    assert.equal(empty[0].payload.length, 0);
    const big = Buffer.alloc(MAX_FRAME_PAYLOAD, 0xab);
    const frames = decodeAll(encodeFrame(FrameType.Change, big));
    assert.equal(frames[0].payload.length, MAX_FRAME_PAYLOAD);
    assert.ok(frames[0].payload.equals(big));
  });

  test('decoding byte by byte gives the same frames, each as soon as it is complete', () => {
    const frames = sampleFrames();
    const all = Buffer.concat(frames);
    const d = new FrameDecoder();
    const out: Frame[] = [];
    let end = 0;
    const ends = frames.map((f) => {
      end += f.length;
      return end;
    });
    for (let i = 0; i < all.length; i++) {
      const got = d.push(all.subarray(i, i + 1));
      if (ends.includes(i + 1)) assert.equal(got.length, 1, `frame ready after byte ${i + 1}`);
      else assert.equal(got.length, 0);
      out.push(...got);
    }
    d.end();
    assert.deepEqual(out, decodeAll(all));
    assert.equal(d.frames, frames.length);
    assert.equal(d.buffered, 0);
  });

  test('random chunk boundaries give the same frames', () => {
    const all = Buffer.concat([...sampleFrames(), ...sampleFrames()]);
    const expected = decodeAll(all);
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 50; round++) {
      const d = new FrameDecoder();
      const out: Frame[] = [];
      for (let at = 0; at < all.length; ) {
        const n = 1 + (rand() % 40);
        out.push(...d.push(all.subarray(at, at + n)));
        at += n;
      }
      d.end();
      assert.deepEqual(out, expected);
    }
  });

  test('bad magic is named', () => {
    const f = tampered(encodeFrame(FrameType.Ack, encodeAck({ seq: 1 })), (b) =>
      b.writeUInt32BE(0xdeadbeef, 0),
    );
    assert.throws(() => decodeAll(f), { name: 'FrameError', message: 'bad frame magic 0xdeadbeef' });
  });

  test('an unsupported version is named', () => {
    const f = tampered(encodeFrame(FrameType.Ack, encodeAck({ seq: 1 })), (b) => {
      b[4] = 2;
    });
    assert.throws(() => decodeAll(f), { message: 'unsupported frame version 2' });
  });

  test('a payload over the maximum is refused from the header alone, before it is buffered', () => {
    const header = tampered(encodeFrame(FrameType.Change).subarray(0, FRAME_HEADER_SIZE), (b) =>
      b.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 8),
    );
    const d = new FrameDecoder();
    assert.throws(() => d.push(header), {
      message: `frame payload ${MAX_FRAME_PAYLOAD + 1} exceeds the maximum ${MAX_FRAME_PAYLOAD}`,
    });
    assert.throws(() => encodeFrame(FrameType.Change, Buffer.alloc(MAX_FRAME_PAYLOAD + 1)), {
      message: `frame payload ${MAX_FRAME_PAYLOAD + 1} exceeds the maximum ${MAX_FRAME_PAYLOAD}`,
    });
    const small = new FrameDecoder(100);
    assert.throws(() => small.push(encodeFrame(FrameType.Change, Buffer.alloc(101))), {
      message: 'frame payload 101 exceeds the maximum 100',
    });
  });

  test('a CRC mismatch names the frame type and length', () => {
    const f = tampered(encodeFrame(FrameType.Ack, encodeAck({ seq: 1 })), (b) => {
      b[b.length - 1] ^= 1;
    });
    assert.throws(() => decodeAll(f), { message: 'frame CRC mismatch (type 4, length 8)' });
    const crc = tampered(encodeFrame(FrameType.Ack, encodeAck({ seq: 1 })), (b) => {
      b[12] ^= 0x80;
    });
    assert.throws(() => decodeAll(crc), { message: 'frame CRC mismatch (type 4, length 8)' });
  });

  test('an unknown type or flags with a good CRC is named', () => {
    const unknown = tampered(encodeFrame(FrameType.Ack), (b) => {
      b[5] = 99;
      b.writeUInt32BE(crc(b), 12);
    });
    assert.throws(() => decodeAll(unknown), { message: 'unknown frame type 99' });
    const flags = tampered(encodeFrame(FrameType.Ack), (b) => {
      b.writeUInt16BE(0x8000, 6);
      b.writeUInt32BE(crc(b), 12);
    });
    assert.throws(() => decodeAll(flags), { message: 'unknown frame flags 0x8000 (type 4)' });
    assert.throws(() => encodeFrame(99 as FrameType), { message: 'unknown frame type 99' });
    assert.throws(() => encodeFrame(FrameType.Ack, Buffer.alloc(0), 2), {
      message: 'unknown frame flags 0x0002',
    });
  });

  test('a stream that ends inside a frame is a truncated frame', () => {
    const f = encodeFrame(FrameType.Ack, encodeAck({ seq: 1 }));
    assert.throws(() => decodeAll(f.subarray(0, 10)), {
      message: 'truncated frame: stream ended after 10 of 16 header bytes',
    });
    assert.throws(() => decodeAll(f.subarray(0, 20)), {
      message: 'truncated frame: stream ended after 4 of 8 payload bytes (type 4)',
    });
  });

  test('after an error the decoder stays failed and returns no frame', () => {
    const good = encodeFrame(FrameType.Ack, encodeAck({ seq: 1 }));
    const bad = tampered(good, (b) => {
      b[20] ^= 4;
    });
    const d = new FrameDecoder();
    assert.equal(d.push(good).length, 1);
    assert.throws(() => d.push(bad), FrameError);
    assert.throws(() => d.push(good), { message: 'frame CRC mismatch (type 4, length 8)' });
    assert.throws(() => d.end(), { message: 'frame CRC mismatch (type 4, length 8)' });
  });

  test('a flipped bit anywhere in any frame is detected and nothing of that frame is returned', () => {
    for (const frame of sampleFrames()) {
      for (let bit = 0; bit < frame.length * 8; bit++) {
        const b = tampered(frame, (x) => {
          x[bit >> 3] ^= 1 << (bit & 7);
        });
        const d = new FrameDecoder();
        let frames: Frame[] = [];
        assert.throws(
          () => {
            frames = d.push(b);
            d.end();
          },
          FrameError,
          `bit ${bit} of a type ${frame[5]} frame`,
        );
        assert.equal(frames.length, 0, `bit ${bit}: no frame returned`);
      }
    }
  });
});

/** CRC32C over header bytes 0..11 and the payload, as the encoder computes it. */
function crc(b: Buffer): number {
  return crc32c(b.subarray(FRAME_HEADER_SIZE), crc32c(b.subarray(0, 12)));
}

describe('payload codecs', () => {
  test('hello without a machine id round-trips without one', () => {
    const h = decodeHello(encodeHello({ role: 'master-target', name: 'mt-1', resumeFrom: 0 }));
    assert.deepEqual(h, { role: 'master-target', name: 'mt-1', resumeFrom: 0 });
    assert.equal('machineId' in h, false);
  });

  test('hello errors are named', () => {
    assert.throws(() => encodeHello({ role: 'boss' as 'agent', name: 'x', resumeFrom: 0 }), {
      message: "hello role 'boss' is unknown",
    });
    const p = encodeHello({ role: 'agent', name: 'a', resumeFrom: 1 });
    const badRole = Buffer.from(p);
    badRole.write('b', 10, 'latin1'); // 'agent' -> 'bgent'
    assert.throws(() => decodeHello(badRole), {
      message:
        "hello role 'bgent' is unknown (expected agent, process-server, master-target, configuration-server)",
    });
    assert.throws(() => decodeHello(p.subarray(0, 5)), {
      message: 'hello payload is 5 bytes: too short for its resumeFrom',
    });
    assert.throws(() => decodeHello(Buffer.concat([p, Buffer.from([0])])), {
      message: 'hello payload has 1 unexpected trailing bytes',
    });
    const empty = encodeHello({ role: 'agent', name: '', resumeFrom: 1 });
    assert.throws(() => decodeHello(empty), { message: 'hello name is empty' });
    const invalid = Buffer.from(p);
    invalid[17] = 0xff; // the name's only byte
    assert.throws(() => decodeHello(invalid), { message: 'hello name is not valid UTF-8' });
    const huge = Buffer.from(p);
    huge.writeBigUInt64BE(2n ** 60n, 0);
    assert.throws(() => decodeHello(huge), { message: `hello resumeFrom ${2n ** 60n} exceeds 2^53 - 1` });
    assert.throws(() => encodeHello({ role: 'agent', name: 'x'.repeat(70000), resumeFrom: 0 }), {
      message: 'hello name is 70000 bytes, longer than 65535',
    });
  });

  test('change kinds round-trip; zero and trim carry no data', () => {
    for (const kind of ['zero', 'trim'] as const) {
      const c: ChangePayload = { ...sampleChange, kind, flags: 1, length: 1 << 30, data: Buffer.alloc(0) };
      const p = encodeChange(c);
      assert.equal(p.length, 32);
      assert.deepEqual(decodeChange(p), c);
    }
  });

  test('a change is framed in place, with the same bytes as a copied payload, once', () => {
    const data = Buffer.alloc(70_000, 9);
    const c: ChangePayload = { ...sampleChange, length: data.length, data };
    const inPlace = encodeChange(c);
    const copied = Buffer.from(inPlace);
    const f1 = encodeFrame(FrameType.Change, inPlace);
    assert.equal(f1.buffer, inPlace.buffer, 'the frame shares the payload buffer');
    assert.deepEqual(f1, encodeFrame(FrameType.Change, copied));
    // framed again: the first frame's header is not overwritten, the payload is copied
    const f2 = encodeFrame(FrameType.Ack, inPlace);
    assert.notEqual(f2.buffer, inPlace.buffer);
    const [a, b] = decodeAll(Buffer.concat([f1, f2]));
    assert.equal(a.type, FrameType.Change);
    assert.equal(b.type, FrameType.Ack);
    assert.deepEqual(decodeChange(a.payload), c);
  });

  test('change errors are named', () => {
    assert.throws(() => encodeChange({ ...sampleChange, data: Buffer.alloc(3) }), {
      message: 'write change of length 7 carries 3 data bytes',
    });
    assert.throws(() => encodeChange({ ...sampleChange, kind: 'trim' }), {
      message: 'trim change of length 7 carries 7 data bytes',
    });
    assert.throws(() => encodeChange({ ...sampleChange, disk: 70000 }), {
      message: 'change disk 70000 does not fit in u16',
    });
    assert.throws(() => encodeChange({ ...sampleChange, seq: -1 }), {
      message: 'change seq -1 is not an integer in 0..2^53-1',
    });
    assert.throws(() => encodeChange({ ...sampleChange, kind: 'erase' as 'write' }), {
      message: "change kind 'erase' is unknown",
    });
    const p = encodeChange(sampleChange);
    assert.throws(() => decodeChange(p.subarray(0, 31)), {
      message: 'change payload is 31 bytes: too short for its 32-byte header',
    });
    assert.throws(() => decodeChange(p.subarray(0, 35)), {
      message: 'write change of length 7 carries 3 data bytes (seq 42)',
    });
    const kind = Buffer.from(p);
    kind[30] = 9;
    assert.throws(() => decodeChange(kind), { message: 'change kind 9 is unknown' });
    const range = Buffer.from(p);
    range.writeBigUInt64BE(BigInt(Number.MAX_SAFE_INTEGER - 3), 16);
    assert.throws(() => decodeChange(range), {
      message: `change range ${Number.MAX_SAFE_INTEGER - 3}+7 exceeds 2^53 - 1 (seq 42)`,
    });
  });

  test('marker kinds round-trip; marker errors are named', () => {
    const flush = { seq: 1, kind: 'flush' as const, time: 2, tag: '' };
    assert.deepEqual(decodeMarker(encodeMarker(flush)), flush);
    const unicode = { seq: 2, kind: 'bookmark' as const, time: 3, tag: 'nächtlich ✓' };
    assert.deepEqual(decodeMarker(encodeMarker(unicode)), unicode);
    const p = encodeMarker(flush);
    const badKind = Buffer.from(p);
    badKind[16] = 3;
    assert.throws(() => decodeMarker(badKind), { message: 'marker kind 3 is unknown' });
    const reserved = Buffer.from(p);
    reserved[17] = 1;
    assert.throws(() => decodeMarker(reserved), { message: 'marker reserved byte is 1, not 0' });
    const tagLen = Buffer.from(p);
    tagLen.writeUInt16BE(5, 18);
    assert.throws(() => decodeMarker(tagLen), {
      message: 'marker payload is 20 bytes: too short for its tag',
    });
  });

  test('ack, heartbeat and error errors are named', () => {
    assert.throws(() => decodeAck(Buffer.alloc(7)), {
      message: 'ack payload is 7 bytes: too short for its seq',
    });
    assert.throws(() => decodeAck(Buffer.alloc(9)), {
      message: 'ack payload has 1 unexpected trailing bytes',
    });
    assert.throws(() => decodeHeartbeat(Buffer.alloc(0)), {
      message: 'heartbeat payload is 0 bytes: too short for its time',
    });
    assert.throws(() => decodeError(Buffer.alloc(1)), {
      message: 'error payload is 1 bytes: too short for its code',
    });
    assert.throws(() => encodeError({ code: 70000, message: '' }), {
      message: 'error code 70000 does not fit in u16',
    });
  });

  test('errorFrame cuts a long message without breaking UTF-8', () => {
    const [f] = decodeAll(errorFrame(WireErrorCode.Internal, 'é'.repeat(2000)));
    const e = decodeError(f.payload);
    assert.equal(e.code, WireErrorCode.Internal);
    assert.equal(e.message, 'é'.repeat(512));
  });
});

describe('disks payload', () => {
  test('round-trips ids, sizes and names', () => {
    const disks = [
      { id: 1, size: 2 ** 40, name: 'root' },
      { id: 7, size: 512, name: 'dåta' },
    ];
    assert.deepEqual(decodeDiskList(encodeDiskList(disks)), disks);
    assert.deepEqual(decodeDiskList(encodeDiskList([])), []);
  });

  test('refuses what a machine cannot have, naming it', () => {
    const twice = encodeDiskList([
      { id: 3, size: 1, name: 'a' },
      { id: 3, size: 2, name: 'b' },
    ]);
    assert.throws(() => decodeDiskList(twice), { message: 'disks: disk id 3 appears twice' });
    assert.throws(() => decodeDiskList(encodeDiskList([{ id: 0, size: 1, name: 'z' }])), {
      message: 'disks: disk 0 has id 0',
    });
    const truncated = encodeDiskList([{ id: 1, size: 1, name: 'abc' }]).subarray(0, 9);
    assert.throws(() => decodeDiskList(truncated), {
      message: 'disks payload is 9 bytes: too short for its disk 0 size',
    });
    const trailing = Buffer.concat([encodeDiskList([]), Buffer.from([0])]);
    assert.throws(() => decodeDiskList(trailing), {
      message: 'disks payload has 1 unexpected trailing bytes',
    });
  });
});

describe('hash request and block hashes payloads', () => {
  const req = { requestId: 7, disk: 2, blockSize: 65536, offset: 65536 * 3, count: 4, afterSeq: 99 };

  test('round-trips', () => {
    assert.deepEqual(decodeHashRequest(encodeHashRequest(req)), req);
    const blocks = [{ zero: true as const }, { zero: false as const, hash: 0xfedcba9876543210n }];
    const { afterSeq: _, ...range } = req;
    const h = { ...range, appliedThrough: 55, blocks };
    assert.deepEqual(decodeBlockHashes(encodeBlockHashes(h)), h);
    // zero blocks cost one byte, data blocks nine
    assert.equal(encodeBlockHashes(h).length, 32 + 1 + 9);
  });

  test('refuses bad ranges and states, naming them', () => {
    assert.throws(
      () => encodeHashRequest({ ...req, blockSize: 3000 }),
      /block size 3000 is not a power of two/,
    );
    assert.throws(() => encodeHashRequest({ ...req, offset: 100 }), /offset 100 is not a multiple of 65536/);
    assert.throws(() => encodeHashRequest({ ...req, count: 0 }), /block count 0 is not in 1\.\.16384/);
    const b = encodeHashRequest(req);
    b.writeUInt32BE(1 << 21, 8);
    assert.throws(() => decodeHashRequest(b), /block size 2097152/);
    const { afterSeq: _, ...range } = req;
    const h = encodeBlockHashes({ ...range, appliedThrough: 1, blocks: [{ zero: true }] });
    h[32] = 5;
    assert.throws(() => decodeBlockHashes(h), /block 0 has unknown state 5/);
    const short = encodeBlockHashes({ ...range, appliedThrough: 1, blocks: [{ zero: false, hash: 1n }] });
    assert.throws(
      () => decodeBlockHashes(short.subarray(0, short.length - 1)),
      /too short for its block 0 hash/,
    );
    const tooMany = encodeBlockHashes({ ...range, count: 1, appliedThrough: 1, blocks: [{ zero: true }] });
    assert.throws(
      () => decodeBlockHashes(Buffer.concat([tooMany, Buffer.from([0])])),
      /more than their count of 1/,
    );
  });
});
