// The configuration server's backup file. Pure: encoding and checking, no I/O.
//
// A backup is text, one record per line: `CRC32C-HEX8 SP JSON LF`. The CRC32C covers the JSON
// of its line, so a damaged line is named by its number; the end record carries the SHA-256 of
// every byte before it and the line count, so a missing, added or reordered line and a
// truncated file are found too. Records, in order:
//   header   {type:'header', format, version, created_at, database, migrations}
//   file     {type:'file', path, mode, data (base64)}           the server's identity files
//   table    {type:'table', name, columns, rows}                then `rows` lines, each a JSON
//   (row)    [v1, v2, ...]                                      array in `columns` order
//   end      {type:'end', lines, sha256}
// Row values are JSON strings, numbers and nulls; a binary value is {base64: '...'}.
import { createHash, type Hash } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';

export const BACKUP_FORMAT = 'rebound-server-backup';
export const BACKUP_VERSION = 1;

export interface BackupHeader {
  type: 'header';
  format: typeof BACKUP_FORMAT;
  version: number;
  created_at: string;
  /** The database it was taken from: 'sqlite' or 'postgres'. */
  database: string;
  /** The schema's migrations applied in that database, in order. */
  migrations: string[];
}

export interface BackupFile {
  type: 'file';
  /** Relative to the data dir, '/'-separated. */
  path: string;
  mode: number;
  data: string;
}

export interface BackupTable {
  type: 'table';
  name: string;
  columns: string[];
  rows: number;
}

export type RowValue = string | number | null | { base64: string };

export interface BackupEnd {
  type: 'end';
  lines: number;
  sha256: string;
}

export type BackupRecord = BackupHeader | BackupFile | BackupTable | BackupEnd;

/** A backup that cannot be used: the message names the file and what is wrong with it. */
export class BackupFormatError extends Error {}

function crcHex(text: string): string {
  return crc32c(Buffer.from(text, 'utf8')).toString(16).padStart(8, '0');
}

export function encodeLine(value: BackupRecord | RowValue[]): string {
  const json = JSON.stringify(value);
  return `${crcHex(json)} ${json}\n`;
}

/** Encodes a database value for a row line; refuses what JSON cannot carry back unchanged. */
export function encodeValue(v: unknown, where: string): RowValue {
  if (v === null || v === undefined || typeof v === 'string') return v ?? null;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`${where} holds ${v}, which a backup cannot carry`);
    return v;
  }
  if (typeof v === 'bigint') {
    if (!Number.isSafeInteger(Number(v))) throw new Error(`${where} holds ${v}, beyond 2^53`);
    return Number(v);
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v instanceof Uint8Array) return { base64: Buffer.from(v).toString('base64') };
  throw new Error(`${where} holds a value of type ${typeof v} that a backup cannot carry`);
}

export function decodeValue(v: RowValue): string | number | null | Buffer {
  return v !== null && typeof v === 'object' ? Buffer.from(v.base64, 'base64') : v;
}

/** What a complete, intact backup held. */
export interface BackupSummary {
  header: BackupHeader;
  files: string[];
  tables: { name: string; rows: number }[];
  lines: number;
  sha256: string;
}

type Expect = 'header' | 'section' | 'row' | 'nothing';

/**
 * Checks a backup line by line as it is read, and hands back each record. Any damage throws a
 * BackupFormatError that names the file, the line and what is wrong; finish() refuses a file
 * that stops before its end record.
 */
export class BackupReader {
  private readonly hash: Hash = createHash('sha256');
  private lineNo = 0;
  private expect: Expect = 'header';
  private header: BackupHeader | undefined;
  private table: BackupTable | undefined;
  private rowsLeft = 0;
  private last = 'the start of the file';
  private readonly files: string[] = [];
  private readonly tables: { name: string; rows: number }[] = [];
  private summary: BackupSummary | undefined;

  constructor(private readonly name: string) {}

  private fail(problem: string): never {
    throw new BackupFormatError(`backup ${this.name} ${problem}`);
  }

