import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  IHAVEOPT,
  INFO,
  MAX_STRING,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_MAGIC,
  REP,
} from '../../src/nbd/constants.js';
import {
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
  parseGoRequest,
  parseMetaContextRequest,
  parseOptionHeader,
} from '../../src/nbd/option-codec.js';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** GO/INFO option data: u32 name length, name, u16 count, u16 infos. */
function goData(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  return Buffer.concat([u32(n.length), n, u16(infos.length), ...infos.map(u16)]);
}

/** LIST/SET_META_CONTEXT option data: u32 name length, name, u32 count, (u32 len, query)*. */
function metaData(name: string, queries: string[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const qs = queries.flatMap((q) => {
    const b = Buffer.from(q, 'utf8');
    return [u32(b.length), b];
  });
  return Buffer.concat([u32(n.length), n, u32(queries.length), ...qs]);
}

describe('encodeGreeting', () => {
  it('is NBDMAGIC, IHAVEOPT and the fixed-newstyle + no-zeroes flags', () => {
    const g = encodeGreeting();
    assert.equal(g.length, 18);
    assert.equal(g.subarray(0, 8).toString('latin1'), 'NBDMAGIC');
    assert.equal(g.subarray(8, 16).toString('latin1'), 'IHAVEOPT');
    assert.equal(g.readBigUInt64BE(0), NBDMAGIC);
    assert.equal(g.readBigUInt64BE(8), IHAVEOPT);
    assert.equal(g.readUInt16BE(16), 0b11);
  });
});

describe('parseOptionHeader', () => {
  function header(magic: bigint, option: number, length: number): Buffer {
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(magic, 0);
    b.writeUInt32BE(option, 8);
    b.writeUInt32BE(length, 12);
    return b;
  }

  it('reads the option and its data length', () => {
    assert.deepEqual(parseOptionHeader(header(IHAVEOPT, OPT.GO, 1234)), { option: OPT.GO, length: 1234 });
  });

  it('reads full 32-bit option numbers and lengths unsigned', () => {
    assert.deepEqual(parseOptionHeader(header(IHAVEOPT, 0xffffffff, 0xfffffffe)), {
      option: 0xffffffff,
      length: 0xfffffffe,
    });
  });

  it('reports a bad magic with its value in hex', () => {
    assert.equal(
      parseOptionHeader(header(0x1122334455667788n, OPT.GO, 0)),
      'bad option magic 0x1122334455667788',
    );
    assert.equal(parseOptionHeader(header(NBDMAGIC, OPT.GO, 0)), 'bad option magic 0x4e42444d41474943');
    assert.equal(parseOptionHeader(Buffer.alloc(16)), 'bad option magic 0x0');
  });
});

describe('encodeOptionReply', () => {
  it('encodes magic, option, type and length with no data', () => {
    const r = encodeOptionReply(OPT.STRUCTURED_REPLY, REP.ACK);
    assert.equal(r.length, 20);
    assert.equal(r.readBigUInt64BE(0), OPTION_REPLY_MAGIC);
    assert.equal(r.readUInt32BE(8), OPT.STRUCTURED_REPLY);
    assert.equal(r.readUInt32BE(12), REP.ACK);
    assert.equal(r.readUInt32BE(16), 0);
  });

  it('appends the data and its length', () => {
    const data = Buffer.from('no such export');
    const r = encodeOptionReply(OPT.GO, REP.ERR_UNKNOWN, data);
    assert.equal(r.length, 20 + data.length);
    assert.equal(r.readUInt32BE(12), 2 ** 31 + 6);
    assert.equal(r.readUInt32BE(16), data.length);
    assert.deepEqual(r.subarray(20), data);
  });
});

describe('info and entry encodings', () => {
  it('encodeServerEntry is a u32 byte length then UTF-8 name', () => {
    const e = encodeServerEntry('disk-ü');
    assert.equal(e.readUInt32BE(0), 7);
    assert.equal(e.length, 11);
    assert.equal(e.subarray(4).toString('utf8'), 'disk-ü');
    assert.deepEqual(encodeServerEntry(''), u32(0));
  });

  it('encodeInfoExport carries NBD_INFO_EXPORT, a 64-bit size and flags', () => {
    const size = 2 ** 40 + 4096;
    const i = encodeInfoExport(size, 0x1234);
    assert.equal(i.length, 12);
    assert.equal(i.readUInt16BE(0), INFO.EXPORT);
    assert.equal(i.readBigUInt64BE(2), BigInt(size));
    assert.equal(i.readUInt16BE(10), 0x1234);
  });

  it('encodeInfoBlockSize carries min, preferred and max', () => {
    const i = encodeInfoBlockSize(1, 4096, 32 * 1024 * 1024);
    assert.equal(i.length, 14);
    assert.equal(i.readUInt16BE(0), INFO.BLOCK_SIZE);
    assert.equal(i.readUInt32BE(2), 1);
    assert.equal(i.readUInt32BE(6), 4096);
    assert.equal(i.readUInt32BE(10), 32 * 1024 * 1024);
  });

  it('encodeMetaContext is the context id then the name', () => {
    const m = encodeMetaContext(7, 'base:allocation');
    assert.equal(m.readUInt32BE(0), 7);
    assert.equal(m.subarray(4).toString(), 'base:allocation');
    assert.equal(m.length, 4 + 15);
  });

  it('encodeExportNameReply pads with 124 zeroes unless NO_ZEROES was negotiated', () => {
    const size = 2 ** 33;
    const full = encodeExportNameReply(size, 0x0103, false);
    assert.equal(full.length, 134);
    assert.equal(full.readBigUInt64BE(0), BigInt(size));
    assert.equal(full.readUInt16BE(8), 0x0103);
    assert.ok(full.subarray(10).every((x) => x === 0));
    const short = encodeExportNameReply(size, 0x0103, true);
    assert.equal(short.length, 10);
    assert.deepEqual(short, full.subarray(0, 10));
  });
});

describe('parseGoRequest', () => {
  it('parses a name and information requests', () => {
    assert.deepEqual(parseGoRequest(goData('disk0', [INFO.BLOCK_SIZE, INFO.NAME])), {
      name: 'disk0',
      infos: [INFO.BLOCK_SIZE, INFO.NAME],
    });
  });

  it('accepts the empty (default) export name and no info requests', () => {
    assert.deepEqual(parseGoRequest(goData('', [])), { name: '', infos: [] });
  });

  it('decodes UTF-8 names', () => {
    assert.deepEqual(parseGoRequest(goData('dïsk', [])), { name: 'dïsk', infos: [] });
  });

  it('rejects data too short for the name length', () => {
    assert.equal(parseGoRequest(Buffer.alloc(0)), 'option data too short for the export name length');
    assert.equal(parseGoRequest(Buffer.alloc(3)), 'option data too short for the export name length');
  });

  it('rejects a name length that runs past the data', () => {
    const d = Buffer.concat([u32(10), Buffer.from('abc')]);
    assert.equal(parseGoRequest(d), 'export name length 10 does not fit the option data');
    assert.equal(
      parseGoRequest(Buffer.concat([u32(0xffffffff), Buffer.alloc(8)])),
      'export name length 4294967295 does not fit the option data',
    );
  });

  it('rejects names longer than MAX_STRING even when the data holds them', () => {
    const long = 'x'.repeat(MAX_STRING + 1);
    assert.equal(
      parseGoRequest(goData(long, [])),
      `export name length ${MAX_STRING + 1} does not fit the option data`,
    );
    assert.deepEqual(parseGoRequest(goData('x'.repeat(MAX_STRING), [])), {
      name: 'x'.repeat(MAX_STRING),
      infos: [],
    });
  });

  it('rejects names containing NUL', () => {
    assert.equal(parseGoRequest(goData('a\0b', [])), 'export name length 3 does not fit the option data');
  });

  it('rejects data missing the information request count', () => {
    const d = Buffer.concat([u32(2), Buffer.from('ab')]);
    assert.equal(parseGoRequest(d), 'option data too short for the information request count');
    assert.equal(
      parseGoRequest(Buffer.concat([d, Buffer.alloc(1)])),
      'option data too short for the information request count',
    );
  });

  it('rejects a count larger than the requests present', () => {
    const d = Buffer.concat([u32(1), Buffer.from('a'), u16(3), u16(1), u16(2)]);
    assert.equal(parseGoRequest(d), 'information request count 3 does not fit the option data');
    // an odd trailing byte is not a whole request either
    const odd = Buffer.concat([u32(0), u16(1), Buffer.alloc(1)]);
    assert.equal(parseGoRequest(odd), 'information request count 1 does not fit the option data');
  });

  it('rejects trailing bytes', () => {
    const d = Buffer.concat([goData('a', [INFO.NAME]), Buffer.alloc(1)]);
    assert.equal(parseGoRequest(d), 'trailing bytes after the information requests');
  });

  it('never throws on arbitrary truncations of valid data', () => {
    const full = goData('export', [1, 2, 3]);
    for (let n = 0; n < full.length; n++) {
      const r = parseGoRequest(full.subarray(0, n));
      assert.equal(typeof r, 'string', `prefix of ${n} bytes`);
    }
    assert.deepEqual(parseGoRequest(full), { name: 'export', infos: [1, 2, 3] });
  });
});

describe('parseMetaContextRequest', () => {
  it('parses a name and queries', () => {
    assert.deepEqual(parseMetaContextRequest(metaData('disk0', ['base:allocation', 'qemu:'])), {
      name: 'disk0',
      queries: ['base:allocation', 'qemu:'],
    });
  });

  it('accepts zero queries and empty query strings', () => {
    assert.deepEqual(parseMetaContextRequest(metaData('', [])), { name: '', queries: [] });
    assert.deepEqual(parseMetaContextRequest(metaData('d', [''])), { name: 'd', queries: [''] });
  });

  it('rejects data too short for the name length', () => {
    assert.equal(
      parseMetaContextRequest(Buffer.alloc(2)),
      'option data too short for the export name length',
    );
  });

  it('rejects a name length that runs past the data', () => {
    assert.equal(
      parseMetaContextRequest(Buffer.concat([u32(5), Buffer.from('ab')])),
      'export name length 5 does not fit the option data',
    );
  });

  it('rejects data missing the query count', () => {
    assert.equal(
      parseMetaContextRequest(Buffer.concat([u32(1), Buffer.from('a'), u16(0)])),
      'option data too short for the query count',
    );
  });

  it('rejects a query count larger than the queries present', () => {
    const d = Buffer.concat([u32(0), u32(2), u32(1), Buffer.from('q')]);
    assert.equal(parseMetaContextRequest(d), 'query count 2 does not fit the option data');
    const huge = Buffer.concat([u32(0), u32(0xffffffff)]);
    assert.equal(parseMetaContextRequest(huge), 'query count 4294967295 does not fit the option data');
  });

  it('rejects a query length that runs past the data', () => {
    const d = Buffer.concat([u32(0), u32(1), u32(20), Buffer.from('base:')]);
    assert.equal(parseMetaContextRequest(d), 'query length 20 does not fit the option data');
  });

  it('rejects queries longer than MAX_STRING or containing NUL', () => {
    assert.equal(
      parseMetaContextRequest(metaData('d', ['q'.repeat(MAX_STRING + 1)])),
      `query length ${MAX_STRING + 1} does not fit the option data`,
    );
    assert.equal(
      parseMetaContextRequest(metaData('d', ['a\0'])),
      'query length 2 does not fit the option data',
    );
  });

  it('rejects trailing bytes', () => {
    const d = Buffer.concat([metaData('d', ['base:allocation']), Buffer.from([0])]);
    assert.equal(parseMetaContextRequest(d), 'trailing bytes after the queries');
  });

  it('never throws on arbitrary truncations of valid data', () => {
    const full = metaData('export', ['base:allocation', 'x']);
    for (let n = 0; n < full.length; n++) {
      assert.equal(typeof parseMetaContextRequest(full.subarray(0, n)), 'string', `prefix of ${n} bytes`);
    }
  });
});
