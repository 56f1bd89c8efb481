// Pure encoding and parsing of the handshake phase (fixed newstyle).
import {
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  MAX_STRING,
  NBDMAGIC,
  OPTION_REPLY_MAGIC,
} from './constants.js';

export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

export interface OptionHeader {
  option: number;
  length: number;
}

/** Parses the 16-byte option header; returns an error string when the magic is wrong. */
export function parseOptionHeader(b: Buffer): OptionHeader | string {
  const magic = b.readBigUInt64BE(0);
  if (magic !== IHAVEOPT) return `bad option magic 0x${magic.toString(16)}`;
  return { option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

export function encodeServerEntry(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

export function encodeInfoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

export function encodeMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** A cursor over option data that reports malformed input as a value, never a throw. */
class Cursor {
  pos = 0;
  constructor(private readonly b: Buffer) {}
  u16(): number | undefined {
    if (this.pos + 2 > this.b.length) return undefined;
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number | undefined {
    if (this.pos + 4 > this.b.length) return undefined;
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  str(len: number): string | undefined {
    if (len > MAX_STRING || this.pos + len > this.b.length) return undefined;
    const raw = this.b.subarray(this.pos, this.pos + len);
    this.pos += len;
    return raw.includes(0) ? undefined : raw.toString('utf8');
  }
  get done(): boolean {
    return this.pos === this.b.length;
  }
}

export interface GoRequest {
  name: string;
  infos: number[];
}

/** Parses NBD_OPT_GO / NBD_OPT_INFO data; a string result names what is malformed. */
export function parseGoRequest(data: Buffer): GoRequest | string {
  const c = new Cursor(data);
  const nameLen = c.u32();
  if (nameLen === undefined) return 'option data too short for the export name length';
  const name = c.str(nameLen);
  if (name === undefined) return `export name length ${nameLen} does not fit the option data`;
  const count = c.u16();
  if (count === undefined) return 'option data too short for the information request count';
  const infos: number[] = [];
  for (let i = 0; i < count; i++) {
    const info = c.u16();
    if (info === undefined) return `information request count ${count} does not fit the option data`;
    infos.push(info);
  }
  if (!c.done) return 'trailing bytes after the information requests';
  return { name, infos };
}

export interface MetaContextRequest {
  name: string;
  queries: string[];
}

/** Parses NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export function parseMetaContextRequest(data: Buffer): MetaContextRequest | string {
  const c = new Cursor(data);
  const nameLen = c.u32();
  if (nameLen === undefined) return 'option data too short for the export name length';
  const name = c.str(nameLen);
  if (name === undefined) return `export name length ${nameLen} does not fit the option data`;
  const count = c.u32();
  if (count === undefined) return 'option data too short for the query count';
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = c.u32();
    if (len === undefined) return `query count ${count} does not fit the option data`;
    const q = c.str(len);
    if (q === undefined) return `query length ${len} does not fit the option data`;
    queries.push(q);
  }
  if (!c.done) return 'trailing bytes after the queries';
  return { name, queries };
}
