import { NBD_ERR } from './constants.js';

/** An error the server answers with a specific NBD error code and message. */
export class NbdError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Maps an exception from a backend to the NBD error value sent to the client. */
export function nbdErrorCode(e: unknown): number {
  if (e instanceof NbdError) return e.code;
  switch ((e as NodeJS.ErrnoException | null | undefined)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return NBD_ERR.ENOSPC;
    case 'EPERM':
    case 'EROFS':
    case 'EACCES':
      return NBD_ERR.EPERM;
    case 'ENOMEM':
      return NBD_ERR.ENOMEM;
    default:
      return NBD_ERR.EIO;
  }
}
