// Errors the API answers with: an HTTP status, a stable code and a message that names the
// problem. Everything a handler throws that is not an ApiError is a 500 with the message logged.

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const badRequest = (message: string, details?: Record<string, unknown>) =>
  new ApiError(400, 'bad-request', message, details);
export const unauthorized = (message: string) => new ApiError(401, 'unauthorized', message);
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message);
export const notFound = (what: string) => new ApiError(404, 'not-found', `${what} not found`);
export const conflict = (message: string, details?: Record<string, unknown>) =>
  new ApiError(409, 'conflict', message, details);

/** The body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** A refusal decided by pure rules (protect, reprotect): its status and message as an ApiError. */
export function refusalError(r: { status: 400 | 404 | 409; message: string }): ApiError {
  return new ApiError(
    r.status,
    r.status === 404 ? 'not-found' : r.status === 409 ? 'conflict' : 'bad-request',
    r.message,
  );
}
