import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSize, parseSize } from '../../src/util/size.js';

describe('parseSize', () => {
  it('reads plain byte counts', () => {
    assert.equal(parseSize('0'), 0);
    assert.equal(parseSize('512'), 512);
    assert.equal(parseSize('4096'), 4096);
  });

  it('reads binary units in either case', () => {
    assert.equal(parseSize('64K'), 64 * 1024);
    assert.equal(parseSize('64k'), 64 * 1024);
    assert.equal(parseSize('64M'), 64 * 1024 ** 2);
    assert.equal(parseSize('1G'), 1024 ** 3);
    assert.equal(parseSize('2T'), 2 * 1024 ** 4);
  });

  it('accepts B, KB, KiB style suffixes, spaces and surrounding whitespace', () => {
    assert.equal(parseSize('512B'), 512);
    assert.equal(parseSize('64KB'), 64 * 1024);
    assert.equal(parseSize('64KiB'), 64 * 1024);
    assert.equal(parseSize('64 MiB'), 64 * 1024 ** 2);
    assert.equal(parseSize('1gib'), 1024 ** 3);
    assert.equal(parseSize('  1G  '), 1024 ** 3);
  });

  it('reads fractions and rounds down to whole bytes', () => {
    assert.equal(parseSize('1.5G'), 1.5 * 1024 ** 3);
    assert.equal(parseSize('0.5K'), 512);
    assert.equal(parseSize('1.0001K'), 1024);
    assert.equal(parseSize('2.5'), 2);
  });

  it('rejects what is not a size, naming it', () => {
    for (const bad of [
      '',
      ' ',
      'abc',
      '-1',
      '+1',
      '1X',
      '1 G B',
      '.5G',
      '1.G',
      '1e3',
      'G',
      '64MB!',
      '0x10',
      '1,5G',
    ]) {
      assert.throws(
        () => parseSize(bad),
        { message: `'${bad}' is not a size (examples: 4096, 64M, 1G)` },
        bad,
      );
    }
  });

  it('rejects sizes beyond the safe integer range', () => {
    assert.throws(() => parseSize('9000000T'), { message: "size '9000000T' is too large" });
    assert.throws(() => parseSize('99999999999999999999'), {
      message: "size '99999999999999999999' is too large",
    });
    assert.equal(parseSize('8191T'), 8191 * 1024 ** 4);
  });
});

describe('formatSize', () => {
  it('shows bytes below 1 KiB', () => {
    assert.equal(formatSize(0), '0 B');
    assert.equal(formatSize(1), '1 B');
    assert.equal(formatSize(1023), '1023 B');
  });

  it('uses two decimals below 10 and one above', () => {
    assert.equal(formatSize(1024), '1.00 KiB');
    assert.equal(formatSize(1536), '1.50 KiB');
    assert.equal(formatSize(10 * 1024), '10.0 KiB');
    assert.equal(formatSize(64 * 1024 ** 2), '64.0 MiB');
    assert.equal(formatSize(1.5 * 1024 ** 3), '1.50 GiB');
    assert.equal(formatSize(3 * 1024 ** 4), '3.00 TiB');
  });

  it('stays in TiB for huge values', () => {
    assert.equal(formatSize(2048 * 1024 ** 4), '2048.0 TiB');
  });

  it('round-trips with parseSize for whole units', () => {
    for (const s of ['1.00 KiB', '64.0 MiB', '1.50 GiB', '2.00 TiB'])
      assert.equal(formatSize(parseSize(s)), s);
  });
});
