// Exit codes of every rebound command, so scripts can tell failures apart (docs/operations.md).
import { ApiRequestError, ApiUnreachableError } from '../control-plane/client/api-client.js';

export const EXIT = {
  ok: 0,
  /** Anything else that went wrong. */
  error: 1,
  /** Bad command line (commander's own). */
  usage: 2,
  /** The server refused the request as invalid (HTTP 400). */
  invalid: 3,
  /** Not authenticated or not allowed (401, 403). */
  denied: 4,
  /** What was named does not exist (404). */
  notFound: 5,
  /** The request conflicts with the current state (409). */
  conflict: 6,
  /** The configuration server could not be reached. */
  unreachable: 7,
  /** Too many attempts (429). */
  rateLimited: 8,
} as const;

/** A failure the CLI itself detects, with the exit code it means. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function exitCodeFor(e: unknown): number {
  if (e instanceof CliError) return e.exitCode;
  if (e instanceof ApiUnreachableError) return EXIT.unreachable;
  if (e instanceof ApiRequestError) {
    if (e.status === 400 || e.status === 422) return EXIT.invalid;
    if (e.status === 401 || e.status === 403) return EXIT.denied;
    if (e.status === 404) return EXIT.notFound;
    if (e.status === 409) return EXIT.conflict;
    if (e.status === 429) return EXIT.rateLimited;
  }
  return EXIT.error;
}
