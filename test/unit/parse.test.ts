import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { collect, parseDiskSpec, parseHostPort, parseSeconds, parseSeq } from '../../src/cli/parse.js';

describe('parseDiskSpec', () => {
  it('splits NAME=PATH', () => {
    assert.deepEqual(parseDiskSpec('vda=/dev/vda'), { name: 'vda', path: '/dev/vda', readOnly: false });
    assert.deepEqual(parseDiskSpec('data=/img/a.raw', true), {
      name: 'data',
      path: '/img/a.raw',
      readOnly: true,
    });
  });

  it('splits at the first =, so paths may contain =', () => {
    assert.deepEqual(parseDiskSpec('d=/a=b/c'), { name: 'd', path: '/a=b/c', readOnly: false });
  });

  it('accepts names of letters, digits, dot, underscore and dash up to 64 characters', () => {
    assert.equal(parseDiskSpec('Disk_0.root-1=/x').name, 'Disk_0.root-1');
    assert.equal(parseDiskSpec('0=/x').name, '0');
    const long = `a${'b'.repeat(63)}`;
    assert.equal(parseDiskSpec(`${long}=/x`).name, long);
  });

  it('rejects text that is not NAME=PATH', () => {
    for (const bad of ['vda', '=/dev/vda', 'vda=', '=', '']) {
      assert.throws(() => parseDiskSpec(bad), { message: `--disk '${bad}' is not NAME=PATH` }, bad);
    }
  });

  it('rejects invalid names, naming them', () => {
    const rule = "use 1-64 letters, digits, '.', '_' or '-'";
    for (const name of ['-vda', '.hidden', 'a b', 'a/b', 'dïsk', `a${'b'.repeat(64)}`]) {
      assert.throws(
        () => parseDiskSpec(`${name}=/x`),
        { message: `disk name '${name}' is invalid: ${rule}` },
        name,
      );
    }
  });
});

describe('parseHostPort', () => {
  it('reads host names and IPv4 addresses', () => {
    assert.deepEqual(parseHostPort('localhost:10809'), { host: 'localhost', port: 10809 });
    assert.deepEqual(parseHostPort('192.0.2.1:0'), { host: '192.0.2.1', port: 0 });
    assert.deepEqual(parseHostPort('h:65535'), { host: 'h', port: 65535 });
    assert.deepEqual(parseHostPort('h:080'), { host: 'h', port: 80 });
  });

  it('reads bracketed IPv6 addresses', () => {
    assert.deepEqual(parseHostPort('[::1]:10809'), { host: '::1', port: 10809 });
    assert.deepEqual(parseHostPort('[2001:db8::7]:1'), { host: '2001:db8::7', port: 1 });
  });

  it('rejects text that is not HOST:PORT', () => {
    for (const bad of [
      'localhost',
      'localhost:',
      ':10809',
      '::1:10809',
      '[::1]',
      'h:port',
      'h:-1',
      'h:1:2',
      '',
    ]) {
      assert.throws(() => parseHostPort(bad), { message: `'${bad}' is not HOST:PORT` }, bad);
    }
  });

  it('rejects ports above 65535', () => {
    assert.throws(() => parseHostPort('h:65536'), { message: 'port 65536 is out of range (0-65535)' });
    assert.throws(() => parseHostPort('[::1]:99999'), { message: 'port 99999 is out of range (0-65535)' });
  });
});

describe('parseSeq', () => {
  it('reads decimal sequence numbers', () => {
    assert.equal(parseSeq('0', 'from'), 0);
    assert.equal(parseSeq('42', 'from'), 42);
    assert.equal(parseSeq('9007199254740991', 'to'), Number.MAX_SAFE_INTEGER);
  });

  it('rejects anything else, naming the option', () => {
    for (const bad of ['', '-1', '1.5', '1e3', ' 1', 'abc', '0x10']) {
      assert.throws(
        () => parseSeq(bad, '--through'),
        { message: `--through '${bad}' is not a sequence number` },
        bad,
      );
    }
  });
});

describe('collect', () => {
  it('accumulates repeated option values in order', () => {
    assert.deepEqual(collect('a', []), ['a']);
    const prev = ['a'];
    assert.deepEqual(collect('b', prev), ['a', 'b']);
    assert.deepEqual(prev, ['a'], 'does not modify the previous array');
  });
});

describe('parseSeconds', () => {
  it('accepts whole and fractional seconds', () => {
    assert.equal(parseSeconds('5', '--x'), 5);
    assert.equal(parseSeconds('0.25', '--x'), 0.25);
  });
  it('names the flag and the bad value', () => {
    for (const bad of ['0', '-1', 'abc', '1e3', '', '86401']) {
      assert.throws(() => parseSeconds(bad, '--checkpoint-interval'), {
        message: `--checkpoint-interval '${bad}' is not a number of seconds between 0 and 86400`,
      });
    }
  });
});
