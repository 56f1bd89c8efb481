import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NBD_ERR } from '../../src/nbd/constants.js';
import { NbdError, nbdErrorCode } from '../../src/nbd/errors.js';

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: failed`), { code });
}

describe('NbdError', () => {
  it('is an Error carrying an NBD code and message', () => {
    const e = new NbdError(NBD_ERR.EINVAL, 'request beyond the end of the export');
    assert.ok(e instanceof Error);
    assert.equal(e.code, 22);
    assert.equal(e.message, 'request beyond the end of the export');
  });
});

describe('nbdErrorCode', () => {
  it('uses the code of an NbdError', () => {
    assert.equal(nbdErrorCode(new NbdError(NBD_ERR.EOVERFLOW, 'x')), 75);
    assert.equal(nbdErrorCode(new NbdError(NBD_ERR.ENOTSUP, 'x')), 95);
  });

  it('maps out-of-space errors to ENOSPC', () => {
    for (const c of ['ENOSPC', 'EDQUOT', 'EFBIG']) assert.equal(nbdErrorCode(errno(c)), NBD_ERR.ENOSPC, c);
  });

  it('maps permission and read-only errors to EPERM', () => {
    for (const c of ['EPERM', 'EROFS', 'EACCES']) assert.equal(nbdErrorCode(errno(c)), NBD_ERR.EPERM, c);
  });

  it('maps ENOMEM to ENOMEM', () => {
    assert.equal(nbdErrorCode(errno('ENOMEM')), 12);
  });

  it('maps everything else to EIO', () => {
    assert.equal(nbdErrorCode(errno('EIO')), NBD_ERR.EIO);
    assert.equal(nbdErrorCode(errno('EBADF')), NBD_ERR.EIO);
    assert.equal(nbdErrorCode(new Error('plain')), NBD_ERR.EIO);
    assert.equal(nbdErrorCode(new TypeError('bug')), NBD_ERR.EIO);
    assert.equal(nbdErrorCode('a string'), NBD_ERR.EIO);
    assert.equal(nbdErrorCode(42), NBD_ERR.EIO);
    assert.equal(nbdErrorCode({}), NBD_ERR.EIO);
  });

  it('does not throw for null or undefined rejections', () => {
    assert.equal(nbdErrorCode(undefined), NBD_ERR.EIO);
    assert.equal(nbdErrorCode(null), NBD_ERR.EIO);
  });
});
