import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeHeader, HEADER_SIZE, RecordType } from '../../src/changelog/record.js';
import { type ReadResult, SegmentReader } from '../../src/changelog/segment-reader.js';
import { decodeChange, encodeFrame, FrameDecoder, FrameType } from '../../src/wire/frame.js';
import { encodeRecordFrame } from '../../src/wire/log-streamer.js';

let dir: string;
let n = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rebound-unit-segreader-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function rec(seq: number, payload = Buffer.from(`payload-${seq}`)): Buffer {
  const h = encodeHeader(
    {
      type: RecordType.Write,
      flags: 0,
      disk: 1,
      seq,
      time: 1000 + seq,
      offset: seq * 4096,
      length: payload.length,
    },
    payload,
  );
  return Buffer.concat([h, payload]);
}

async function file(content: Buffer): Promise<string> {
  const p = join(dir, `seg-${n++}.rcl`);
  await writeFile(p, content);
  return p;
}

async function readAll(path: string, limit?: number): Promise<ReadResult[]> {
  const r = await SegmentReader.open(path, limit);
  const out: ReadResult[] = [];
  try {
    for (;;) {
      const x = await r.next();
      if (x.kind === 'record')
        out.push({ ...x, record: { ...x.record, payload: Buffer.from(x.record.payload) } });
      else out.push(x);
      if (x.kind !== 'record') return out;
    }
  } finally {
    await r.close();
  }
}

function seqs(results: ReadResult[]): number[] {
  return results.flatMap((x) => (x.kind === 'record' ? [x.record.seq] : []));
}

