// The backup file's checks: an intact file reads back record by record; a flipped byte, a cut,
// a missing or reordered line, a foreign file and a newer format are each refused by name.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BACKUP_FORMAT,
  BackupEncoder,
  BackupFormatError,
  BackupReader,
  type BackupSummary,
  decodeValue,
  encodeValue,
} from '../../src/control-plane/backup/format.js';

function sample(): string[] {
  const enc = new BackupEncoder();
  const lines = [
    enc.record({
      type: 'header',
      format: BACKUP_FORMAT,
      version: 1,
      created_at: '2026-01-01T00:00:00.000Z',
      database: 'sqlite',
      migrations: ['001-initial'],
    }),
    enc.record({ type: 'file', path: 'ca/ca.key', mode: 0o600, data: Buffer.from('key').toString('base64') }),
    enc.record({ type: 'table', name: 'sites', columns: ['id', 'name'], rows: 2 }),
    enc.record(['s1', 'alpha']),
    enc.record(['s2', 'beta']),
    enc.record({ type: 'table', name: 'jobs', columns: ['id'], rows: 0 }),
  ];
  lines.push(enc.end());
  return lines;
}

function read(text: string): BackupSummary {
  const reader = new BackupReader('b.rbk');
  const buf = Buffer.from(text, 'utf8');
  let start = 0;
  for (let lf = buf.indexOf(10); lf >= 0; lf = buf.indexOf(10, start)) {
    reader.line(buf.subarray(start, lf));
    start = lf + 1;
  }
  if (start < buf.length) reader.line(buf.subarray(start), false);
  return reader.finish();
}

function refused(text: string, message: string): void {
  assert.throws(
    () => read(text),
    (e: Error) => {
      assert.ok(e instanceof BackupFormatError, String(e));
      assert.equal(e.message, message);
      return true;
    },
  );
}

describe('backup format', () => {
  it('reads back what was written', () => {
    const s = read(sample().join(''));
    assert.deepEqual(s.files, ['ca/ca.key']);
    assert.deepEqual(s.tables, [
      { name: 'sites', rows: 2 },
      { name: 'jobs', rows: 0 },
    ]);
    assert.equal(s.lines, 7);
    assert.deepEqual(s.header.migrations, ['001-initial']);
  });

  it('names the line whose byte flipped', () => {
    const lines = sample();
    lines[4] = lines[4].replace('beta', 'bfta');
    refused(lines.join(''), "backup b.rbk is corrupt: line 5 (after table 'sites' row 1) fails its checksum");
  });

  it('refuses a file cut anywhere', () => {
    const text = sample().join('');
    refused(
      sample().slice(0, 4).join(''),
      "backup b.rbk is truncated: it stops after table 'sites' row 1 of 2, without its end record",
    );
    const cutInLine = text.slice(0, text.indexOf('["s2"') + 4);
    refused(
      cutInLine,
      "backup b.rbk is truncated: line 5 (after table 'sites' row 1) is incomplete and there is no end record",
    );
    const noEnd = sample().slice(0, -1).join('');
    refused(noEnd, "backup b.rbk is truncated: it stops after table 'jobs' (line 6) without its end record");
    refused('', 'backup b.rbk is empty');
  });

  it('refuses lines removed or swapped even when each is intact', () => {
    const lines = sample();
    const swapped = [lines[0], lines[1], lines[2], lines[4], lines[3], lines[5], lines[6]];
    refused(
      swapped.join(''),
      'backup b.rbk is corrupt: its SHA-256 does not match the end record (lines missing, added or reordered)',
    );
    const dropped = [lines[0], lines[2], lines[3], lines[4], lines[5], lines[6]];
    refused(dropped.join(''), 'backup b.rbk is corrupt: its end record counts 7 lines but it has 6');
  });

  it('refuses a file that is not a backup, and a newer format', () => {
    refused(
      'hello world\n',
      'backup b.rbk is not a Rebound server backup (its first line is not a backup header)',
    );
    const enc = new BackupEncoder();
    const newer = enc.record({
      type: 'header',
      format: BACKUP_FORMAT,
      version: 2,
      created_at: '',
      database: 'sqlite',
      migrations: [],
    });
    refused(newer, 'backup b.rbk has format version 2; this Rebound reads version 1');
  });

  it('refuses anything after the end record', () => {
    const lines = sample();
    refused(`${lines.join('')}${lines[3]}`, 'backup b.rbk is corrupt: line 8 follows the end record');
  });

  it('carries strings, numbers, nulls and bytes; refuses what JSON would change', () => {
    for (const v of ['x', 0, -1.5, 2 ** 52, null]) assert.equal(decodeValue(encodeValue(v, 'c')), v);
    assert.deepEqual(decodeValue(encodeValue(Buffer.from([0, 255]), 'c')), Buffer.from([0, 255]));
    assert.equal(encodeValue(10n, 'c'), 10);
    assert.throws(() => encodeValue(Number.NaN, 'table t row 1 column c'), {
      message: 'table t row 1 column c holds NaN, which a backup cannot carry',
    });
    assert.throws(() => encodeValue(2n ** 60n, 'c'), { message: `c holds ${2n ** 60n}, beyond 2^53` });
  });
});