  /** One line, without its LF; `terminated` false for a last line that has none. */
  line(bytes: Buffer, terminated = true): BackupRecord | RowValue[] {
    this.lineNo++;
    const n = this.lineNo;
    if (this.expect === 'nothing') this.fail(`is corrupt: line ${n} follows the end record`);
    if (!terminated) {
      this.fail(`is truncated: line ${n} (after ${this.last}) is incomplete and there is no end record`);
    }
    const text = bytes.toString('utf8');
    const space = text.indexOf(' ');
    const crc = text.slice(0, space);
    const json = text.slice(space + 1);
    if (space !== 8 || !/^[0-9a-f]{8}$/.test(crc)) {
      if (n === 1) this.fail('is not a Rebound server backup (its first line is not a backup header)');
      this.fail(`is corrupt: line ${n} (after ${this.last}) is not a checksummed record`);
    }
    if (crcHex(json) !== crc) {
      if (n === 1) this.fail('is corrupt: line 1 (the header) fails its checksum');
      this.fail(`is corrupt: line ${n} (after ${this.last}) fails its checksum`);
    }
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      this.fail(`is corrupt: line ${n} is not JSON although its checksum matches`);
    }
    const record = this.accept(value, n);
    if ((record as { type?: string }).type !== 'end') {
      this.hash.update(bytes);
      this.hash.update('\n');
    }
    return record;
  }

  private accept(value: unknown, n: number): BackupRecord | RowValue[] {
    if (this.expect === 'row') {
      const t = this.table!;
      if (!Array.isArray(value) || value.length !== t.columns.length) {
        this.fail(`is corrupt: line ${n} should be row ${t.rows - this.rowsLeft + 1} of table '${t.name}'`);
      }
      this.rowsLeft--;
      this.last = `table '${t.name}' row ${t.rows - this.rowsLeft}`;
      if (this.rowsLeft === 0) this.expect = 'section';
      return value as RowValue[];
    }
    const r = value as BackupRecord;
    const type = r && typeof r === 'object' && !Array.isArray(r) ? r.type : undefined;
    if (this.expect === 'header') {
      if (type !== 'header' || (r as BackupHeader).format !== BACKUP_FORMAT) {
        this.fail('is not a Rebound server backup (its first line is not a backup header)');
      }
      const h = r as BackupHeader;
      if (h.version !== BACKUP_VERSION) {
        this.fail(`has format version ${h.version}; this Rebound reads version ${BACKUP_VERSION}`);
      }
      if (!Array.isArray(h.migrations) || h.migrations.some((m) => typeof m !== 'string')) {
        this.fail('has a header without its list of schema migrations');
      }
      this.header = h;
      this.expect = 'section';
      this.last = 'the header';
      return h;
    }
    if (type === 'file') {
      const f = r as BackupFile;
      if (typeof f.path !== 'string' || typeof f.data !== 'string' || typeof f.mode !== 'number') {
        this.fail(`is corrupt: line ${n} is a file record without path, mode and data`);
      }
      if (this.tables.length > 0) this.fail(`is corrupt: line ${n}: file ${f.path} comes after the tables`);
      this.files.push(f.path);
      this.last = `file ${f.path}`;
      return f;
    }
    if (type === 'table') {
      const t = r as BackupTable;
      if (
        typeof t.name !== 'string' ||
        !Array.isArray(t.columns) ||
        !Number.isSafeInteger(t.rows) ||
        t.rows < 0
      ) {
        this.fail(`is corrupt: line ${n} is a table record without name, columns and row count`);
      }
      this.table = t;
      this.rowsLeft = t.rows;
      this.tables.push({ name: t.name, rows: t.rows });
      this.last = `table '${t.name}'`;
      if (t.rows > 0) this.expect = 'row';
      return t;
    }
    if (type === 'end') {
      const e = r as BackupEnd;
      const sha256 = this.hash.digest('hex');
      if (e.lines !== n) {
        this.fail(`is corrupt: its end record counts ${e.lines} lines but it has ${n}`);
      }
      if (e.sha256 !== sha256) {
        this.fail(
          'is corrupt: its SHA-256 does not match the end record (lines missing, added or reordered)',
        );
      }
      this.expect = 'nothing';
      this.summary = {
        header: this.header!,
        files: this.files,
        tables: this.tables,
        lines: n,
        sha256,
      };
      return e;
    }
    this.fail(`is corrupt: line ${n} (after ${this.last}) is not a record this Rebound knows`);
  }

  /** The summary of a complete backup; refuses one that stopped before its end record. */
  finish(): BackupSummary {
    if (this.summary) return this.summary;
    if (this.lineNo === 0) this.fail('is empty');
    if (this.expect === 'row') {
      const t = this.table!;
      this.fail(`is truncated: it stops after ${this.last} of ${t.rows}, without its end record`);
    }
    this.fail(`is truncated: it stops after ${this.last} (line ${this.lineNo}) without its end record`);
  }
}

/** Writes records and keeps the running line count and SHA-256 the end record needs. */
export class BackupEncoder {
  private readonly hash: Hash = createHash('sha256');
  private lines = 0;

  /** The encoded line, to be written as given. */
  record(value: BackupRecord | RowValue[]): string {
    const line = encodeLine(value);
    this.hash.update(line);
    this.lines++;
    return line;
  }

  end(): string {
    this.lines++;
    return encodeLine({ type: 'end', lines: this.lines, sha256: this.hash.digest('hex') });
  }
}