describe('SegmentReader', () => {
  it('reads an empty file as end', async () => {
    assert.deepEqual(await readAll(await file(Buffer.alloc(0))), [{ kind: 'end' }]);
  });

  it('reads records in order with their offsets, sizes and payloads', async () => {
    const recs = [rec(1), rec(2, Buffer.alloc(0)), rec(5, Buffer.alloc(10000, 7))];
    const res = await readAll(await file(Buffer.concat(recs)));
    assert.equal(res.length, 4);
    assert.deepEqual(res.at(-1), { kind: 'end' });
    let off = 0;
    for (let i = 0; i < 3; i++) {
      const x = res[i];
      assert.ok(x.kind === 'record');
      assert.equal(x.offset, off);
      assert.equal(x.size, recs[i].length);
      assert.deepEqual(x.record.payload, recs[i].subarray(HEADER_SIZE));
      assert.equal(x.record.payloadLength, recs[i].length - HEADER_SIZE);
      off += recs[i].length;
    }
    assert.deepEqual(seqs(res), [1, 2, 5]);
    const first = res[0];
    assert.ok(first.kind === 'record');
    assert.deepEqual(
      { ...first.record, payload: first.record.payload.toString() },
      {
        type: RecordType.Write,
        flags: 0,
        disk: 1,
        seq: 1,
        time: 1001,
        offset: 4096,
        length: 9,
        payloadLength: 9,
        payload: 'payload-1',
      },
    );
  });

  it('reads records larger than its read chunk and across chunk boundaries', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const recs = [rec(1, Buffer.alloc(4 * 1024 * 1024 - 100, 1)), rec(2, big), rec(3)];
    const res = await readAll(await file(Buffer.concat(recs)));
    assert.deepEqual(seqs(res), [1, 2, 3]);
    const second = res[1];
    assert.ok(second.kind === 'record');
    assert.ok(second.record.payload.equals(big));
    assert.deepEqual(res.at(-1), { kind: 'end' });
  });

  it('reads large records whole into their own buffers, between small ones, and views stay valid', async () => {
    // 1 MiB writes as the agent logs them: each record a little over the read chunk
    const payloads = [1, 2, 3, 4, 5, 6].map((seq) =>
      Buffer.alloc(seq % 3 === 0 ? 300 : 1024 * 1024 + seq, seq),
    );
    const res = await readAll(await file(Buffer.concat(payloads.map((p, i) => rec(i + 1, p)))));
    assert.deepEqual(seqs(res), [1, 2, 3, 4, 5, 6]);
    res.slice(0, 6).forEach((x, i) => {
      assert.ok(x.kind === 'record');
      assert.ok(x.record.payload.equals(payloads[i]), `payload of record ${i + 1}`);
    });
    // payloads handed out earlier are not overwritten by later reads
    const r = await SegmentReader.open(await file(Buffer.concat(payloads.map((p, i) => rec(i + 1, p)))));
    try {
      const held: Buffer[] = [];
      for (;;) {
        const x = await r.next();
        if (x.kind !== 'record') break;
        held.push(x.record.payload);
      }
      for (const [i, p] of held.entries()) assert.ok(p.equals(payloads[i]), `held payload ${i + 1}`);
    } finally {
      await r.close();
    }
  });

  it('a record read whole is framed in place of its header, once; then it is copied', async () => {
    // larger than the read chunk, as the agent's 1 MiB writes are with their headers
    const data = Buffer.alloc(1536 * 1024);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    const r = await SegmentReader.open(await file(Buffer.concat([rec(1), rec(2, data), rec(3)])));
    try {
      await r.next();
      const x = await r.next();
      assert.ok(x.kind === 'record');
      const frameOf = () => {
        const f = encodeRecordFrame(x.record);
        return encodeFrame(f.type, f.payload);
      };
      const first = frameOf();
      assert.equal(first.buffer, x.record.payload.buffer, 'the frame is the read buffer');
      assert.equal(first.length, 16 + 32 + data.length);
      const second = frameOf();
      assert.notEqual(second.buffer, x.record.payload.buffer, 'the room is gone: a copy');
      for (const frame of [first, second]) {
        const c = decodeChange(new FrameDecoder().push(frame)[0]!.payload);
        assert.equal(c.seq, 2);
        assert.ok(c.data.equals(data));
      }
      assert.ok(x.record.payload.equals(data), 'the payload itself is never overwritten');
      // The buffer is the record's alone: moved to another thread, the reader still goes on.
      structuredClone(first.buffer, { transfer: [first.buffer as ArrayBuffer] });
      assert.equal(x.record.payload.length, 0);
      const y = await r.next();
      assert.ok(y.kind === 'record' && y.record.seq === 3);
    } finally {
      await r.close();
    }
  });

  it('a large record cut by the end of the file or by the limit is a truncated payload', async () => {
    const a = rec(1);
    const big = rec(2, Buffer.alloc(512 * 1024, 7));
    const p = await file(Buffer.concat([a, big.subarray(0, big.length - 1)]));
    assert.deepEqual((await readAll(p)).at(-1), {
      kind: 'invalid',
      offset: a.length,
      reason: 'truncated record payload',
    });
    const whole = await file(Buffer.concat([a, big]));
    assert.deepEqual((await readAll(whole, a.length + big.length - 1)).at(-1), {
      kind: 'invalid',
      offset: a.length,
      reason: 'truncated record payload',
    });
    assert.deepEqual(seqs(await readAll(whole, a.length + big.length)), [1, 2]);
  });

  it('offset tracks the next record', async () => {
    const a = rec(1);
    const r = await SegmentReader.open(await file(Buffer.concat([a, rec(2)])));
    try {
      assert.equal(r.offset, 0);
      await r.next();
      assert.equal(r.offset, a.length);
    } finally {
      await r.close();
    }
  });

  it('reports a truncated header at its offset', async () => {
    const a = rec(1);
    const res = await readAll(await file(Buffer.concat([a, rec(2).subarray(0, 20)])));
    assert.deepEqual(seqs(res), [1]);
    assert.deepEqual(res.at(-1), { kind: 'invalid', offset: a.length, reason: 'truncated record header' });
  });

  it('reports a truncated payload at its offset', async () => {
    const a = rec(1);
    const b = rec(2);
    const res = await readAll(await file(Buffer.concat([a, b.subarray(0, b.length - 1)])));
    assert.deepEqual(res.at(-1), { kind: 'invalid', offset: a.length, reason: 'truncated record payload' });
  });

  it('reports garbage as a bad magic', async () => {
    const a = rec(1);
    const res = await readAll(await file(Buffer.concat([a, Buffer.alloc(HEADER_SIZE, 0xab)])));
    assert.deepEqual(res.at(-1), {
      kind: 'invalid',
      offset: a.length,
      reason: 'bad record magic 0xabababab',
    });
  });

  it('reports a flipped payload bit as a CRC mismatch and stops there', async () => {
    const a = rec(1);
    const b = rec(2);
    b[HEADER_SIZE + 3] ^= 0x04;
    const res = await readAll(await file(Buffer.concat([a, b, rec(3)])));
    assert.deepEqual(seqs(res), [1]);
    assert.deepEqual(res.at(-1), {
      kind: 'invalid',
      offset: a.length,
      reason: 'CRC32C mismatch in record seq 2',
    });
  });

  it('reports a flipped header bit as a CRC mismatch', async () => {
    const b = rec(2);
    b[24] ^= 0x01; // offset field
    const res = await readAll(await file(b));
    assert.deepEqual(res, [{ kind: 'invalid', offset: 0, reason: 'CRC32C mismatch in record seq 2' }]);
  });

  it('rejects sequence numbers that do not increase', async () => {
    const a = rec(4);
    const res = await readAll(await file(Buffer.concat([a, rec(4)])));
    assert.deepEqual(res.at(-1), {
      kind: 'invalid',
      offset: a.length,
      reason: 'sequence 4 does not follow 4',
    });
    const res2 = await readAll(await file(Buffer.concat([rec(5), rec(3)])));
    assert.deepEqual(res2.at(-1), {
      kind: 'invalid',
      offset: rec(5).length,
      reason: 'sequence 3 does not follow 5',
    });
  });

  it('accepts gaps in the sequence', async () => {
    assert.deepEqual(seqs(await readAll(await file(Buffer.concat([rec(1), rec(10), rec(11)])))), [1, 10, 11]);
  });

  it('reads only up to the limit', async () => {
    const a = rec(1);
    const b = rec(2);
    const p = await file(Buffer.concat([a, b, Buffer.from('garbage beyond the durable end')]));
    const res = await readAll(p, a.length + b.length);
    assert.deepEqual(seqs(res), [1, 2]);
    assert.deepEqual(res.at(-1), { kind: 'end' });
    // a limit inside a record makes it look truncated
    const cut = await readAll(p, a.length + 10);
    assert.deepEqual(cut.at(-1), { kind: 'invalid', offset: a.length, reason: 'truncated record header' });
    assert.deepEqual(await readAll(p, 0), [{ kind: 'end' }]);
  });

  it('does not modify the file', async () => {
    const content = Buffer.concat([rec(1), Buffer.from('torn')]);
    const p = await file(content);
    await readAll(p);
    assert.deepEqual(await readFile(p), content);
  });

  it('fails to open a missing file', async () => {
    await assert.rejects(SegmentReader.open(join(dir, 'missing.rcl')), { code: 'ENOENT' });
  });
});
